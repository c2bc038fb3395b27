#!/usr/bin/env bash
# Regenerates requirements.lock from pyproject.toml: every transitive dependency of the package and its test
# extras, pinned with hashes, for Python 3.11 on Linux x86_64. Run it (`make lock`) after changing a
# dependency in pyproject.toml, on such a machine, and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q pip-tools==7.6.2
CUSTOM_COMPILE_COMMAND="make lock" "$tools/bin/pip-compile" --quiet --extra test --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
    --output-file requirements.lock pyproject.toml
