"""The station under a real systemd, checked from inside the booted container.

    /platform/venv/bin/python systemd_probe.py fresh|upgrade

Runs as root in the amd64 container that scripts/platform-check boots, after the README's
install. It is its own OCPP 1.6-J central system: raw OCPP-J frames on a websocket (nothing of
the station's code or of the `ocpp` library), on ws://127.0.0.1:9000/, recording every CALL
the station sends. That is the control channel into `station run` with `hardware.mode =
"sim"`: RemoteStartTransaction starts a session (the emulated car draws power, so it is
charging), Reset orders the exit for a restart, and the StopTransaction frames say how each
session ended. systemd is asked through systemctl and journalctl, as an operator would.

Every check prints one line, "ok ..." or "FAIL ..."; the first failure ends the run with
status 1, naming the check.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from websockets.asyncio.server import serve

UNIT = "station.service"
CONF = Path("/etc/station/station.toml")
STATE = Path("/var/lib/station")
VENV_STATION = "/opt/station/venv/bin/station"
TAG = "PLATFORM01"

STATION_CONFIG = """\
# Written by the platform check: the emulated hardware, and the probe's central system.
[station]
name = "platform-1"

[hardware]
mode = "sim"

[backend]
kind = "ocpp"

[backend.ocpp]
url = "ws://127.0.0.1:%d/"
"""


# systemd's complaints that come from running inside systemd-nspawn, not from the unit: when it
# stops a unit, systemd 252 writes cgroup.kill, which fails with EIO in this container (the host's
# cgroup tree is not delegated to it); it then kills the processes one by one, as it says.
CONTAINER_ARTEFACTS = ("Failed to kill control group /system.slice/station.service, ignoring: Input/output error",)
# The container's clock is the host's, which no NTP client in the container synchronizes: whether the
# kernel counts it as synchronized depends on the host at the time, and when not, the daemon rightly
# warns at start that session times are estimates. That warning is about the host, not the unit.
HOST_CLOCK = "clock: the system clock is not synchronized"
UPGRADED_AT = 0  # when the upgrade began (journal time, µs)


class Failed(Exception):
    pass


def ok(text: str) -> None:
    print(f"ok   {text}", flush=True)


def check(cond: bool, name: str, detail: str = "") -> None:
    if not cond:
        raise Failed(f"{name}: {detail}" if detail else name)
    ok(name + (f" ({detail})" if detail else ""))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- the central system
class CentralSystem:
    """A minimal, well-behaved OCPP 1.6-J central system that remembers every CALL."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, dict]] = []
        self.ws = None
        self.server = None
        self.arrived = asyncio.Event()
        self.pending: dict[str, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.tx = itertools.count(1)
        self.port = 0  # a free port at the first start (other containers share the network), then the same

    async def up(self) -> None:
        self.server = await serve(self._handler, "127.0.0.1", self.port, subprotocols=["ocpp1.6"])
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """The backend goes away: no server, the open connection closed."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        self.ws = None

    def answer(self, action: str, payload: dict) -> dict:
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": now_iso(), "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": now_iso()}
        if action == "Authorize":
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            return {"transactionId": next(self.tx), "idTagInfo": {"status": "Accepted"}}
        if action == "StopTransaction":
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "DataTransfer":
            return {"status": "UnknownVendorId"}
        return {}  # StatusNotification, MeterValues, SecurityEventNotification, ...

    async def _handler(self, ws) -> None:
        self.ws = ws
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg[0] == 2:
                    _, uid, action, payload = msg
                    answer = self.answer(action, payload)
                    if action == "StartTransaction":
                        payload = dict(payload, _transactionId=answer["transactionId"])
                    self.calls.append((time.monotonic(), action, payload))
                    self.arrived.set()
                    await ws.send(json.dumps([3, uid, answer]))
                elif msg[0] in (3, 4):
                    fut = self.pending.pop(msg[1], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except Exception:  # the station went away (killed, stopped): it reconnects
            pass
        finally:
            if self.ws is ws:
                self.ws = None

    async def call(self, action: str, payload: dict, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while self.ws is None:
            if time.monotonic() > deadline:
                raise Failed(f"{action}: the station is not connected to the central system")
            await asyncio.sleep(0.2)
        uid = f"probe-{next(self.ids)}"
        fut = asyncio.get_running_loop().create_future()
        self.pending[uid] = fut
        await self.ws.send(json.dumps([2, uid, action, payload]))
        msg = await asyncio.wait_for(fut, timeout)
        if msg[0] != 3:
            raise Failed(f"{action}: CALLERROR {msg[2:]}")
        return msg[2]

    async def wait_for(self, action: str, since: float, pred=lambda p: True, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for at, act, payload in self.calls:
                if at >= since and act == action and pred(payload):
                    return payload
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [(a, p) for t, a, p in self.calls if t >= since]
                raise Failed(f"no {action} within {timeout:.0f} s; received since: {json.dumps(seen)[:1500]}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), min(left, 1.0))
            except TimeoutError:
                pass


# ---------------------------------------------------------------- systemd, from outside the unit
def run(*cmd: str, check_rc: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {p.returncode}: {(p.stdout + p.stderr).strip()[-1500:]}")
    return p


async def arun(*cmd: str, check_rc: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    # In a thread: `systemctl stop` waits for the station, which is talking to our central
    # system in this event loop.
    return await asyncio.to_thread(run, *cmd, check_rc=check_rc, timeout=timeout)


def show(*props: str) -> dict[str, str]:
    out = run("systemctl", "show", UNIT, *(f"-p{p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def cursor() -> int:
    """Now, as the journal's __REALTIME_TIMESTAMP (µs): entries from here on are "after"."""
    return time.time_ns() // 1000


def journal(after: int, *match: str) -> list[dict]:
    args = ["journalctl", "-o", "json", "--no-pager", *match]
    if after:
        args.append(f"--since=@{after // 1_000_000 - 1}")
    entries = [json.loads(line) for line in run(*args).stdout.splitlines() if line.strip()]
    return [e for e in entries if int(e.get("__REALTIME_TIMESTAMP", 0)) >= after]


def messages(after: int, *match: str) -> list[str]:
    return [str(e.get("MESSAGE", "")) for e in journal(after, *match)]


async def wait_log(what: str, after: int, pred, *match: str, timeout: float = 15.0) -> list[str]:
    """The unit's journal lines since `after`, once `pred(lines)` holds (journald reads the
    daemon's stderr stream asynchronously: the last lines may land after the process ended)."""
    last: list[str] = []

    def probe():
        nonlocal last
        last = messages(after, *match)
        return last if pred(last) else None
    try:
        return await wait_until(what, probe, timeout)
    except Failed:
        raise Failed(f"{what}: not in the journal; the unit's lines: {last[-30:]}") from None


async def wait_until(what: str, fn, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(fn)
        if last:
            return last
        await asyncio.sleep(0.3)
    raise Failed(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def parse_span(text: str) -> float:
    """systemd's time span as `systemctl show` prints it ("1min 30s", "20s", "500ms")."""
    units = {"h": 3600, "min": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    total = 0.0
    for part in text.split():
        num = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(num) * units[part[len(num):]]
    return total


def status_text() -> str:
    return show("StatusText")["StatusText"]


async def wait_status(word: str, timeout: float = 30.0) -> str:
    return await wait_until(f"STATUS= showing {word}", lambda: status_text() if word in status_text() else None, timeout)


async def wait_new_main_pid(old: str, timeout: float) -> str:
    def new() -> str | None:
        s = show("MainPID", "ActiveState", "SubState")
        if s["MainPID"] not in ("0", old) and s["ActiveState"] == "active" and s["SubState"] == "running":
            return s["MainPID"]
        return None
    return await wait_until("restarted and running again", new, timeout)


# ---------------------------------------------------------------- the checks
async def check_start(cs: CentralSystem, since_boot_or: int = 0) -> None:
    c = cursor()
    limit = parse_span(show("TimeoutStartUSec")["TimeoutStartUSec"])
    t0 = time.monotonic()
    await arun("systemctl", "restart", UNIT)  # Type=notify: returns once READY=1 arrived
    took = time.monotonic() - t0
    s = show("ActiveState", "SubState", "TimeoutStartUSec", "NRestarts")
    check(s["ActiveState"] == "active" and s["SubState"] == "running", "service active after start",
          f"{took:.1f} s, limit {s['TimeoutStartUSec']}")
    check(took < limit, "ready within the start timeout", f"{took:.1f} s < {limit:.0f} s")
    text = await wait_status("Available")
    ok(f"STATUS= shows Available: {text!r}")
    await cs.wait_for("BootNotification", t0, timeout=30)
    # systemd's own complaints about the unit (the ConfigurationDirectory mode, unknown
    # directives, ...) at this start, and since boot or the upgrade (daemon-reload parses the unit).
    pid1 = [e for e in journal(since_boot_or, "_PID=1", "-b") if "station" in str(e.get("MESSAGE", "")) or e.get("UNIT") == UNIT]
    bad = [e["MESSAGE"] for e in pid1 if (int(e.get("PRIORITY", 6)) <= 4 or "mode is different" in str(e.get("MESSAGE")))
           and not any(str(e["MESSAGE"]).endswith(artefact) for artefact in CONTAINER_ARTEFACTS)]
    check(not bad, "no warning from systemd about the unit", "; ".join(map(str, bad)))
    own = [m for m in messages(c, f"_SYSTEMD_UNIT={UNIT}", "-p", "warning")  # the daemon's lines, not systemd's
           if HOST_CLOCK not in m]
    check(not own, "no warning from the station at start", "; ".join(own))


async def check_gpio_library_in_sandbox(cs: CentralSystem) -> None:
    """lgpio, under rpi-lgpio on every Pi, creates a notification FIFO in the working directory
    when it is imported. The daemon runs in sim mode here, so its own process never imports it:
    a runtime drop-in imports it in an ExecStartPre=, which runs with ExecStart='s user,
    sandbox and working directory. (On x86 lgpio has a wheel too; rpi-lgpio then refuses to
    run off a Pi, so only lgpio itself is imported.)"""
    dropin = Path("/run/systemd/system/station.service.d/platform-lgpio.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nExecStartPre=/opt/station/venv/bin/python -c "
                      "'import os, lgpio; print(\"lgpio imported; its FIFO is in\", os.getcwd())'\n")
    await arun("systemctl", "daemon-reload")
    c = cursor()
    await arun("systemctl", "restart", UNIT, check_rc=False)
    active = show("ActiveState")["ActiveState"] == "active"
    lines = await wait_log("the ExecStartPre= import of lgpio", c,
                           lambda ls: any("lgpio imported" in m or "ExecStartPre" in m or "lgd-nfy" in m for m in ls), "-u", UNIT)
    dropin.unlink()
    await arun("systemctl", "daemon-reload")
    check(active, "lgpio (the GPIO library of every Pi) imports inside the unit's sandbox",
          next((m for m in lines if "lgpio imported" in m), "; ".join(lines[-8:])))
    await arun("systemctl", "restart", UNIT)
    await wait_status("Available")


async def start_session(cs: CentralSystem, label: str) -> int:
    since = time.monotonic()
    answer = await cs.call("RemoteStartTransaction", {"idTag": TAG, "connectorId": 1})
    check(answer.get("status") == "Accepted", f"{label}: RemoteStartTransaction accepted", json.dumps(answer))
    start = await cs.wait_for("StartTransaction", since, lambda p: p.get("idTag") == TAG, timeout=30)
    tx = start["_transactionId"]
    await wait_status("Charging", timeout=30)
    ok(f"{label}: session charging, transactionId {tx}")
    return tx


async def check_kill9(cs: CentralSystem) -> None:
    tx = await start_session(cs, "kill -9")
    s = show("MainPID", "NRestarts")
    since = time.monotonic()
    os.kill(int(s["MainPID"]), signal.SIGKILL)
    pid = await wait_new_main_pid(s["MainPID"], 60)
    n = show("NRestarts")["NRestarts"]
    check(int(n) == int(s["NRestarts"]) + 1, "kill -9: restarted by systemd", f"MainPID {s['MainPID']} -> {pid}, NRestarts {n}")
    stop = await cs.wait_for("StopTransaction", since, lambda p: p.get("transactionId") == tx, timeout=60)
    check(stop.get("reason") == "PowerLoss", "kill -9: the open session closed as PowerLoss",
          f"transactionId {tx}, reason {stop.get('reason')}, meterStop {stop.get('meterStop')}")
    await wait_status("Available", timeout=60)


async def check_stop(cs: CentralSystem) -> None:
    tx = await start_session(cs, "systemctl stop")
    c = cursor()
    since = time.monotonic()
    await arun("systemctl", "stop", UNIT)
    s = show("ActiveState", "Result")
    check(s["ActiveState"] == "inactive" and s["Result"] == "success", "systemctl stop: stopped cleanly", str(s))
    stop = await cs.wait_for("StopTransaction", since, lambda p: p.get("transactionId") == tx, timeout=5)
    check(stop.get("reason") == "Reboot", "systemctl stop: the session ended as Reboot, delivered before exit",
          f"transactionId {tx}, meterStop {stop.get('meterStop')}")
    lines = await wait_log("systemctl stop: the contactor opened", c,
                           lambda ls: any("stopped (Reboot)" in m for m in ls)
                           and any("emulated contactor open" in m for m in ls),
                           "-u", UNIT)
    check(True, "systemctl stop: the contactor opened", next(m for m in lines if "emulated contactor open" in m))


async def check_watchdog(cs: CentralSystem) -> None:
    dropin = Path("/run/systemd/system/station.service.d/platform-watchdog.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    # A shorter watchdog, and no 20 s grace between SIGABRT and SIGKILL, to keep the check short.
    dropin.write_text("[Service]\nWatchdogSec=4\nTimeoutAbortSec=2\n")
    await arun("systemctl", "daemon-reload")
    await arun("systemctl", "start", UNIT)
    s = show("MainPID", "NRestarts", "WatchdogUSec")
    check(s["WatchdogUSec"] == "4s", "watchdog: drop-in in force", f"WatchdogUSec={s['WatchdogUSec']}")
    await asyncio.sleep(10)  # alive for more than two watchdog periods: the event loop pings
    check(show("MainPID")["MainPID"] == s["MainPID"], "watchdog: a running loop keeps the service alive for 10 s")
    c = cursor()
    os.kill(int(s["MainPID"]), signal.SIGSTOP)  # the event loop hangs
    pid = await wait_new_main_pid(s["MainPID"], 60)
    log = await wait_log("watchdog timeout", c, lambda ls: any("Watchdog timeout" in m for m in ls), "-u", UNIT)
    hit = [m for m in log if "Watchdog timeout" in m]
    check(bool(hit), "watchdog: the hung process was killed by the watchdog and restarted", f"{hit[:1]}, MainPID {pid}")
    dropin.unlink()
    await arun("systemctl", "daemon-reload")
    await arun("systemctl", "restart", UNIT)
    await wait_status("Available", timeout=60)


async def check_reset(cs: CentralSystem) -> None:
    await wait_status("online", timeout=60)
    c = cursor()
    s = show("MainPID", "NRestarts")
    since = time.monotonic()
    answer = await cs.call("Reset", {"type": "Soft"})
    check(answer.get("status") == "Accepted", "reset: Reset accepted")

    # Between the exit and the restart (RestartSec=) systemd shows how the process ended.
    def exited():
        st = show("SubState", "ExecMainStatus", "ExecMainCode", "Result")
        return st if st["SubState"] == "auto-restart" else None
    st = await wait_until("reset: the station exits for a restart", exited, 30)
    check(st["ExecMainStatus"] == "75" and st["ExecMainCode"] == "1" and st["Result"] == "success",
          "reset: exit status 75 counts as success", str(st))
    pid = await wait_new_main_pid(s["MainPID"], 60)
    await cs.wait_for("BootNotification", since, timeout=60)
    log = messages(c, "-u", UNIT)
    failed = [m for m in log if "Failed with result" in m]
    check(not failed and show("Result")["Result"] == "success", "reset: restarted without a failure",
          f"MainPID {s['MainPID']} -> {pid}, {failed[:1]}")


def sandbox_write(pid: str, path: str, user: str | None) -> tuple[bool, str]:
    """Try to create a file in `path` inside the daemon's mount namespace, as `user` (or root)."""
    probe = f"{path.rstrip('/')}/.platform-probe"
    cmd = ["nsenter", "-t", pid, "-m", "--"]
    if user:
        cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    cmd += ["sh", "-c", f'touch "{probe}" && rm -f "{probe}"']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return p.returncode == 0, (p.stderr.strip().splitlines() or [""])[-1]


async def check_sandbox(cs: CentralSystem) -> None:
    pid = show("MainPID")["MainPID"]
    for path in (str(STATE), "/run/station", str(STATE / "firmware")):
        can, why = sandbox_write(pid, path, "station")
        check(can, f"sandbox: the daemon's user can write {path}", why)
    for path in ("/opt/station", "/opt/station/venv", "/etc/station", "/etc", "/usr/local", "/var/lib", "/var/log",
                 "/root", "/home"):
        for user in ("station", None):
            can, why = sandbox_write(pid, path, user)
            check(not can, f"sandbox: {path} is not writable ({user or 'even root'} in the unit's namespace)", why)
    p = run("systemd-analyze", "security", UNIT, "--no-pager", check_rc=False)
    exposure = [line for line in p.stdout.splitlines() if "Overall exposure" in line]
    ok(f"systemd-analyze security: {exposure[0].strip() if exposure else p.stdout[-200:]}")


# ---------------------------------------------------------------- the upgrade
def outbox(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0], con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def sessions() -> list[dict]:
    return json.loads(run("runuser", "-u", "station", "--", VENV_STATION, "sessions", "--json", "-c", str(CONF)).stdout)


def sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def upgrade(cs: CentralSystem, readme_upgrade: str, old_rev: str) -> None:
    check(Path("/opt/station/.git").exists()
          and run("git", "-C", "/opt/station", "rev-parse", "HEAD").stdout.startswith(old_rev[:7]),
          "upgrade: the previous release is installed", old_rev)
    await arun("systemctl", "start", UNIT)
    await wait_status("Available")
    tx = await start_session(cs, "upgrade")
    await cs.down()  # the backend is unreachable from now on
    await asyncio.sleep(1)
    await arun("systemctl", "stop", UNIT)
    before = sessions()
    queued, version = outbox(STATE / "journal.db")
    mine = [s for s in before if s["id_tag"] == TAG]
    check(queued >= 1 and mine and not mine[-1]["delivered"] and mine[-1]["stop_reason"] == "Reboot",
          "upgrade: the old release left an undelivered session in the queue",
          f"{queued} queued, schema {version}, session {mine[-1] if mine else None}")
    conf_sha = sha(CONF)

    global UPGRADED_AT
    UPGRADED_AT = cursor()
    p = await arun("bash", readme_upgrade, check_rc=False, timeout=900)
    print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
    check(p.returncode == 0, "upgrade: the README's upgrade commands succeeded", f"exit {p.returncode}")
    new_rev = run("git", "-C", "/opt/station", "rev-parse", "HEAD").stdout.strip()
    check(new_rev != old_rev, "upgrade: the clone moved to the new release", f"{old_rev[:10]} -> {new_rev[:10]}")
    await wait_until("the upgraded service running", lambda: show("ActiveState")["ActiveState"] == "active", 60)
    check(sha(CONF) == conf_sha, "upgrade: the configuration is unchanged")
    queued_after, version_after = outbox(STATE / "journal.db")
    check(queued_after == queued, "upgrade: the queue survived (backend still down)", f"{queued_after} queued")
    check(version_after > version, "upgrade: the journal's schema migrated", f"user_version {version} -> {version_after}")

    since = time.monotonic()
    await cs.up()  # the backend is back
    stop = await cs.wait_for("StopTransaction", since, lambda p: p.get("transactionId") == tx, timeout=180)
    check(stop.get("reason") == "Reboot", "upgrade: the queued StopTransaction was delivered after the upgrade",
          f"transactionId {tx}, meterStop {stop.get('meterStop')}")
    await wait_until("the queue empty", lambda: outbox(STATE / "journal.db")[0] == 0, 60)
    after = sessions()
    check(len(after) == len(before) and after[-1]["delivered"], "upgrade: the journal kept every session, now delivered",
          f"{len(after)} session(s)")


# ---------------------------------------------------------------- main
def write_config(port: int, firmware: bool = False) -> None:
    """The user's edit (README: sudoedit): emulated hardware, this central system; with `firmware`,
    the test manufacturer's firmware signing root (firmware_probe.py). The file keeps the owner and
    mode the installer gave it, and the daemon's user must be able to read it."""
    text = STATION_CONFIG % port
    if firmware:
        import firmware_probe

        firmware_probe.make_pki()
        text += firmware_probe.CONFIG
    CONF.write_text(text)
    run("runuser", "-u", "station", "--", VENV_STATION, "check-config", str(CONF))
    ok(f"config: sim hardware, OCPP central system on port {port}; check-config passes as the station user")


async def main(mode: str) -> int:
    cs = CentralSystem()
    await cs.up()
    try:
        write_config(cs.port, firmware=mode == "fresh")
        if mode == "fresh":
            await check_start(cs)
            await check_gpio_library_in_sandbox(cs)
            await check_kill9(cs)
            await check_stop(cs)
            await check_watchdog(cs)
            await check_reset(cs)
            await check_sandbox(cs)
            import firmware_probe

            await firmware_probe.checks(cs, sys.modules[__name__])
        elif mode == "upgrade":
            await upgrade(cs, "/platform/readme-upgrade.sh", Path("/platform/upgrade-from").read_text().strip())
            await check_start(cs, UPGRADED_AT)
        else:
            raise SystemExit(f"unknown mode {mode}")
    except Failed as exc:
        print(f"FAIL {exc}", flush=True)
        return 1
    finally:
        await cs.down()
    print("all systemd checks passed", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1])))
