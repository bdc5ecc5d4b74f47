"""The station's side of sharing the building's supply over MCSP (docs/mcsp.md 4.5), without I/O.

A station that has a charge controller tells the server its currents (what
its pilot offers, what the car draws, in amps per phase) on its requests, as
`Current-Offered` and `Current-Drawn`; a server with a site limit answers
with the station's cap, `Current-Limit` (0: pause). `SiteLimit` keeps both
sides: `report()` the currents (True when the change is worth a heartbeat of
its own), `headers()` what goes into a request, `take(reply)` the cap of a
reply (a reply without one says nothing about it; an unreadable one is
ignored: a station ignores what it cannot read).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from station.backends.mcsp.messages import CURRENT_LIMIT, Reply, format_amps, parse_amps

log = logging.getLogger(__name__)

SHARED_HEARTBEAT_S = 10.0  # heartbeat interval while a server shares a site limit and a session runs
REPORT_STEP_A = 0.5  # a change of the drawn current smaller than this is not worth a heartbeat of its own


class SiteLimit:
    def __init__(self) -> None:
        self.cap_a: float | None = None  # the server's last cap; None: it does not share
        self.on_cap: Callable[[float], None] | None = None
        self.currents: tuple[float, float] | None = None  # (offered, drawn), as last reported

    def report(self, offered_a: float, drawn_a: float) -> bool:
        """Note the currents; True when they changed enough to tell the server now."""
        before, self.currents = self.currents, (max(0.0, offered_a), max(0.0, drawn_a))
        if before is None:
            return True
        return format_amps(before[0]) != format_amps(self.currents[0]) or \
            abs(before[1] - self.currents[1]) >= REPORT_STEP_A

    def headers(self) -> list[tuple[str, str]]:
        if self.currents is None:
            return []
        return [("Current-Offered", format_amps(self.currents[0])), ("Current-Drawn", format_amps(self.currents[1]))]

    def take(self, reply: Reply) -> float | None:
        """The cap in an OK reply, kept (and handed to `on_cap`); None when the reply has none."""
        raw = reply.get(CURRENT_LIMIT) if reply.ok else None
        if raw is None:
            return None
        cap = parse_amps(raw)
        if cap is None:
            log.warning("ignoring a Current-Limit this station cannot read: %r", raw[:20])
            return None
        if cap != self.cap_a:
            log.info("MCSP server: this station may offer %s A per phase", format_amps(cap))
        self.cap_a = cap
        if self.on_cap is not None:
            self.on_cap(cap)
        return cap
