"""Benchmarks: contenders timed side by side (torch eager, onnxruntime, OpenVINO, HF Optimum), the stages
around the model, and the Ray runner's scaling. They drive export, preprocess, the runners and
postprocess together, so this package sits on top of the stages (it may import them; nothing imports it).
"""
