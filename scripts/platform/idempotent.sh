#!/bin/bash
# A second run of scripts/install-pi must change nothing: every file and directory the
# installer owns, with type, mode, owner, group, size, modification time and content hash,
# and the accounts, before and after. Caches (__pycache__) and the journal's contents (the
# daemon writes them) are left out; the state directory itself is in.
set -euo pipefail
manifest() {
    {
        find /opt/station /etc/station /etc/systemd/system/station.service \
             /etc/systemd/system/multi-user.target.wants/station.service /var/lib/station \
             /var/lib/station/firmware /etc/systemd/system/station-update.service \
             /etc/systemd/system/station-update.path /etc/systemd/system/paths.target.wants/station-update.path \
             -maxdepth 0 -printf '%p %y %m %u %g\n'
        sha256sum /etc/systemd/system/station.service /etc/systemd/system/station-update.service \
            /etc/systemd/system/station-update.path
        find /opt/station /etc/station -name __pycache__ -prune -o \
             -printf '%p %y %m %u %g %s %T@ %l\n'
        find /opt/station /etc/station -name __pycache__ -prune -o -type f -print0 | sort -z | xargs -0 sha256sum
        # What raspi-config changed for the installer (SPI, I2C, UART, console), where it exists.
        if [ -d /boot/firmware ]; then find /boot/firmware -type f -print0 | sort -z | xargs -0 -r sha256sum; fi
        getent passwd station
        for g in station gpio spi i2c dialout; do getent group "$g"; done
        dpkg-query -W -f='${Package} ${Version}\n' | sort
    } | sort
}
main_pid() { if [ -d /run/systemd/system ]; then systemctl show -p MainPID --value station.service; else echo none; fi; }
# The updater's trigger: active, and not restarted by the second run.
path_unit() {
    if [ -d /run/systemd/system ]; then systemctl show -p ActiveState,ActiveEnterTimestampMonotonic --value station-update.path | tr '\n' ' '; else echo none; fi
}
pid1=$(main_pid)
path1=$(path_unit)
manifest >/tmp/manifest-1
/opt/station/scripts/install-pi >/tmp/install-pi-2.log 2>&1 || { cat /tmp/install-pi-2.log; echo "second install-pi run failed"; exit 1; }
manifest >/tmp/manifest-2
pid2=$(main_pid)
path2=$(path_unit)
if [ "$path1" != "$path2" ] || { [ "$path1" != none ] && [ "${path1%% *}" != active ]; }; then
    echo "FAIL: station-update.path not active, or restarted by the second run ($path1 -> $path2)"
    exit 1
fi
if [ "$pid1" != "$pid2" ]; then
    echo "FAIL: the second install-pi run restarted the service (MainPID $pid1 -> $pid2)"
    exit 1
fi
if ! diff -u /tmp/manifest-1 /tmp/manifest-2; then
    echo "FAIL: the second install-pi run changed the files above"
    exit 1
fi
echo "ok   second install-pi run changed nothing ($(wc -l </tmp/manifest-1) manifest lines compared; service MainPID $pid1 before and after; station-update.path $path1)"
