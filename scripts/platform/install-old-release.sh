#!/bin/bash
# The previous release, installed as its README said (inside the amd64 container), so that the
# upgrade target upgrades a realistic installation. Two departures, both forced by the bugs
# that release had: its `pip install '.[pi]'` compiled RPi.GPIO (no compiler here, and no Pi),
# so the simulator's extra plus mfrc522 --no-deps (what its scripts/bootstrap.sh did); and its
# /etc/station of mode 0750 owned by root kept the daemon out, so 0755 as an installation that
# ran must have had.
set -euxo pipefail
rev=$1
apt-get update -qq
apt-get install -y -qq python3-venv git >/dev/null
git clone -q /src /opt/station
git -C /opt/station reset -q --hard "$rev"   # the branch is now behind: `git pull` upgrades it
cd /opt/station
python3 -m venv /opt/station/venv
/opt/station/venv/bin/pip install -q '/opt/station[sim]'
/opt/station/venv/bin/pip install -q --no-deps mfrc522==0.0.7
useradd --system --home /var/lib/station --shell /usr/sbin/nologin station
install -d -m 0755 /etc/station
install -m 0640 -g station config/station.toml /etc/station/station.toml
install -m 0644 systemd/station.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable station
