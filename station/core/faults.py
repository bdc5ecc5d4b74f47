"""What is wrong with the station: the fault registry and the contactor watch.

The registry holds at most one fault per source (meter, reader, contactor,
storage; with a charge controller car, pilot and controller). A fault of any source but storage keeps the connector Faulted; a
storage fault only refuses new sessions (the station can still show and
report why, and a running session can still be closed in memory and retried).

The contactor watch is the safety check of issue "the station knows when its
contactor fails": the commanded state and the auxiliary contact are compared
at start-up and on every input poll (50 ms), not only once after a switch.
A disagreement that lasts longer than the settle time is a fault:

    commanded  contact   for > settle_s    meaning
    open       closed    welded            current may flow with no session: Faulted
    closed     open      dropped out       the car gets no power: end the session, Faulted
    (any)      agrees    ok                recovery: the contact has agreed again for recover_s

The settle time covers the contactor's own mechanics (tens of ms) and the
debounce of its auxiliary contact; the timer restarts at every command.

A disagreement ends only when the contact has agreed for a whole settle time
without a break, not at the first agreeing sample: a welded contact that
chatters (closed 0.3 s, open 0.1 s, again and again) would otherwise restart
the timer at every open reading and never be reported. The fault is declared
on a disagreeing sample taken at least `settle_s` after the disagreement
began. A contact that agrees for `settle_s` at a stretch between its wrong
readings is forgiven each time: that is the one pattern this rule does not
report, and a contact that is right most of the time is not welded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from station.core.model import Fault

# Which fault the LCD and a single-error protocol show first when there are several. The charge
# controller's own reason (residual current, diode...) before the pilot state E it comes with.
PRIORITY = ("contactor", "pilot", "controller", "car", "meter", "reader", "storage")


class FaultRegistry:
    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}

    def set(self, source: str, fault: Fault) -> bool:
        """Record a fault; True when it is new or different."""
        if self._faults.get(source) == fault:
            return False
        self._faults[source] = fault
        return True

    def clear(self, source: str) -> bool:
        """True when there was a fault of this source."""
        return self._faults.pop(source, None) is not None

    def __contains__(self, source: object) -> bool:
        return source in self._faults

    def __bool__(self) -> bool:
        return bool(self._faults)

    def get(self, source: str) -> Fault | None:
        return self._faults.get(source)

    def first(self) -> Fault | None:
        """The fault to show and report first."""
        for source in sorted(self._faults, key=lambda s: PRIORITY.index(s) if s in PRIORITY else len(PRIORITY)):
            return self._faults[source]
        return None

    def blocking(self) -> bool:
        """A fault that keeps the connector Faulted (storage only refuses new sessions)."""
        return any(source != "storage" for source in self._faults)

    def items(self) -> list[tuple[str, Fault]]:
        return list(self._faults.items())

    def values(self) -> list[Fault]:
        return list(self._faults.values())


class ContactorVerdict(str, Enum):
    OK = "ok"  # command and contact agree (or agree again)
    WELDED = "welded"
    DROPPED = "dropped"


WELDED_FAULT = Fault("OtherError", "contactor welded: closed while commanded open", "ContactorWelded")
NOT_CLOSED_FAULT = Fault("OtherError", "contactor did not close", "ContactorOpen")
DROPPED_FAULT = Fault("OtherError", "contactor dropped out: open while commanded closed", "ContactorOpen")


@dataclass
class ContactorWatch:
    """Compares command and auxiliary contact over time. Pure: the caller brings the clock.

    A fault clears only after the contact has agreed for `recover_s` without a break, so a
    welded contact that bounces does not flap the connector between Faulted and Available.
    """

    settle_s: float
    recover_s: float = 10.0
    verdict: ContactorVerdict = ContactorVerdict.OK
    _commanded: bool | None = None
    _mismatch_since: float | None = None
    _agree_since: float | None = None
    followed: bool = False  # the contact has agreed with the current command at least once

    def observe(self, commanded: bool, contact: bool | None, now: float) -> ContactorVerdict | None:
        """Feed one sample. Returns the new verdict when it changes, else None.

        Without an auxiliary contact (`contact` None) nothing can be known: always OK.
        """
        if commanded != self._commanded:  # a new command: its settle time starts now
            self._commanded = commanded
            self._mismatch_since = None
            self._agree_since = None
            self.followed = False
        if contact is None:
            return self._settle(ContactorVerdict.OK)
        if contact == commanded:
            self.followed = True
            if self._agree_since is None:
                self._agree_since = now
            agreed = now - self._agree_since
            if self._mismatch_since is not None and agreed >= self.settle_s:
                self._mismatch_since = None  # the disagreement is over: it agreed a whole settle time
            if self.verdict is ContactorVerdict.OK or agreed < self.recover_s:
                return None
            return self._settle(ContactorVerdict.OK)
        self._agree_since = None
        if self._mismatch_since is None:
            # A disagreement must last: a contactor takes tens of ms to move, and its
            # auxiliary contact bounces. Brief agreements in between do not restart it.
            self._mismatch_since = now
        if now - self._mismatch_since < self.settle_s:
            return None
        return self._settle(ContactorVerdict.WELDED if contact else ContactorVerdict.DROPPED)

    @property
    def unsettled(self) -> bool:
        """A disagreement is being timed, or a fault is waiting to recover: look often."""
        return self.verdict is not ContactorVerdict.OK or self._mismatch_since is not None

    def _settle(self, verdict: ContactorVerdict) -> ContactorVerdict | None:
        if verdict is self.verdict:
            return None
        self.verdict = verdict
        return verdict
