"""Security events: a rolling log file and a durable, bounded delivery queue.

Every event goes to the security log (a text file, one line each, rolling at
LOG_MAX_BYTES with one older file kept) and to a queue in the station's store,
so that a backend can report each one to its central system, in order, over
outages and restarts (OCPP 1.6 security whitepaper A04.FR.02 "queued with a
guaranteed delivery"; OCPP 2.0.1 A04.FR.02 alike). An event leaves the queue
when the backend says it was delivered. The queue is bounded: when full, the
oldest event that is not critical goes first (the backend says which event
kinds are critical); an event identical to the last queued one (a failure
retried with backoff) is queued once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOG_MAX_BYTES = 256 * 1024
QUEUE_MAX = 500


class SecurityLog:
    """Every security event, in a rolling file (`<name>` and one older `<name>.1`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, stamp: str, event: str, tech_info: str | None) -> None:
        line = f"{stamp} {event}" + (f" {tech_info}" if tech_info else "") + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size + len(line) > LOG_MAX_BYTES:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:
            log.error("security log not written: %s", exc)

    def text(self) -> str:
        parts = []
        for p in (self.path.with_name(self.path.name + ".1"), self.path):
            try:
                parts.append(p.read_text(encoding="utf-8"))
            except OSError:
                pass
        return "".join(parts)

    def clear(self) -> None:
        for p in (self.path, self.path.with_name(self.path.name + ".1")):
            try:
                p.unlink()
            except OSError:
                pass


class SecurityEvents:
    """Record events (log + queue); the backend delivers the queue and confirms each event.

    Queue items are {"type", "timestamp", "techInfo"?} in the store under `store_key`.
    """

    def __init__(self, store: Any, log_file: SecurityLog, stamp: Callable[[], str], *, store_key: str,
                 critical: Collection[str], queue_max: int = QUEUE_MAX) -> None:
        self.store = store
        self.log = log_file
        self.stamp = stamp
        self.store_key = store_key
        self.critical = critical
        self.queue_max = queue_max
        self.on_event: Callable[[], None] | None = None  # wakes the deliverer

    def record(self, kind: str, tech_info: str | None = None) -> None:
        stamp = self.stamp()
        tech = tech_info[:255] if tech_info else None
        self.log.write(stamp, kind, tech)
        queue = self.pending()
        if queue and queue[-1]["type"] == kind and queue[-1].get("techInfo") == tech:
            return  # the same failure again (a retry): reported once
        item: dict[str, Any] = {"type": kind, "timestamp": stamp}
        if tech:
            item["techInfo"] = tech
        queue.append(item)
        while len(queue) > self.queue_max:
            drop = next((i for i, e in enumerate(queue) if e["type"] not in self.critical), 0)
            queue.pop(drop)
        self.store.put_json(self.store_key, queue)
        if self.on_event is not None:
            self.on_event()

    def pending(self) -> list[dict[str, Any]]:
        return list(self.store.get_json(self.store_key, []) or [])

    def delivered(self, item: dict[str, Any]) -> None:
        queue = self.pending()
        if queue and queue[0] == item:
            queue.pop(0)
            self.store.put_json(self.store_key, queue)
