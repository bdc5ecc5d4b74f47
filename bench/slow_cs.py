"""A real-time 15-minute charge against a central system that answers late, wrongly, and not at all.

    python bench/slow_cs.py [--minutes 15] [--json] [--workdir DIR]

Theory of operation
-------------------
The tests (tests/backends/ocpp/test_ocpp_slow_central_system.py) run the same
misbehaviours with every protocol interval and deadline scaled down; this
runs them once at field time, with product defaults: a 30 s response timeout,
TransactionMessageAttempts 3, TransactionMessageRetryInterval 60 s, the
deliverer's 180 s deadline, MeterValueSampleInterval 60 s. A whole station
(station.daemon.Station, emulated hardware, 7.4 kW load) charges for
`--minutes` while scripts/harness/peers/ledger_cs.js (ocpp-rpc, strict schemas, a plain
central system with a ledger) misbehaves, phase by phase (minutes are fractions
of the charge, so a shorter run keeps the same order):

    0     StartTransaction answered 35 s late (after the timeout): the late answer is used
    0.2   MeterValues answered with a frame that is not JSON
    0.3   MeterValues answered with a wrong message id (each a failed try, retried after
          60 s, then 120 s, everything behind it waiting in order)
    0.45  MeterValues answered well again (in a 15-minute run: its third try); the charge
          goes on
    1.0   the driver stops; StopTransaction answered with CALLERROR: three tries, then held
          undelivered; the central system is repaired; the operator's `--resend`: delivered

The driver's side is looked at ten times a second: state, contactor, LCD.
The figures: how long it charged, how many looks were not a running charge
(must be 0), supervisor restarts and failures (must be 0), the messages the
central system got, the transactions it holds open at the end (must be the
ones the station names: 0 here), the energy billed there against the
meter's advance, the CPU the station used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.stations import CARD, station_config  # noqa: E402


async def _until(pred: Callable[[], bool], period: float = 0.1) -> None:
    """Poll a condition of the station (no event tells it); the run itself is bounded by the caller."""
    while True:
        if pred():
            return
        await asyncio.sleep(period)


async def _look(st: Any, seen: dict[str, int], until: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        c = st.charger
        lines = " ".join(c.presenter.lines).lower()
        ok = (c.state.value == "Charging" and st.world.contactor_closed and "charging" in lines
              and "not charging" not in lines and st.failure is None)
        seen["looks"] += 1
        seen["bad"] += not ok
        await asyncio.sleep(0.1)


async def run(minutes: float, work: Path, say=print) -> dict[str, Any]:
    from torture_ocpp import LedgerCS, missing, read_ledger  # scripts/harness (bench/__init__.py)

    from station import cli
    from station.daemon import Station

    if missing():
        raise RuntimeError(missing())
    (work / "cs").mkdir(parents=True, exist_ok=True)
    cs = LedgerCS(work / "cs", [CARD])
    await cs.start()
    state = work / "state"
    cfg = station_config(state, {"backend.kind": "ocpp", "backend.ocpp.url": cs.url, "station.name": "CP1",
                                 "sim.load_w": 7400.0, "sim.ev_connected_input": True})
    from station.store import Store

    store = Store.open(state)
    store.put_json("ocpp.config", {"MeterValueSampleInterval": "60"})
    store.close()
    st = Station(cfg)
    await st.start()
    loop = asyncio.get_running_loop()
    cpu0, t0 = time.process_time(), loop.time()
    seen = {"looks": 0, "bad": 0}
    try:
        assert await st.backend.wait_ready(30), "no registration"
        charge_s = minutes * 60
        await cs.command("misbehave", method="StartTransaction", mode="late", times=1, delayMs=35_000)
        st.world.plug()
        await st.world.tap(CARD)
        await _until(lambda: st.charger.state.value == "Charging")
        start = loop.time()
        session = st.charger.session
        say(f"charging: session {session.id}; StartTransaction answered 35 s late")
        await _look(st, seen, start + 0.2 * charge_s)
        await cs.command("misbehave", method="MeterValues", mode="garbage", times=3)
        say("MeterValues answered with frames that are not JSON")
        await _look(st, seen, start + 0.3 * charge_s)
        await cs.command("misbehave", method="MeterValues", mode="wrong_id", times=3)
        say("MeterValues answered with a wrong message id")
        await _look(st, seen, start + 0.45 * charge_s)
        await cs.command("misbehave", method="MeterValues")
        say("MeterValues answered well again")
        await _look(st, seen, start + charge_s)
        charged_s = loop.time() - start
        await cs.command("misbehave", method="StopTransaction", mode="callerror")
        await st.world.tap(CARD)
        say("the driver stops; StopTransaction answered with CALLERROR")
        t_stop = loop.time()
        await _until(lambda: "held" in st.store.session(session.id).extra)
        held_after_s = loop.time() - t_stop
        reason = st.store.session(session.id).extra["held"]["stop"]
        say(f"StopTransaction held after {held_after_s:.0f} s: {reason}")
        await cs.command("misbehave", method="StopTransaction")
        assert cli.main(["sessions", "--state-dir", str(state), "--resend", str(session.id)]) == 0
        await _until(lambda: bool(st.store.session(session.id).extra.get("delivered")))
        say("resent: delivered")
        row = st.store.session(session.id)
        calls = [e for e in read_ledger(cs.ledger) if e["ev"] == "call"]
        count = {m: sum(e["method"] == m for e in calls) for m in ("StartTransaction", "MeterValues", "StopTransaction")}
        tx = int(row.backend_session_id)
        start_call = next(e for e in calls if e["method"] == "StartTransaction" and e.get("txId") == tx)
        stop_call = next(e for e in calls if e["method"] == "StopTransaction" and not e.get("refused"))
        return {
            "minutes_charged": round(charged_s / 60, 2),
            "looks": seen["looks"], "looks_not_a_running_charge": seen["bad"],
            "supervisor_restarts": {k: v.count for k, v in st.supervisor.restarts.items()},
            "station_failure": st.failure,
            "cs_calls": count,
            "stop_held_after_s": round(held_after_s, 1),
            "held_reason": reason,
            "rejected": row.extra.get("rejected"),
            "open_at_cs": await cs.open_transactions(),
            "named_open": (row.extra.get("maybe_open_at_backend") or {}).get("count", 0),
            "billed_wh": stop_call["params"]["meterStop"] - start_call["params"]["meterStart"],
            "journal_wh": row.energy_wh,
            "schema_failures": sum(e["ev"] in ("schema", "bad") for e in read_ledger(cs.ledger)),
            "station_cpu_s": round(time.process_time() - cpu0, 1),
            "wall_s": round(loop.time() - t0, 1),
        }
    finally:
        await st.stop(graceful=False)
        await cs.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--workdir", help="keep the journal and the central system's ledger here")
    args = p.parse_args(argv)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="station-slow-cs-"))
    figures = asyncio.run(run(args.minutes, work, say=lambda t: print(t, flush=True)))
    print(json.dumps(figures, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    ok = (figures["looks_not_a_running_charge"] == 0 and not figures["supervisor_restarts"]
          and figures["station_failure"] is None and figures["billed_wh"] == figures["journal_wh"]
          and len(figures["open_at_cs"]) <= figures["named_open"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
