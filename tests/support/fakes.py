"""The port fakes and the one fake clock, shared by the tests (import from tests.support.fakes).

The fakes stand in for the hardware ports and a backend where a test is about the core's
own decisions (tests/core/); whole stations on emulated chips are in tests/stations.py.
Each fake does what the port's contract says (station/core/ports.py) and records what it
was told, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable

from station.clock import Clock
from station.core.model import AuthResult, AuthStatus, DeliveryResult, MeterReading, OutboxItem, Session
from station.core.ports import Backend, LedPattern
from station.errors import BackendOffline, MeterError


class FakeClock(Clock):
    """The station's clock with a monotonic time the test moves (`t`). Also callable, for the
    parts that take a bare monotonic function (the meter emulator, the presenter, the supervisor)."""

    def __init__(self, t: float = 1000.0) -> None:
        super().__init__(synchronized=lambda: True)  # a Pi whose NTP has synchronized the clock
        self.t = t

    def monotonic(self) -> float:
        return self.t

    def __call__(self) -> float:
        return self.t


class FakeMeter:
    model, max_power_w = "SDM630", 22_000.0
    measurands = frozenset({"energy", "power"})
    map_warning = None

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.wh, self.power_w, self.error = clock, 5000, 0.0, None

    async def read(self, full: bool = True) -> MeterReading:
        if self.error:
            raise MeterError(self.error)
        return MeterReading(self.wh, self.power_w, taken_at=self.clock.t)

    async def close(self) -> None:
        pass


class FakeContactor:
    """Its auxiliary contact follows the command unless welded or broken."""

    def __init__(self) -> None:
        self.closed, self.welded, self.broken = False, False, False
        self.history: list[bool] = []

    def set(self, closed: bool) -> None:
        self.closed = closed
        self.history.append(closed)

    def feedback(self) -> bool | None:
        return (self.closed or self.welded) and not self.broken


class FakeInputs:
    def __init__(self, ev: bool | None = False) -> None:
        self.ev: bool | None = ev
        self.stop: bool | None = None

    def ev_connected(self) -> bool | None:
        return self.ev

    def stop_pressed(self) -> bool | None:
        return self.stop


class FakeReader:
    def start(self, on_tap: Callable[[bytes], None], on_fault: Callable[[str | None], None],
              on_beat: Callable[[], None] = lambda: None) -> None:
        self.on_tap, self.on_fault = on_tap, on_fault

    def alive(self) -> bool:
        return True

    def stop(self) -> None:
        pass


class FakeLeds:
    def __init__(self) -> None:
        self.shown: list[LedPattern] = []

    def show(self, pattern: LedPattern) -> None:
        self.shown.append(pattern)

    def close(self) -> None:
        pass


class FakeDisplay:
    cols, rows = 20, 4

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.shown: list[list[str]] = []

    def show(self, lines: list[str]) -> None:
        self.lines = list(lines)
        self.shown.append(list(lines))

    def close(self) -> None:
        pass


class FakeBackend(Backend):
    """Accepts the tags it knows (with their group), delivers everything, records the deliveries and
    the transaction facts it was told."""

    kind = "fake"

    def __init__(self, tags: dict[str, str | None] | None = None) -> None:
        super().__init__()
        self.up = True
        self.tags: dict[str, str | None] = dict(tags or {})
        self.delivered: list[tuple[str, dict]] = []
        self.facts: list[tuple[str, int | None]] = []

    async def authorize(self, id_tag: str, session: Session) -> AuthResult:
        if not self.up:
            raise BackendOffline("down")
        if id_tag in self.tags:
            return AuthResult(AuthStatus.ACCEPTED, parent_id=self.tags[id_tag])
        return AuthResult(AuthStatus.INVALID)

    async def parent_of(self, id_tag: str) -> str | None:
        return self.tags.get(id_tag)

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        self.delivered.append((item.kind.value, item.payload))
        return DeliveryResult()

    def transaction_fact(self, fact, session) -> None:  # type: ignore[no-untyped-def]
        self.facts.append((fact.value, session.id if session is not None else None))
