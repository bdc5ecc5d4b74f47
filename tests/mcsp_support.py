"""Test helpers for the MCSP and evcs-serial tests: a serial link made of pseudo-terminals,
a StationControl double, sessions as the journal holds them, and the reference server over TLS."""

from __future__ import annotations

import os
import select
import ssl
import threading
import tty
from dataclasses import dataclass, field
from pathlib import Path

from station.clock import Clock
from station.core.model import MessageKind, MeterReading, OutboxItem, Session
from station.servers.mcsp import McspServer
from station.supervisor import Supervisor


class PtyBridge:
    """Two pseudo-terminal pairs whose masters are joined by a thread: whatever is written to
    `a` (a device path for pyserial) comes out of `b` and back. Like a null-modem cable between
    two serial ports; ptys ignore the baud rate.

    A lossy line on demand: `lose(way, line)` drops the next whole line equal to `line` going
    that way ("a->b" or "b->a"), `cut()` drops every byte both ways until `cut(False)`. What
    was dropped is in `lost`; `traffic` holds what passed."""

    def __init__(self) -> None:
        self._m1, self._s1 = os.openpty()
        self._m2, self._s2 = os.openpty()
        for fd in (self._s1, self._s2):
            tty.setraw(fd)
        self.a, self.b = os.ttyname(self._s1), os.ttyname(self._s2)
        self.traffic: list[tuple[str, bytes]] = []  # ("a->b" | "b->a", bytes) as it passed
        self.lost: list[tuple[str, bytes]] = []  # what the lossy line dropped
        self._rules: dict[str, list[list]] = {"a->b": [], "b->a": []}  # [line, times left]
        self._held = {"a->b": bytearray(), "b->a": bytearray()}
        self._cut = False
        self._rule_lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._pump, daemon=True, name="pty-bridge")
        self._thread.start()

    def lose(self, way: str, line: bytes | str, count: int = 1) -> None:
        """Drop the next `count` lines equal to `line` (without its line ending) going `way`."""
        text = line.encode("ascii") if isinstance(line, str) else line
        with self._rule_lock:
            self._rules[way].append([text, count])

    def cut(self, cut: bool = True) -> None:
        """A cut cable: every byte is dropped, both ways, until cut(False)."""
        with self._rule_lock:
            self._cut = cut

    def pending_losses(self) -> int:
        with self._rule_lock:
            return sum(r[1] for rules in self._rules.values() for r in rules)

    def _relay(self, way: str, data: bytes) -> bytes:
        """What of `data` passes (called by the pump thread)."""
        with self._rule_lock:
            if self._cut:
                self.lost.append((way, data))
                return b""
            rules, held = self._rules[way], self._held[way]
            if not rules and not held:
                return data
            held += data
            out = bytearray()
            while (end := held.find(b"\n")) >= 0:
                line = bytes(held[: end + 1])
                del held[: end + 1]
                rule = next((r for r in rules if r[0] == line.rstrip(b"\r\n")), None)
                if rule is None:
                    out += line
                    continue
                self.lost.append((way, line))
                rule[1] -= 1
                if rule[1] <= 0:
                    rules.remove(rule)
            if not rules:  # no rule left: a partial line passes as it is
                out += held
                held.clear()
            return bytes(out)

    def _pump(self) -> None:
        peers = {self._m1: (self._m2, "a->b"), self._m2: (self._m1, "b->a")}
        while not self._stop:
            ready, _, _ = select.select(list(peers), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                other, way = peers[fd]
                data = self._relay(way, data)
                if data:
                    self.traffic.append((way, data))
                    os.write(other, data)

    def sent(self, way: str) -> bytes:
        return b"".join(d for w, d in self.traffic if w == way)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for fd in (self._m1, self._s1, self._m2, self._s2):
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass
class FakeStation:
    """A StationControl double that records what the backend asked of the station."""

    name: str = "Tankstelle1"
    notices: list[str] = field(default_factory=list)
    clock_sets: list[str] = field(default_factory=list)
    links: list[bool] = field(default_factory=list)
    clock: Clock = field(default_factory=lambda: Clock(synchronized=lambda: True))
    meter_model: str = "SDM630"
    supervisor: Supervisor = field(default_factory=Supervisor)
    beats: dict[str, int] = field(default_factory=dict)  # name -> how many times it beat
    session: Session | None = None  # the running session, as current_session() reports it
    reading: MeterReading | None = None  # the meter's last reading, as last_reading() reports it
    stops: list[str] = field(default_factory=list)  # stop_session() reasons
    limits_a: list[float | None] = field(default_factory=list)  # set_current_limit() calls (the site cap)

    def spawn(self, coro, name: str, *, critical: bool = False, deadline_s: float | None = None):
        return self.supervisor.spawn(coro, name, critical=critical, deadline_s=deadline_s)

    def beat(self, name: str) -> None:
        self.beats[name] = self.beats.get(name, 0) + 1
        self.supervisor.beat(name)

    def set_clock(self, utc: str, round_trip_s: float = 0.0) -> float:
        self.clock_sets.append(utc)
        return 0.0

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def backend_link(self, online: bool) -> None:
        self.links.append(online)

    def current_session(self) -> Session | None:
        return self.session

    def last_reading(self) -> MeterReading | None:
        return self.reading

    def set_current_limit(self, amps: float | None) -> None:
        self.limits_a.append(amps)

    async def stop_session(self, reason: str) -> bool:
        self.stops.append(reason)
        return self.session is not None


def session(n: int = 1, tag: str = "16AC936B1692E73A", start: int = 10_000, stop: int | None = None,
            **more) -> Session:
    values = dict(id=n, key=f"{n:032x}", connector_id=1, id_tag=tag, meter_start_wh=start,
                  started_at="2026-11-05T09:00:00.000Z", state="active")
    if stop is not None:
        values.update(meter_stop_wh=stop, stopped_at="2026-11-05T10:00:00.000Z", stop_reason="Local", state="stopped")
    values.update(more)
    return Session(**values)


def item(kind: MessageKind, session_id: int = 1, seq: int = 1) -> OutboxItem:
    return OutboxItem(seq=seq, kind=kind, session_id=session_id, payload={}, created_at="2026-11-05T09:00:00Z")


SECRET = "station-secret-0123456789"  # the station secret the TLS tests' server expects


async def tls_server(pki: Path, cert: str = "server", *, tags: dict[str, str] | None = None,
                     stations: dict[str, str | None] | None = None) -> McspServer:
    """The reference server over TLS 1.2+ with `cert` from the test PKI (pki_support.mcsp_pki),
    started; by default it knows one tag and station Tankstelle1 with SECRET."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    srv = McspServer(tags=tags if tags is not None else {"16AC936B1692E73A": "A3"},
                     stations=stations if stations is not None else {"Tankstelle1": SECRET}, ssl_context=ctx)
    await srv.start()
    return srv
