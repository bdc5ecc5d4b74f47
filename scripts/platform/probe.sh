#!/bin/bash
# Inside the booted amd64 container (platform-probe.service): the README's install or the
# upgrade, then systemd_probe.py. Writes /platform/result ("ok" or the failed step's name) and
# /platform/report.txt; the unit's SuccessAction/FailureAction power the container off.
set -euo pipefail
mode=$1
exec > >(tee -a /platform/report.txt) 2>&1
STEP=start
trap 'echo "FAIL [$STEP]"; echo "$STEP" >/platform/result' ERR
step() { STEP=$1; echo; echo "== $STEP"; }

probe_venv() {
    # The probe's own interpreter with websockets, apart from /opt/station/venv, which the
    # upgrade replaces while the probe runs.
    python3 -m venv /platform/venv
    /platform/venv/bin/pip install -q 'websockets>=13'
}

if [ "$mode" = fresh ]; then
    step readme-install
    bash /platform/readme-install.sh
    step probe-venv
    probe_venv
    step systemd
    /platform/venv/bin/python /platform/systemd_probe.py fresh
    step idempotent
    bash /platform/idempotent.sh
else
    step old-release
    bash /platform/install-old-release.sh "$(cat /platform/upgrade-from)"
    step probe-venv
    probe_venv
    step upgrade
    /platform/venv/bin/python /platform/systemd_probe.py upgrade
    step idempotent
    bash /platform/idempotent.sh
fi
echo ok >/platform/result
echo "== all passed"
