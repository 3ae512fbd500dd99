#!/usr/bin/env bash
# Build, or reuse, the venv the tool-rollout benchmark's peers run in (benchmarks/bench_tools.py).
#
# openai-agents and livekit-plugins-openai pin websockets below the package's and bring many dependencies of their
# own, so they run from their own interpreter in a worker subprocess (benchmarks/peers/worker.py). The venv lives at
# benchmarks/peers/.venv/ (git-ignored; IPY_RWS_PEERS_VENV moves it). It is reused when its copy of
# requirements.txt, written only after a complete install, matches the current one; otherwise it is rebuilt.
set -euo pipefail
cd "$(dirname "$0")"

VENV="${IPY_RWS_PEERS_VENV:-.venv}"
REQ=requirements.txt
PYTHON="${PYTHON:-python}"

if [ -x "$VENV/bin/python" ] && cmp -s "$REQ" "$VENV/requirements.installed.txt"; then
    echo "benchmarks/peers/make_venv.sh: reusing $VENV"
    exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" >"$VENV/pip.log" 2>&1; then
    echo "benchmarks/peers/make_venv.sh: pip install -r $REQ failed; the end of $VENV/pip.log:" >&2
    grep -v "is ignored: it is neither a file nor a directory" "$VENV/pip.log" | tail -n 20 >&2
    exit 1
fi
"$VENV/bin/python" -c "import agents, livekit.plugins.openai" >/dev/null
cp "$REQ" "$VENV/requirements.installed.txt"
echo "benchmarks/peers/make_venv.sh: built $VENV in $(($(date +%s) - start)) s"
