"""The OCPP side of the kill test: a strict central system we did not write, and the judge at it.

The central system is scripts/harness/peers/ledger_cs.js: the npm library ocpp-rpc in
strict mode (every message, both ways, checked against the official OCPP 1.6
JSON schemas, or with `version="2.0.1"` the 2.0.1 ones) with a small ledger
around it. The 2.0.1 judge is torture_ocpp201.py beside this file. It runs as a Node process for
the whole torture and appends each call, each schema failure and each
connection's end to a JSON-lines file before it answers; `judge()` reads that
file and the station's journal after the last round.

What the judge demands (docs/durability.md, "The OCPP kill test"):

* every charging session of the journal (active or stopped) is closed at the
  central system under the transactionId the journal holds: its
  StartTransaction carries the journal's idTag, connector and meterStart, its
  first StopTransaction the journal's meterStop and stop reason; a repeated
  StopTransaction (a kill between the answer and the journal's confirmation)
  must repeat the same values, and is counted;
* a StartTransaction whose transactionId no journal session holds is a
  duplicate: it must repeat, value for value (connectorId, idTag, meterStart,
  timestamp), the StartTransaction of a journal session, and bill nothing:
  either never stopped, or stopped by the station with meterStop =
  meterStart (an extra transaction it learnt of from a late answer). Each one
  is counted and put down to its cause: the station was killed on that
  connection (a kill in flight) or the central system dropped it (an outage);
* every transaction left open at the central system is one the station
  names (journal mark `maybe_open_at_backend`, also in `station sessions`
  and on the status page): the station may name more (a send journaled just
  before a kill that never left), never fewer;
* no StopTransaction and no MeterValues for a transactionId the central
  system never handed out;
* the energy billed at the central system, the sum of meterStop - meterStart
  over the transactions it saw stopped, equals the meter's advance;
* per connector, transactions arrive in the journal's order, each stopped
  before the next one starts, meter readings never going back;
* zero strict-schema failures and zero frames that are not OCPP-J;
* the station's own count: sessions whose StartTransaction was sent more than
  once (journal mark `ocpp_start_sends`) bound the duplicates from above.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from station.aio import cancel_and_wait

PEERS = Path(__file__).resolve().parent / "peers"
SCRIPT = PEERS / "ledger_cs.js"
STOP_REASONS = {"EmergencyStop", "EVDisconnected", "HardReset", "Local", "Other", "PowerLoss", "Reboot",
                "Remote", "SoftReset", "UnlockCommand", "DeAuthorized"}
# The charge point's configuration keys for the torture (as a central system would set them):
# meter values every second, so MeterValues share the outbox with the transactions.
KEYS = {"MeterValueSampleInterval": "1"}
# The same for OCPP 2.0.1 (device model values): TransactionEvent Updated every second.
VARIABLES = {"SampledDataCtrlr/TxUpdatedInterval": "1"}
_JOURNALED = re.compile(r"(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(?P<ms>\d{3}) INFO \S+: "
                        r"StartTransaction of session \d+: transactionId (?P<tx>\d+)$")


def missing() -> str | None:
    """Why the central system cannot run here (None: it can)."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/harness/peers/install.sh)"
    if not (PEERS / "node_modules" / "ocpp-rpc").is_dir():
        return "ocpp-rpc is not installed (bash scripts/harness/peers/install.sh)"
    return None


