#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
# Used verbatim by the README's test command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e '.[test,browser,demo]'

# Browser tests drive Debian's Chromium through Playwright (never `playwright install`: it downloads a browser).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "tests/run.sh: chromium is not installed and we are not root; browser tests will be skipped" >&2
    fi
fi

# The LiteLLM gateway tests run a real proxy from its own venv (.venv-litellm/, reused while its pins match).
# If it cannot be built they skip, and fail in CI (IPY_RWS_REQUIRE_GATEWAY=1); the other tests still run.
bash tests/gateway/make_venv.sh || echo "tests/run.sh: LiteLLM's venv could not be built; gateway tests will skip" >&2

exec python -m pytest "$@"
