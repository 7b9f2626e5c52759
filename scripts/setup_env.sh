#!/usr/bin/env bash
# Make the environment the pipeline needs: .venv with requirements.txt, and espeak-ng for the demo
# corpus. Idempotent and quick when everything is already there. Source it or run it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
PYTHON="${PYTHON:-python3}"

need_espeak="${NEED_ESPEAK:-1}"
if [ "$need_espeak" = "1" ] && ! command -v espeak-ng >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Debian package espeak-ng (needed to synthesise the demo corpus)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
    else
        echo "setup: espeak-ng is missing. Install the Debian package: sudo apt-get install espeak-ng" >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing requirements.txt into .venv (first time: about 2 minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements.txt
    echo "$want" > "$stamp"
fi
