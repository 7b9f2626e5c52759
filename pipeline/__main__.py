"""`python -m pipeline run-all [options]`: the whole run matrix (scripts/run_all.sh calls it after set-up).

`python -m pipeline run-all --help` lists the options; `--dry-run` prints the commands without running them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline.options import HELP, OptionError, parse
from pipeline.run_all import load_plan, print_tables, run_all
from pipeline.steps import Runner, StepFailed

USAGE = "usage: python -m pipeline run-all [options]   (python -m pipeline run-all --help)\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write(USAGE)
        return 2
    if argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE + "\n" + HELP)
        return 0
    if argv[0] != "run-all":
        sys.stderr.write(f"pipeline: unknown command {argv[0]!r}; expected run-all\n" + USAGE)
        return 2
    try:
        opts = parse(argv[1:])
    except OptionError as exc:
        sys.stderr.write(f"run_all: {exc}\n")
        return 2
    if opts is None:
        return 0
    # As run_all.sh always did: paths (the user's included) are relative to the repository root, where the
    # stage scripts (scripts/...) are.
    os.chdir(Path(__file__).resolve().parents[1])
    runner = Runner(dry_run=opts.dry_run)
    try:
        run_all(opts, runner)
    except OptionError as exc:
        sys.stderr.write(f"run_all: {exc}\n")
        return 2
    except StepFailed as exc:
        sys.stderr.write(f"run_all: {exc}\n")
        return exc.returncode or 1
    if not opts.dry_run:
        runner.step("done")
        print_tables(opts, [load_plan(f) for f in opts.families])
    return 0


if __name__ == "__main__":
    sys.exit(main())