class LedgerCS:
    """The strict central system in its own Node process (see peers/ledger_cs.js)."""

    name = "ocpp"

    def __init__(self, work: Path, tags: Iterable[str], version: str = "1.6", start_latency_ms: float = 0.0) -> None:
        self.version = version
        self.ledger = work / "cs-ledger.jsonl"
        self.tags = list(tags)
        self.start_latency_ms = start_latency_ms  # the central system's own latency on StartTransaction
        self.url = ""
        self.aimed: set[int | str] = set()  # transactionIds whose start an aimed kill was aimed at
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._starts: asyncio.Queue[int | str] = asyncio.Queue()  # transactionIds as starts arrive
        self._acks: asyncio.Queue[dict] = asyncio.Queue()
        self._down_until = 0.0

    async def start(self) -> None:
        why = missing()
        if why:
            raise RuntimeError(why)
        protocols = ["ocpp2.0.1"] if self.version == "2.0.1" else ["ocpp1.6"]
        options = json.dumps({"tags": self.tags, "heartbeat": 60, "protocols": protocols,
                              "startLatencyMs": self.start_latency_ms})
        self._proc = await asyncio.create_subprocess_exec(
            "node", str(SCRIPT), "0", str(self.ledger), options,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self._proc.stdout is not None
        async with asyncio.timeout(30):
            line = await self._proc.stdout.readline()
        port = json.loads(line)["port"]
        self.url = f"ws://127.0.0.1:{port}/ocpp"
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            event = json.loads(line)
            if event.get("event") == "start":
                self._starts.put_nowait(event["txId"])
            else:
                self._acks.put_nowait(event)

    async def aim(self, delay: float) -> int | str:
        """Return `delay` s after the next StartTransaction reaches the central system (its
        transactionId): the moment to kill the station with that StartTransaction in flight."""
        while not self._starts.empty():
            self._starts.get_nowait()
        tx = await self._starts.get()
        self.aimed.add(tx)
        await asyncio.sleep(delay)
        return tx

    def config(self) -> str:
        return f'[backend]\nkind = "ocpp"\n[backend.ocpp]\nurl = "{self.url}"\nversions = ["{self.version}"]\n'

    def prepare(self, state: Path) -> None:
        """The configuration keys (2.0.1: device model values), stored where the station keeps them."""
        from station.store import Store

        store = Store.open(state)
        try:
            if self.version == "2.0.1":
                store.put_json("ocpp201.variables", dict(VARIABLES))
            else:
                store.put_json("ocpp.config", dict(KEYS))
        finally:
            store.close()

    async def command(self, cmd: str, **values: Any) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps({"cmd": cmd, **values}) + "\n").encode())
        await self._proc.stdin.drain()
        answer: dict[str, Any] = await self._acks.get()
        if answer.get("ok") != cmd:
            raise RuntimeError(f"central system: {answer}")
        return answer

    async def open_transactions(self) -> list[int]:
        """Transactions started at the central system and never stopped."""
        return list((await self.command("open"))["open"])

    async def outage(self, after: float, length: float) -> None:
        """The central system drops the link and refuses connections for `length` s."""
        await asyncio.sleep(after)
        await self.command("outage", seconds=length)
        loop = asyncio.get_running_loop()
        self._down_until = max(self._down_until, loop.time() + length)
        await asyncio.sleep(length)

    async def resume(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._down_until - loop.time()))

    async def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()  # the script exits when its stdin closes
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await cancel_and_wait(self._reader)

    def check(self, fig: Any, journal: Path) -> None:
        if self.version == "2.0.1":
            from torture_ocpp201 import judge201

            judge201(fig, journal, read_ledger(self.ledger))
            return
        judge(fig, journal, read_ledger(self.ledger), self.aimed)
        windows = sorted(start_windows(self.ledger.parent))
        if windows:
            fig.window_ms = [windows[len(windows) // 2], windows[int(len(windows) * 0.95)], windows[-1]]


def start_windows(work: Path) -> list[float]:
    """For each StartTransaction answered: milliseconds from the central system receiving it to the
    station's log line saying the transactionId is journaled. A kill inside that window leaves a
    transaction at the central system the station does not know of. Both clocks are this machine's
    wall clock; the log's times are local, with millisecond resolution."""
    received = {e["txId"]: datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
                for e in read_ledger(work / "cs-ledger.jsonl") if e["ev"] == "call" and e["method"] == "StartTransaction"}
    windows = []
    for line in (work / "station.log").read_text(errors="replace").splitlines():
        found = _JOURNALED.match(line)
        if found and int(found["tx"]) in received:
            logged = time.mktime(time.strptime(found["at"], "%Y-%m-%d %H:%M:%S")) + int(found["ms"]) / 1000
            windows.append(round((logged - received[int(found["tx"])]) * 1000, 1))
    return windows


def read_ledger(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _journal(path: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM sessions WHERE state IN ('active', 'stopped') ORDER BY id").fetchall()
    finally:
        db.close()


def _sends(row: sqlite3.Row) -> int:
    """How many times the station sent this session's StartTransaction (its journal mark)."""
    return int(json.loads(row["extra"] or "{}").get("ocpp_start_sends", 1))


def _named(row: sqlite3.Row) -> int:
    """How many transactions the station says the central system may hold open for this session."""
    note = json.loads(row["extra"] or "{}").get("maybe_open_at_backend") or {}
    return int(note.get("count") or 0) if isinstance(note, dict) else 0


def _start_values(params: dict[str, Any]) -> tuple:
    return params["connectorId"], params["idTag"], params["meterStart"], params["timestamp"]


def judge(fig: Any, journal: Path, events: list[dict[str, Any]],
          aimed: set[int | str] | frozenset[int | str] = frozenset()) -> None:
    """The invariants at the central system. Appends to fig.failures, fills the OCPP figures.
    `aimed`: the transactionIds aimed kills were aimed at."""
    fail = fig.failures.append
    calls = [e for e in events if e["ev"] == "call"]
    closed_by = {e["conn"]: e["by"] for e in events if e["ev"] == "close"}
    for e in events:
        if e["ev"] in ("schema", "bad"):
            fig.schema_failures += 1
            fail(f"strict central system: {e['ev']} {json.dumps(e)[:300]}")
    starts = {e["txId"]: e for e in calls if e["method"] == "StartTransaction"}
    stops: dict[int, list[dict[str, Any]]] = {}
    for e in calls:
        if e["method"] == "StopTransaction":
            if not e["known"]:
                fail(f"StopTransaction for unknown transaction {e['params']['transactionId']}")
            stops.setdefault(e["params"]["transactionId"], []).append(e)
        elif e["method"] == "MeterValues" and e.get("known") is False:
            fail(f"MeterValues for unknown transaction {e['params']['transactionId']}")
    fig.cs_transactions = len(starts)

    rows = _journal(journal)
    claimed: dict[int, sqlite3.Row] = {}
    for r in rows:
        what = f"journal session {r['id']} ({r['stop_reason']})"
        fig.resent_starts += max(0, _sends(r) - 1)
        if r["state"] != "stopped" or not r["delivered"]:
            fail(f"{what} is {'open' if r['state'] != 'stopped' else 'not delivered'}")
            continue
        try:
            tx = int(r["backend_session_id"])
        except (TypeError, ValueError):
            fail(f"{what} has no transactionId ({r['backend_session_id']!r}; rejected: {r['rejected']})")
            continue
        start = starts.get(tx)
        if start is None:
            fail(f"{what}: transaction {tx} never started at the central system")
            continue
        if tx in claimed:
            fail(f"{what}: transaction {tx} is also session {claimed[tx]['id']}'s")
            continue
        claimed[tx] = r
        p = start["params"]
        if (p["connectorId"], p["idTag"], p["meterStart"]) != (r["connector_id"], r["id_tag"][:20], r["meter_start_wh"]):
            fail(f"{what}: started at the central system as {p}")
        mine = stops.get(tx, [])
        if not mine:
            fail(f"{what}: transaction {tx} never stopped at the central system")
            continue
        first = mine[0]["params"]
        reason = r["stop_reason"] if r["stop_reason"] in STOP_REASONS else "Other"
        if first["meterStop"] != r["meter_stop_wh"] or first["reason"] != reason:
            fail(f"{what}: stopped at the central system as {first}")
        for again in mine[1:]:
            fig.repeated_stops += 1
            if again["params"]["meterStop"] != first["meterStop"]:
                fail(f"{what}: StopTransaction repeated with other values: {again['params']}")

    # Journals written before the mark existed cannot say which StartTransactions went twice.
    marked = any("ocpp_start_sends" in json.loads(r["extra"] or "{}") for r in rows)
    by_values = {_start_values(starts[tx]["params"]): tx for tx in claimed}
    orphans: dict[int, int] = {}  # claimed transactionId -> its duplicates
    for tx, start in starts.items():
        if tx in claimed:
            continue
        twin = by_values.get(_start_values(start["params"]))
        if twin is None:
            fail(f"transaction {tx} at the central system belongs to no journal session: {start['params']}")
            continue
        fig.duplicate_starts += 1
        if closed_by.get(start["conn"]) == "cs":
            fig.duplicates_after_drop += 1
        else:
            fig.duplicates_after_kill += 1
            fig.aimed_duplicates += tx in aimed
        if tx in stops:
            if any(s["params"]["meterStop"] != start["params"]["meterStart"] for s in stops[tx]):
                fail(f"duplicate transaction {tx} (of {twin}) was stopped with energy: billed twice")
            fig.duplicates_stopped += 1
            continue
        orphans[twin] = orphans.get(twin, 0) + 1
    for twin, n in orphans.items():
        if marked and n > _sends(claimed[twin]) - 1:
            fail(f"{n} duplicate transaction(s) of {twin}: the station's journal does not know it sent "
                 f"session {claimed[twin]['id']}'s StartTransaction {n + 1} times")

    fig.open_at_cs = sum(tx not in stops for tx in starts)
    fig.named_open = sum(_named(r) for r in rows)
    # Journals written before that mark existed cannot name them.
    naming = any("maybe_open_at_backend" in json.loads(r["extra"] or "{}") for r in rows)
    if naming and fig.open_at_cs > fig.named_open:
        fail(f"{fig.open_at_cs} transaction(s) left open at the central system, the station names {fig.named_open}")
    fig.billed_wh = sum(s[0]["params"]["meterStop"] - starts[tx]["params"]["meterStart"]
                        for tx, s in stops.items() if tx in starts)
    _check_order(fig, claimed, starts, stops)


def _check_order(fig: Any, claimed: dict[int, sqlite3.Row], starts: dict, stops: dict) -> None:
    fail = fig.failures.append
    connectors: dict[int, list[int]] = {}
    for tx in sorted(claimed, key=lambda t: starts[t]["seq"]):
        connectors.setdefault(starts[tx]["params"]["connectorId"], []).append(tx)
    for connector, txs in connectors.items():
        ids = [claimed[tx]["id"] for tx in txs]
        if ids != sorted(ids):
            fail(f"connector {connector}: transactions arrived out of the journal's order: sessions {ids}")
        for a, b in itertools.pairwise(txs):
            if a not in stops:
                continue
            stop_a, start_b = stops[a][0], starts[b]
            if stop_a["seq"] > start_b["seq"]:
                fail(f"connector {connector}: transaction {b} started before {a} was stopped")
            if start_b["params"]["meterStart"] < stop_a["params"]["meterStop"]:
                fail(f"connector {connector}: transaction {b} starts at {start_b['params']['meterStart']} Wh, "
                     f"below {a}'s stop at {stop_a['params']['meterStop']} Wh")
