#!/usr/bin/env bash
# Type checks, run by ci/test.sh after the install and before pytest (or alone, in an environment where
# `pip install ".[test]"` ran): mypy over the package, with the settings of pyproject.toml's [tool.mypy], and
# stubtest, which holds every compiled module (kafkaprod/_native/*.pyx, as installed) to its .pyi stub.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "mypy: kafkaprod (pyproject.toml [tool.mypy])"
python -m mypy

# Every compiled module, as the package lists them; -I imports the installed build, not the source tree (which
# has no compiled modules). The stubs checked are the source tree's, which the install copied.
modules=$(python -I -c 'import kafkaprod; print(" ".join("kafkaprod._native." + m for m in kafkaprod._NATIVE_MODULES))')
# ...which must be every .pyx, or a new module would go unchecked.
sources=$(cd kafkaprod/_native && for f in *.pyx; do printf 'kafkaprod._native.%s\n' "${f%.pyx}"; done | sort)
if [ "$sources" != "$(printf '%s\n' $modules | sort)" ]; then
    echo "kafkaprod._NATIVE_MODULES does not list every kafkaprod/_native/*.pyx:" >&2
    diff <(echo "$sources") <(printf '%s\n' $modules | sort) >&2 || true
    exit 1
fi
echo "stubtest: $modules"
# shellcheck disable=SC2086  # one argument per module
python -I -m mypy.stubtest --mypy-config-file pyproject.toml --allowlist ci/stubtest-allowlist.txt $modules
