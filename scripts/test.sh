#!/usr/bin/env bash
# The test command: sets up the environment if needed, then runs the suite (slow tests excluded
# unless RUN_SLOW=1). Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup_env.sh
source env.sh
markers=(-m "not slow")
if [ "${RUN_SLOW:-0}" = "1" ]; then markers=(); fi
exec .venv/bin/python -m pytest -q "${markers[@]}" "$@" tests
