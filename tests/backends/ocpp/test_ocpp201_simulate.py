"""The issue's acceptance run, as an installer would do it: `station simulate` (the real program, its own
process, emulated hardware) with backend.ocpp.versions = ["2.0.1"] against the independent strict 2.0.1
central system (ocpp-rpc, strict mode, bundled schemas): it boots, reports its status, runs a local and a
remote transaction with meter values, survives an outage with the offline transaction delivered in order,
and after kill -9 in a transaction ends it with PowerLoss. Zero schema failures."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import strict_peer
from strict_peer import TimedCS

ROOT = Path(__file__).resolve().parents[3]
CARD = "D64FC93B"
CONFIG = """\
[station]
name = "CP201"
[hardware]
mode = "sim"
[sim]
ev_connected_input = true
[rfid]
poll_interval_s = 0.05
absent_s = 0.2
[charging]
meter_interval_s = 0.2
finishing_s = 0.2
message_s = 0.5
no_power_timeout_s = 0
[backend]
kind = "ocpp"
[backend.ocpp]
url = "{url}"
versions = ["2.0.1"]
"""


def step(action: str, **kw) -> str:
    body = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in kw.items())
    return f"[[step]]\naction = \"{action}\"\n{body}\n"


def events(cs: TimedCS, after: int = 0) -> list[dict]:
    return [e["params"] for e in cs.events[after:] if e["event"] == "call" and e["method"] == "TransactionEvent"]


def logfile(path: Path):
    return open(path, "ab")  # noqa: SIM115 - the process writes it while we wait


async def simulate(tmp_path: Path, scenario: str) -> asyncio.subprocess.Process:
    (tmp_path / "round.toml").write_text(scenario)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = logfile(tmp_path / "station.log")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "station", "--log-level", "INFO", "simulate", "-c", str(tmp_path / "station.toml"),
        "--state-dir", str(tmp_path / "state"), "--scenario", str(tmp_path / "round.toml"),
        cwd=str(ROOT), env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL)


@pytest.mark.timeout(240)
async def test_station_simulate_with_2_0_1_against_a_strict_central_system(tmp_path):
    cs = await strict_peer.start201(cls=TimedCS)
    try:
        (tmp_path / "station.toml").write_text(CONFIG.format(url=cs.url))
        (tmp_path / "state").mkdir()
        from station.store import Store
        store = Store.open(tmp_path / "state")
        store.put_json("ocpp201.variables", {"SampledDataCtrlr/TxUpdatedInterval": "1"})
        store.close()
        scenario = "settle_s = 30.0\n\n" + "".join([
            # a local transaction with meter values
            step("load", watts=7400), step("plug"), step("tap", uid=CARD, hold_s=0.15),
            step("expect", state="Charging", within=15),
            step("consume", wh=1200), step("wait", seconds=2.5), step("tap", uid=CARD, hold_s=0.15),
            step("unplug"), step("expect", state="Available", within=15),
            # a remote one: the central system starts it when the EV is there, and stops it
            step("plug"), step("expect", state="Charging", within=30), step("consume", wh=700),
            step("expect", state="Finishing", within=30), step("unplug"), step("expect", state="Available", within=15),
            # an outage: a transaction offline with the cached card, delivered after
            step("wait", seconds=1.0), step("plug"), step("tap", uid=CARD, hold_s=0.15),
            step("expect", state="Charging", within=15), step("consume", wh=300), step("wait", seconds=1.5),
            step("tap", uid=CARD, hold_s=0.15), step("unplug"), step("expect", state="Available", within=15)])
        proc = await simulate(tmp_path, scenario)
        boot = await cs.call_from_cp("BootNotification", timeout=30)
        assert boot["reason"] == "PowerUp"
        await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Available", timeout=30)
        first = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Ended", timeout=60)
        n = len(cs.events)
        await cs.call_from_cp("StatusNotification", lambda p: p["connectorStatus"] == "Occupied", after=n, timeout=60)
        assert (await cs.command("RequestStartTransaction", {"idToken": {"idToken": "REMOTE-1", "type": "Central"},
                                                             "remoteStartId": 77}))["status"] == "Accepted"
        remote = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n, timeout=30)
        await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic", after=n,
                              timeout=30)
        tx = remote["transactionInfo"]["transactionId"]
        assert (await cs.command("RequestStopTransaction", {"transactionId": tx}))["status"] == "Accepted"
        await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Ended", after=n, timeout=30)
        n = len(cs.events)
        await cs.command("__outage", {"seconds": 6})
        code = await asyncio.wait_for(proc.wait(), 180)
        assert code == 0, (tmp_path / "station.log").read_text()[-3000:]
        offline = [p for p in events(cs, n) if p.get("offline")]
        assert [p["eventType"] for p in offline][0] == "Started" and offline[-1]["eventType"] == "Ended"
        assert [p["seqNo"] for p in offline] == list(range(len(offline)))
        assert first["transactionInfo"]["stoppedReason"] == "Local" and remote["transactionInfo"]["remoteStartId"] == 77

        # kill -9 in a transaction; the next run ends it with PowerLoss
        n = len(cs.events)
        proc = await simulate(tmp_path, "".join([step("load", watts=7400), step("plug"),
                                                 step("tap", uid=CARD, hold_s=0.15),
                                                 step("expect", state="Charging", within=15), step("consume", wh=400),
                                                 step("wait", seconds=60)]))
        started = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Started", after=n, timeout=60)
        await cs.call_from_cp("TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic", after=n,
                              timeout=30)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        proc = await simulate(tmp_path, step("wait", seconds=0.5))
        end = await cs.call_from_cp("TransactionEvent", lambda p: p["eventType"] == "Ended", after=n, timeout=60)
        assert end["transactionInfo"] == {"transactionId": started["transactionInfo"]["transactionId"],
                                          "chargingState": "EVConnected", "stoppedReason": "PowerLoss"}
        assert await asyncio.wait_for(proc.wait(), 120) == 0
        assert cs.failures() == []
    finally:
        await cs.close()
