"""TEST EMULATOR of ais_bench (Ascend/tools ais-bench_workload, `python -m ais_bench`) - not the real tool;
used only by tests. See __main__.py."""
