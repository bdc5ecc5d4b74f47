"""Benchmark: OCPP 2.0.1 against 1.6, the same station process at the same strict central system.

For each version a station process (`python -m bench.station_proc`, sim hardware, the emulated
meter in its own process, as in b_process) runs with `backend.ocpp.versions = [version]` against
scripts/harness/peers/strict_cs.js (npm ocpp-rpc, strict mode) speaking only that version, with its frame
report on: every websocket message and its size is counted at the central system, in both
directions, so the byte figures are what crosses the wire (websocket framing excluded: payload
text only).

* Bytes per transaction: from the tap that starts a 7.4 kW session to the StatusNotification
  Available after the tap that ends it (Authorize, status changes, StartTransaction/StopTransaction
  or TransactionEvent Started/Ended, every answer), with the periodic transaction meter values at
  a 10 s interval (1.6 MeterValueSampleInterval, 2.0.1 SampledDataCtrlr.TxUpdatedInterval, set by
  the central system beforehand) over about 35 s of charging. The periodic messages are counted
  apart (MeterValues in 1.6, TransactionEvent Updated in 2.0.1) with their bytes each, so a
  transaction of any length can be priced: fixed part + n x periodic message. Measurands are each
  version's product defaults.
* CPU per message: K TriggerMessage(StatusNotification) and K TriggerMessage(MeterValues) requests,
  one after the other, each a CALL in, its answer out, the triggered CALL out and its answer in:
  the station process's utime + stime (/proc/<pid>/stat) over the run, less its idle rate over the
  same wall time (measured just before), divided by the messages counted at the central system.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.b_process import _Proc, base_config, write_config
from bench.common import PYTHON, ROOT, Result, proc_cpu_s, sim_env
from bench.stations import CARD, import_strict_peer, strict_central_system

VERSIONS = ("1.6", "2.0.1")


@contextlib.asynccontextmanager
async def station(version: str, url: str, tmpdir: Path) -> AsyncIterator[tuple[_Proc, int]]:
    """A station process speaking `version` to `url`, online; yields (control, pid)."""
    env = sim_env()
    (tmpdir / "meter").mkdir(exist_ok=True)
    mlog = open(tmpdir / "meter.log", "wb")
    meter = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bench.meter_proc", "--state-dir", str(tmpdir / "meter"), env=env, cwd=str(ROOT),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=mlog)
    slog = open(tmpdir / "station.log", "wb")
    proc = None
    try:
        port, ctl = (await _Proc(meter).expect("PORT")).split()
        cfg = write_config(tmpdir / "station.toml", base_config(tmpdir / "state", {
            "backend.kind": "ocpp", "backend.ocpp.url": url, "backend.ocpp.versions": [version],
            "charging.finishing_s": 0.2}))
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "bench.station_proc", "-c", str(cfg), "--remote-meter", port, ctl, "--card", CARD,
            env=env, cwd=str(ROOT), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=slog)
        sp = _Proc(proc)
        await sp.expect("READY")
        await sp.expect("ONLINE")
        yield sp, proc.pid
        await sp.send("quit")
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        for p in (proc, meter):
            if p is not None and p.returncode is None:
                p.kill()
                await p.wait()
        slog.close()
        mlog.close()


def _frames(cs: Any, after: int) -> list[dict[str, Any]]:
    return [e for e in cs.events[after:] if e["event"] == "frame"]


def _periodic(cs: Any, version: str, after: int) -> list[int]:
    """Bytes of each periodic transaction meter-value CALL after event `after` (its answer included)."""
    method = "MeterValues" if version == "1.6" else "TransactionEvent"
    calls = [e for e in cs.events[after:] if e["event"] == "call" and e["method"] == method]
    inbound = [e for e in _frames(cs, after) if not e["outbound"] and e["type"] == 2 and e["method"] == method]
    answers = {e["id"]: e["bytes"] for e in _frames(cs, after) if e["outbound"] and e["type"] == 3}
    out = []
    for call, frame in zip(calls, inbound, strict=False):
        if version == "1.6" or call["params"].get("eventType") == "Updated" and call["params"].get(
                "triggerReason") == "MeterValuePeriodic":
            out.append(frame["bytes"] + answers.get(frame["id"], 0))
    return out


async def _set_interval(cs: Any, version: str, seconds: int) -> None:
    if version == "1.6":
        r = await cs.command("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": str(seconds)})
        assert r["status"] == "Accepted", r
    else:
        r = await cs.command("SetVariables", {"setVariableData": [{
            "component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"},
            "attributeValue": str(seconds)}]})
        assert r["setVariableResult"][0]["attributeStatus"] == "Accepted", r


async def _available_after(cs: Any, version: str, after: int, timeout: float = 30) -> None:
    def seen(e: dict[str, Any]) -> bool:
        if e not in cs.events[after:] or e["event"] != "call" or e["method"] != "StatusNotification":
            return False
        p = e["params"]
        return (p.get("status") if version == "1.6" else p.get("connectorStatus")) == "Available"
    await cs.wait(seen, timeout)


async def transaction_bytes(cs: Any, sp: _Proc, version: str, charge_s: float) -> dict[str, Any]:
    await _set_interval(cs, version, 10)
    mark = len(cs.events)
    await sp.send("charge")
    await sp.expect("CHARGING")
    await asyncio.sleep(charge_s)
    await sp.send("stop")
    await sp.expect("STOPPED")
    await _available_after(cs, version, mark)
    await asyncio.sleep(0.5)
    frames = _frames(cs, mark)
    periodic = _periodic(cs, version, mark)
    total = sum(f["bytes"] for f in frames)
    methods: dict[str, int] = {}
    for f in frames:
        if f["type"] == 2:
            methods[f["method"]] = methods.get(f["method"], 0) + 1
    return {
        "frames": len(frames),
        "bytes_total": total,
        "bytes_station_to_cs": sum(f["bytes"] for f in frames if not f["outbound"]),
        "bytes_cs_to_station": sum(f["bytes"] for f in frames if f["outbound"]),
        "periodic_messages": len(periodic),
        "bytes_per_periodic_message_with_answer": round(sum(periodic) / len(periodic), 1) if periodic else None,
        "bytes_fixed_part": total - sum(periodic),
        "calls": methods,
    }


def _trigger(version: str, what: str) -> dict[str, Any]:
    if version == "1.6":
        return {"requestedMessage": what, "connectorId": 1}
    return {"requestedMessage": what, "evse": {"id": 1, **({"connectorId": 1} if what == "StatusNotification" else {})}}


async def cpu_per_message(cs: Any, pid: int, version: str, what: str, k: int, idle_s: float) -> dict[str, Any]:
    c0, w0 = proc_cpu_s(pid), time.monotonic()
    await asyncio.sleep(idle_s)
    idle_rate = (proc_cpu_s(pid) - c0) / (time.monotonic() - w0)
    mark = len(cs.events)
    c0, w0 = proc_cpu_s(pid), time.monotonic()
    for _ in range(k):
        r = await cs.command("TriggerMessage", _trigger(version, what))
        assert r["status"] == "Accepted", r
    await cs.wait(lambda e: sum(1 for x in cs.events[mark:] if x["event"] == "call" and x["method"] == what) >= k, 30)
    await asyncio.sleep(0.2)  # the last answer
    wall = time.monotonic() - w0
    cpu = proc_cpu_s(pid) - c0 - idle_rate * wall
    frames = _frames(cs, mark)
    return {"triggers": k, "messages": len(frames), "wall_ms_per_trigger": round(wall / k * 1000, 2),
            "cpu_ms_per_message": round(cpu / len(frames) * 1000, 3),
            "bytes_per_trigger": round(sum(f["bytes"] for f in frames) / k, 1),
            "idle_cpu_s_per_min": round(idle_rate * 60, 3)}


async def measure(version: str, quick: bool) -> dict[str, Any]:
    k = 30 if quick else 300
    with tempfile.TemporaryDirectory(prefix=f"bench-ocpp{version}-") as tmp:
        async with strict_central_system(version, frames=True) as cs, station(version, cs.url, Path(tmp)) as (sp, pid):
            await asyncio.sleep(1.0 if quick else 3.0)
            out: dict[str, Any] = {}
            for what in ("StatusNotification", "MeterValues"):
                out[f"cpu_{what}"] = await cpu_per_message(cs, pid, version, what, k, 3.0 if quick else 20.0)
            out["transaction"] = await transaction_bytes(cs, sp, version, 12.0 if quick else 35.0)
            failures = cs.failures()
            out["schema_failures"] = len(failures)
            if failures:
                out["first_failure"] = failures[0]
            return out


def run(quick: bool) -> Result:
    res = Result("ocpp_versions", "OCPP 2.0.1 against 1.6: bytes per transaction, CPU per message")
    if import_strict_peer() is None:
        res.skipped = "node or scripts/harness/peers/node_modules/ocpp-rpc missing (bash scripts/harness/peers/install.sh)"
        return res

    async def main() -> None:
        for version in VERSIONS:
            try:
                res.figures[version] = await measure(version, quick)
            except Exception as exc:  # noqa: BLE001 - one version failing must not lose the other
                res.figures[version] = {"error": f"{type(exc).__name__}: {exc}"}

    asyncio.run(main())
    res.notes += [
        "Both versions at scripts/harness/peers/strict_cs.js (ocpp-rpc strict mode); bytes are websocket message payloads "
        "counted at the central system, both directions, answers included.",
        "A transaction: tap, about 35 s at 7.4 kW with periodic values every 10 s, tap, back to Available. Price a "
        "longer one as the fixed part + n x the periodic message (one per TxUpdatedInterval / "
        "MeterValueSampleInterval).",
        "CPU per message: the station process less its idle rate, over TriggerMessage round trips (4 messages each: "
        "the request, its answer, the triggered CALL, its answer); /proc ticks are 10 ms, so use the full run.",
    ]
    if quick:
        res.notes.append("quick mode: 30 triggers and a 12 s transaction (full: 300 and 35 s)")
    return res
