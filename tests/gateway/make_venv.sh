#!/usr/bin/env bash
# Build, or reuse, the LiteLLM proxy's own venv for tests/test_gateway_litellm.py.
#
# The proxy runs from its own interpreter so its many pinned dependencies never meet the package's. The venv lives
# at .venv-litellm/ (git-ignored; IPY_RWS_LITELLM_VENV moves it). It is reused when its copy of requirements.txt,
# written only after a complete install, matches the current one; otherwise it is rebuilt from scratch.
# Measured on a 2-core CI machine: about 50 s to build, under 1 s to reuse.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${IPY_RWS_LITELLM_VENV:-.venv-litellm}"
REQ=tests/gateway/requirements.txt
PYTHON="${PYTHON:-python}"

if [ -x "$VENV/bin/python" ] && cmp -s "$REQ" "$VENV/requirements.installed.txt"; then
    echo "tests/gateway/make_venv.sh: reusing $VENV ($(grep -v '^#' "$REQ" | tr '\n' ' '))"
    exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" >"$VENV/pip.log" 2>&1; then
    echo "tests/gateway/make_venv.sh: pip install -r $REQ failed; the end of $VENV/pip.log:" >&2
    grep -v "is ignored: it is neither a file nor a directory" "$VENV/pip.log" | tail -n 20 >&2
    exit 1
fi
# The proxy's CLI must import (a wheel that installed but cannot run fails here, not in the middle of the tests).
LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/python" -c "import litellm.proxy.proxy_cli" >/dev/null
cp "$REQ" "$VENV/requirements.installed.txt"
echo "tests/gateway/make_venv.sh: built $VENV in $(($(date +%s) - start)) s"
