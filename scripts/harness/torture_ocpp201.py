"""The OCPP 2.0.1 judge of the kill test, at a strict central system we did not write.

The central system is scripts/harness/peers/ledger_cs.js speaking ocpp2.0.1 (npm ocpp-rpc
in strict mode with its bundled 2.0.1 schemas): it appends every call, schema
failure and connection end to a JSON-lines ledger before it answers, and marks
a TransactionEvent whose transactionId and seqNo it has seen before as a
repeat (and whether the repeat is identical). `judge201()` reads that ledger
and the station's journal after the last round and demands:

* every charging session of the journal (active or stopped) is a transaction
  at the central system under the session's key as transactionId, with its
  events numbered 0..n without a gap (E01.FR.07), exactly one Started (seqNo
  0) and one Ended (seqNo n), the journal's idToken in Started, the journal's
  start and stop registers as Transaction.Begin and Transaction.End, and the
  journal's stop reason as stoppedReason;
* a repeated event (a kill after the send, before the journal noted the
  answer) repeats the first one exactly: same seqNo, same content; each one
  is counted;
* no transactionId at the central system that no journal session has;
* per connector, a transaction starts only after the previous one ended, and
  the registers never go back;
* the energy billed at the central system (End - Begin over its transactions)
  equals the meter's advance;
* zero strict-schema failures and zero frames that are not OCPP-J.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

from station.backends.ocpp201.txevents import _STOPS

ENERGY = "Energy.Active.Import.Register"


def _register(event: dict[str, Any], context: str) -> int | None:
    for mv in event.get("meterValue", []):
        for v in mv["sampledValue"]:
            if v.get("context") == context and v.get("measurand", ENERGY) == ENERGY and "phase" not in v:
                return int(v["value"])
    return None


def _journal(path: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM sessions WHERE state IN ('active', 'stopped') ORDER BY id").fetchall()
    finally:
        db.close()


def judge201(fig: Any, journal: Path, events: list[dict[str, Any]]) -> None:
    """The invariants at the central system. Appends to fig.failures, fills the OCPP figures."""
    fail = fig.failures.append
    for e in events:
        if e["ev"] in ("schema", "bad"):
            fig.schema_failures += 1
            fail(f"strict central system: {e['ev']} {json.dumps(e)[:300]}")
    tx_events = [e for e in events if e["ev"] == "call" and e["method"] == "TransactionEvent"]
    fig.cs_events = len(tx_events)
    by_tx: dict[str, list[dict[str, Any]]] = {}
    for e in tx_events:
        if e["repeat"]:
            fig.repeated_events += 1
            if not e["same"]:
                fail(f"transaction {e['txId']} seqNo {e['params']['seqNo']} sent again with other content")
            continue
        by_tx.setdefault(e["txId"], []).append(e)
        fig.offline_events += bool(e["params"].get("offline"))
    fig.cs_transactions = len(by_tx)

    rows = _journal(journal)
    keys = {r["key"] for r in rows}
    for tx in by_tx:
        if tx not in keys:
            fail(f"transaction {tx} at the central system belongs to no journal session")
    first_start: dict[str, int] = {}
    end_of: dict[str, dict[str, Any]] = {}
    for r in rows:
        what = f"journal session {r['id']} ({r['stop_reason']})"
        if r["state"] != "stopped" or not r["delivered"]:
            fail(f"{what} is {'open' if r['state'] != 'stopped' else 'not delivered'}")
            continue
        mine = by_tx.get(r["key"], [])
        if not mine:
            fail(f"{what}: never started at the central system")
            continue
        seqs = [e["params"]["seqNo"] for e in mine]
        if sorted(seqs) != list(range(len(seqs))):
            fig.seq_gaps += 1
            fail(f"{what}: seqNo {sorted(seqs)} is not 0..{len(seqs) - 1} without a gap")
        kinds = [e["params"]["eventType"] for e in sorted(mine, key=lambda e: e["params"]["seqNo"])]
        if kinds[0] != "Started" or kinds[-1] != "Ended" or kinds.count("Started") != 1 or kinds.count("Ended") != 1:
            fail(f"{what}: events {kinds}")
            continue
        start = next(e for e in mine if e["params"]["eventType"] == "Started")
        end = next(e for e in mine if e["params"]["eventType"] == "Ended")
        first_start[r["key"]], end_of[r["key"]] = start["seq"], end
        if start["params"].get("idToken", {}).get("idToken") != r["id_tag"][:36]:
            fail(f"{what}: started at the central system for {start['params'].get('idToken')}")
        begin, stop = _register(start["params"], "Transaction.Begin"), _register(end["params"], "Transaction.End")
        if (begin, stop) != (r["meter_start_wh"], r["meter_stop_wh"]):
            fail(f"{what}: registers {begin}..{stop} at the central system, {r['meter_start_wh']}.."
                 f"{r['meter_stop_wh']} in the journal")
        reason = _STOPS.get(r["stop_reason"], ("Other", ""))[0]
        if end["params"]["transactionInfo"].get("stoppedReason") != reason:
            fail(f"{what}: ended at the central system as {end['params']['transactionInfo']}")
        if begin is not None and stop is not None:
            fig.billed_wh += stop - begin
    _check_order201(fig, rows, first_start, end_of)


def _check_order201(fig: Any, rows: list[sqlite3.Row], first_start: dict[str, int],
                    end_of: dict[str, dict[str, Any]]) -> None:
    fail = fig.failures.append
    started = [r for r in rows if r["key"] in first_start]
    ids = [r["id"] for r in sorted(started, key=lambda r: first_start[r["key"]])]
    if ids != sorted(ids):
        fail(f"transactions arrived out of the journal's order: sessions {ids}")
    for a, b in itertools.pairwise(sorted(started, key=lambda r: r["id"])):
        if end_of[a["key"]]["seq"] > first_start[b["key"]]:
            fail(f"session {b['id']}'s transaction started before session {a['id']}'s ended")
        if (b["meter_start_wh"] or 0) < (a["meter_stop_wh"] or 0):
            fail(f"session {b['id']} starts at {b['meter_start_wh']} Wh, below {a['id']}'s stop")
