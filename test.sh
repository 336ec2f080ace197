#!/usr/bin/env bash
# The tests, on a fresh machine or this one: installs what they need if it is missing (the virtual environment,
# the dev requirements, Debian's Chromium for the browser tests, PostgreSQL for the records tests and Mosquitto for
# the alerts tests), then runs pytest with any arguments given:
#   ./test.sh                                  # everything (CI)
#   ./test.sh -m "not slow and not browser"    # the fast loop, under 2 minutes
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
# Both lists each time (a few seconds when nothing is missing): a venv made before a new pin still gets it.
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
missing=()
command -v chromium >/dev/null || missing+=(chromium)
# The records tests start a PostgreSQL server of their own (tests/conftest.py) from Debian's binaries.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# The alerts tests start a Mosquitto broker of their own (tests/test_alerts.py).
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
