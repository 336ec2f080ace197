#!/usr/bin/env bash
# The tests, on a fresh machine or this one: installs what they need if it is missing (the virtual environment,
# the dev requirements, Debian's Chromium for the browser tests), then runs pytest with any arguments given:
#   ./test.sh                                  # everything (CI)
#   ./test.sh -m "not slow and not browser"    # the fast loop, under 2 minutes
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
if ! command -v chromium >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
