#!/usr/bin/env bash
# The README's main-job command: set up (a virtual environment unless one is active), install kafkaprod with
# the perf extra (the Tansu broker binary and an admin client to create the topic), and run kafkaprod-perf,
# which starts its own local broker unless --bootstrap-servers is given. Arguments go to kafkaprod-perf.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -m venv .venv
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi

python -m pip install --quiet --upgrade pip
python -m pip install --quiet ".[perf]"
exec kafkaprod-perf "$@"
