# Sourced by ci/test.sh and ci/perf.sh: enter the active virtual environment, or make and enter .venv, with a
# current pip. Run from the repository root.
PYTHON="${PYTHON:-python3}"
if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -m venv .venv
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
python -m pip install --quiet --upgrade pip
