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
pipflags=""
venvflags=""
case ",$extras," in
*,pi,*)
    # On a Pi as scripts/install-pi does it: spidev and cffi from Debian (no compiler), seen
    # through the system's site-packages; wheels only for the rest.
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    for pkg in python3-spidev python3-cffi; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" ||
            { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$pkg" >/dev/null; }
    done
    venvflags="--system-site-packages"
    pipflags="--only-binary=:all: --no-binary=station"
    ;;
esac
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv $venvflags .venv
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
.venv/bin/python -m pip install -q --disable-pip-version-check $pipflags -e ".[$extras]"
# The mfrc522 library declares RPi.GPIO and spidev as dependencies. On a Pi the `pi` extra
# brings rpi-lgpio (which provides the RPi.GPIO module; RPi.GPIO itself would overwrite it)
# and spidev; elsewhere the emulated chips stand in for both (station/sim). Either way the
# library is installed without its declared dependencies (setup.cfg says why).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "mfrc522==0.0.7"
echo "$want" > "$stamp"
