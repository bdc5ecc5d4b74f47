#!/bin/sh
# Create .venv and install station into it. Sourced by ./run-station and ./run-tests.
# Usage: bootstrap.sh EXTRAS   (e.g. "sim" or "test" or "pi")
set -eu
cd "$(dirname "$0")/.."
extras="${1:-sim}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "station needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2
    exit 1
fi
# Debian and Raspberry Pi OS ship venv separately.
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "installing python3-venv (Debian package)..." >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# The package is installed editable, so code changes need no reinstall: skip pip (3-4 s and
# setuptools' warning box) when this venv was installed from these very files with these extras.
stamp=".venv/.station-installed-$extras"
want="$(cat setup.cfg pyproject.toml scripts/bootstrap.sh | .venv/bin/python -c \
    'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ -x .venv/bin/station ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
rm -f "$stamp"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
# The mfrc522 library declares RPi.GPIO and spidev as dependencies; on a Pi the `pi`
# extra brings them. Elsewhere the emulated chips stand in for both (station/sim),
# so the library is installed without them: nothing needs a compiler.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "mfrc522==0.0.7"
echo "$want" > "$stamp"
