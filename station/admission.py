"""Who may hold a connection to a listener anyone can reach: the connection policy, without I/O.

Two listeners use it: the MCSP reference server (the policy below was made
for it) and the status page (httpd.py: a connection is proven once its
request head has arrived, so the connections a newcomer closes are those
that never finished a request, from its own address first).

The server runs on a building's network, where any device can reach it. A
connection table that anyone can fill locks every station out of billing
(issue 15: 256 silent connections from one host refused every station for
15 minutes). What tells a station apart from a scan or a broken device is
that a station speaks first and at once: it sends a HEARTBEAT (or its START)
the moment it connects. So:

1. A connection is *unproven* until it completes a *valid* request: well
   formed, a known action and, when the server lists its stations, from a
   listed, authenticated station (answered with anything but 400, 405 or
   407). An unproven connection has `first_request_s` (10 s) from its accept,
   TLS handshake included; then it is closed. (The server also closes it
   after three refused requests: server.REFUSALS_BEFORE_VALID.)
2. A *proven* connection stays open between requests for `idle_s` (15 min)
   after its last valid request; the station's heartbeat (every 60 s) keeps
   it. Trickled bytes or broken requests do not extend it.
3. One peer address holds at most `max_unproven_per_peer` (8) unproven
   connections: its next one closes its own oldest unproven connection. It
   holds at most `max_per_peer` (64) in all (stations behind one NAT router
   share an address); beyond that a new one is refused.
4. When all `max_connections` (256) are taken, a new connection takes the
   place of the oldest unproven connection, else of the proven connection
   quiet the longest if it has been quiet for `stale_s` (3 min, three missed
   heartbeats: a station that lost power leaves such a half-open
   connection). Only when neither exists is the new connection refused.

A host that never sends a valid request thus holds at most 8 slots, each for
at most 10 s, and never pushes out a station that has spoken. Rule 4 keeps
the table open to stations even when many addresses flood it.

`Admission` keeps the table and decides; the server does the closing (and
counts the closes in a tally.Tally, one log line a minute).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_CONNECTIONS = 256
MAX_PER_PEER = 64
MAX_UNPROVEN_PER_PEER = 8
FIRST_REQUEST_S = 10.0
IDLE_S = 900.0
STALE_S = 180.0

# Why a connection was closed or refused (the server's tally keys)
LATE = "closed: no valid request in time"
IDLE = "closed: idle too long"
EVICTED_PEER = "closed: too many unproven from one address"
EVICTED_FULL = "closed to make room: unproven"
EVICTED_STALE = "closed to make room: quiet for minutes"
REFUSED_PEER = "refused: too many from one address"
REFUSED_FULL = "refused: full of active stations"
MALFORMED = "closed: malformed request"
NOT_READ = "closed: its replies were not read"
REFUSED_REPEATEDLY = "closed: refused requests before any valid one"


@dataclass(frozen=True)
class ConnectionLimits:
    """The numbers of the policy above (the server's --max-connections sets the first)."""

    max_connections: int = MAX_CONNECTIONS
    max_per_peer: int = MAX_PER_PEER
    max_unproven_per_peer: int = MAX_UNPROVEN_PER_PEER
    first_request_s: float = FIRST_REQUEST_S
    idle_s: float = IDLE_S
    stale_s: float = STALE_S

    def __post_init__(self) -> None:
        if min(self.max_connections, self.max_per_peer, self.max_unproven_per_peer) < 1:
            raise ValueError("connection limits must be at least 1")
        if min(self.first_request_s, self.idle_s, self.stale_s) <= 0:
            raise ValueError("connection time limits must be positive")


@dataclass(eq=False)
class Slot:
    """One accepted connection."""

    peer: str
    opened: float  # monotonic
    last_valid: float | None = None  # monotonic time of its last valid request

    @property
    def proven(self) -> bool:
        return self.last_valid is not None


@dataclass
class Verdict:
    """What to do with a new connection: serve it in `slot` (None: refuse it, for `refused`),
    after closing the `evicted` connections, each for its reason."""

    slot: Slot | None
    evicted: list[tuple[Slot, str]] = field(default_factory=list)
    refused: str | None = None


class Admission:
    """The connection table. Times are the caller's monotonic clock (the event loop's).

    A new connection costs O(1) work plus its address's own connections: an accept flood must
    not make every accept scan the whole table."""

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        self._slots: dict[Slot, None] = {}
        self._unproven: dict[Slot, None] = {}  # in accept order: the first is the oldest
        self._by_peer: dict[str, dict[Slot, None]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def admit(self, peer: str, now: float) -> Verdict:
        lim = self.limits
        evicted: list[tuple[Slot, str]] = []
        mine = self._by_peer.get(peer, {})
        unproven = [s for s in mine if not s.proven]
        if len(mine) >= lim.max_per_peer:
            if not unproven:
                return Verdict(None, refused=REFUSED_PEER)
            evicted.append((unproven[0], EVICTED_PEER))
        elif len(unproven) >= lim.max_unproven_per_peer:
            evicted.append((unproven[0], EVICTED_PEER))
        for slot, _ in evicted:
            self.release(slot)
        if len(self._slots) >= lim.max_connections:
            victim = self._make_room(now)
            if victim is None:
                return Verdict(None, evicted, refused=REFUSED_FULL)
            self.release(victim[0])
            evicted.append(victim)
        slot = Slot(peer, now)
        self._slots[slot] = self._unproven[slot] = None
        self._by_peer.setdefault(peer, {})[slot] = None
        return Verdict(slot, evicted)

    def _make_room(self, now: float) -> tuple[Slot, str] | None:
        oldest = next(iter(self._unproven), None)
        if oldest is not None:
            return oldest, EVICTED_FULL
        quiet = min(self._slots, key=lambda s: s.last_valid or 0.0)
        if quiet.last_valid is not None and now - quiet.last_valid >= self.limits.stale_s:
            return quiet, EVICTED_STALE
        return None

    def release(self, slot: Slot) -> None:
        """Forget a connection (twice is harmless: an evicted connection's task releases it again)."""
        if slot not in self._slots:
            return
        del self._slots[slot]
        self._unproven.pop(slot, None)
        mine = self._by_peer[slot.peer]
        del mine[slot]
        if not mine:
            del self._by_peer[slot.peer]

    def valid_request(self, slot: Slot, now: float) -> None:
        slot.last_valid = now
        self._unproven.pop(slot, None)

    def expires(self, slot: Slot) -> tuple[float, str]:
        """(monotonic time, reason): when the connection is closed unless a valid request comes."""
        if slot.last_valid is None:
            return slot.opened + self.limits.first_request_s, LATE
        return slot.last_valid + self.limits.idle_s, IDLE
