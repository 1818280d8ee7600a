#!/usr/bin/env bash
# The README's main-job command: set up (a virtual environment unless one is active), install kafkaprod with
# the perf extra (the Tansu broker binary and an admin client to create the topic), and run kafkaprod-perf,
# which starts its own local broker unless --bootstrap-servers is given. Arguments go to kafkaprod-perf.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=ci/venv.sh
. ci/venv.sh
python -m pip install --quiet ".[perf]"
exec kafkaprod-perf "$@"
