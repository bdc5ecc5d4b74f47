"""What the station knows about the ENDs it sent to a 2018 server, which acknowledges none.

Theory of operation
-------------------
An END of the 2018 dialect (`Tag ID` + `total FERTIG`) is answered only
when it is refused (ERROR21, ERROR30); success is silence, and so is a cut
line or a server whose protocol thread has ended (docs/mcsp.md §11.3). So
the journal records each END as *sent, not acknowledged*
(station.billing: `end_acknowledged = False`, `end_sent_at`).

The server handles its lines one after another in one thread. A reply to
any later line (OK, ERROR..) shows that this thread was still running
after the END: the END was handled, if its lines arrived. The link is
*seen down* when a START gets no reply at all (the line is cut, or the
server's thread has ended), or the port cannot be opened, written or read.
Then every END sent since the last reply may be lost, and so may every END
sent before the next reply:

    a reply seen      the ENDs sent so far are no longer in doubt; down = False
    link seen down    every END sent since the last reply is flagged "possibly lost"; down = True
    END sent          flagged at once while down, else kept until one of the above

The list of ENDs in doubt and the down state are kept in the journal's
settings, so that a restart in between forgets neither. Flags are never
taken back: a reply after a cut cannot tell a mended line from a restarted
server (which has forgotten its open sessions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from station.billing import END_ACKNOWLEDGED, END_SENT_AT, LATE_START_AT, LATE_START_WH, POSSIBLY_LOST, REFUSED_LATE
from station.errors import StorageError

if TYPE_CHECKING:
    from station.store import Store

log = logging.getLogger(__name__)

STATE_KEY = "evcs-serial.ends"


class EndWatch:
    def __init__(self, store: Store | None, now: Callable[[], str]) -> None:
        self.store, self.now = store, now
        saved: dict[str, Any] = self._load()
        self.in_doubt: list[int] = [int(i) for i in saved.get("in_doubt", [])]
        self.down_since: str | None = saved.get("down_since")
        self.flagged: dict[int, str] = {}  # session id -> reason (also in the journal), for tests and logs

    @property
    def down(self) -> bool:
        return self.down_since is not None

    # ------------------------------------------------------------------ events
    def end_sent(self, session_id: int) -> None:
        """An END went out (no answer expected)."""
        self._extra(session_id, **{END_ACKNOWLEDGED: False, END_SENT_AT: self.now()})
        if self.down:
            self._flag(session_id, f"sent while the server was not answering (since {self.down_since})")
        elif session_id not in self.in_doubt:
            self.in_doubt.append(session_id)
            self._save()

    def reply_seen(self) -> None:
        """The server answered a line: its thread runs, after every END sent so far."""
        if self.in_doubt or self.down:
            self.in_doubt, self.down_since = [], None
            self._save()

    def link_down(self, why: str) -> None:
        """The link was seen down: every END sent since the last reply may be lost."""
        first = not self.down
        if first:
            self.down_since = self.now()
        for session_id in self.in_doubt:
            self._flag(session_id, f"{why} at {self.now()}, after this END and before any reply")
        if first or self.in_doubt:
            self.in_doubt = []
            self._save()

    def late_start(self, session_id: int, meter_wh: int | None) -> None:
        """The server opened this running session late: it bills from its own reading now."""
        self._extra(session_id, **{LATE_START_WH: meter_wh, LATE_START_AT: self.now()})

    def refused_late(self, session_id: int, text: str) -> None:
        """A refusal (ERROR20/21/30) that came after its exchange was over."""
        self._extra(session_id, **{REFUSED_LATE: text})

    # ------------------------------------------------------------------ the journal
    def _flag(self, session_id: int, reason: str) -> None:
        self.flagged[session_id] = reason
        log.warning("evcs-serial: the END of session %d may be lost: %s", session_id, reason)
        self._extra(session_id, **{POSSIBLY_LOST: reason})

    def _extra(self, session_id: int, **values: Any) -> None:
        if self.store is None:
            return
        try:
            self.store.set_extra(session_id, **values)
        except StorageError as exc:
            log.error("evcs-serial: cannot note %s on session %d: %s", ", ".join(values), session_id, exc)

    def _load(self) -> dict[str, Any]:
        if self.store is None:
            return {}
        try:
            saved = self.store.get_json(STATE_KEY, {})
        except StorageError:
            return {}
        return saved if isinstance(saved, dict) else {}

    def _save(self) -> None:
        if self.store is None:
            return
        try:
            self.store.put_json(STATE_KEY, {"in_doubt": self.in_doubt, "down_since": self.down_since})
        except StorageError as exc:
            log.error("evcs-serial: cannot keep the ENDs in doubt: %s", exc)
