"""A StationControl double for the protocol tests: the real Store and the real Deliverer.

It plays the core's part only as far as the backend can see it: sessions
are journaled in the real SQLite store (create_session/activate/stop queue
START and STOP exactly as the core does), the real deliverer hands them to
the backend, and every command the backend gives is recorded.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from station.backoff import Backoff
from station.clock import Clock
from station.core.delivery import Deliverer
from station.core.model import ConnectorStatus, DeliveryResult, MessageKind, MeterReading, OutboxItem, Session, StatusReport
from station.supervisor import Supervisor


class StationDouble:
    name = "double"
    meter_model = "SDM630"

    def __init__(self, store: Any, backend: Any) -> None:
        self.store = store
        self.backend = backend
        self.clock = Clock(synchronized=lambda: False)  # the central system's time counts
        self.session: Session | None = None
        self.state = ConnectorStatus.AVAILABLE
        self.error = ("NoError", None, None)
        self.reading = MeterReading(energy_wh=1000, power_w=0.0, voltage_v=(230.1, 230.2, 229.9),
                                    current_a=(0.0, 0.0, 0.0))
        self.measurands = frozenset({"energy", "power", "voltage", "current"})
        self.limits: list[float | None] = []
        self.calls: list[tuple] = []
        self.tuned: dict[str, object] = {}
        self.available = True
        self.reservations: dict[int, tuple] = {}
        self.deliverer = Deliverer(store, backend, self.clock, on_result=self._delivered,
                                   backoff=Backoff(initial=0.05, cap=0.5))
        self.results: list[tuple[OutboxItem, DeliveryResult]] = []
        self._task: asyncio.Task | None = None
        self.supervisor = Supervisor()

    def spawn(self, coro, name: str, *, critical: bool = False, deadline_s: float | None = None):
        return self.supervisor.spawn(coro, name, critical=critical, deadline_s=deadline_s)

    def beat(self, name: str) -> None:
        self.supervisor.beat(name)

    async def run(self) -> None:
        self._task = self.supervisor.spawn(self.deliverer.run(), "deliverer")
        await self.backend.start(self)

    async def close(self) -> None:
        self.supervisor.stopping()  # the backend's critical link loop ends now on purpose
        await self.backend.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _delivered(self, item: OutboxItem, result: DeliveryResult) -> None:
        self.results.append((item, result))

    # -- driving the double (what the hardware and core would do) ----------------
    def set_energy(self, wh: int, power_w: float = 0.0) -> None:
        self.reading = MeterReading(energy_wh=wh, power_w=power_w, voltage_v=(230.1, 230.2, 229.9),
                                    current_a=(power_w / 690, power_w / 690, power_w / 690))

    def begin(self, id_tag: str, *, offline: bool = False, parent_id: str | None = None,
              reservation_id: int | None = None) -> Session:
        s = self.store.create_session(uuid.uuid4().hex, 1, id_tag, self.reading.energy_wh,
                                      reservation_id=reservation_id)
        started = self.clock.stamp()
        self.session = self.store.activate(s.id, self.reading.energy_wh, started, (), None, parent_id, offline,
                                           {"id_tag": id_tag}, start_delivered=False)
        self.deliverer.wake()
        self.set_state(ConnectorStatus.CHARGING)
        return self.session

    def end(self, reason: str = "Local") -> Session:
        assert self.session is not None
        s = self.store.stop(self.session.id, self.reading.energy_wh, self.clock.stamp(), reason, (), False,
                            {"reason": reason})
        self.session = None
        self.deliverer.wake()
        self.set_state(ConnectorStatus.FINISHING)
        return s

    def set_state(self, state: ConnectorStatus, error: tuple = ("NoError", None, None)) -> None:
        self.state, self.error = state, error
        asyncio.ensure_future(self.backend.send_status(self.status()))

    # -- StationControl ------------------------------------------------------------------
    def status(self) -> StatusReport:
        code, info, vendor = self.error
        return StatusReport(1, self.state, code, info, vendor, self.clock.stamp())

    def current_session(self) -> Session | None:
        if self.session is None:
            return None
        return self.store.session(self.session.id)

    def last_reading(self):
        return self.reading

    def meter_measurands(self) -> frozenset[str]:
        return self.measurands

    def offered_current(self) -> float | None:
        return None  # no charge controller (tests of Current.Offered run a whole station with one)

    async def remote_start(self, id_tag: str, connector_id: int | None = None) -> bool:
        self.calls.append(("remote_start", id_tag, connector_id))
        if self.session is not None or self.state not in (ConnectorStatus.AVAILABLE, ConnectorStatus.PREPARING,
                                                          ConnectorStatus.RESERVED):
            return False
        self.begin(id_tag)
        return True

    async def remote_stop(self, backend_session_id: str) -> bool:
        self.calls.append(("remote_stop", backend_session_id))
        if self.session is None or self.current_session().backend_session_id != backend_session_id:
            return False
        self.end("Remote")
        return True

    async def stop_session(self, reason: str) -> bool:
        self.calls.append(("stop_session", reason))
        if self.session is None:
            return False
        self.end(reason)
        return True

    async def reset(self, hard: bool) -> bool:
        self.calls.append(("reset", hard))
        if self.session is not None:
            self.end("HardReset" if hard else "SoftReset")
        return True

    async def set_available(self, available: bool) -> str:
        self.calls.append(("set_available", available))
        self.store.put_json("core.available", available)
        if not available and self.session is not None:
            return "Scheduled"
        self.available = available
        self.set_state(ConnectorStatus.AVAILABLE if available else ConnectorStatus.UNAVAILABLE)
        return "Accepted"

    async def unlock(self) -> str:
        self.calls.append(("unlock",))
        return "NotSupported"  # as the charger: a fixed cable has no lock

    async def reserve(self, reservation_id: int, id_tag: str, parent_id: str | None, expiry: str) -> str:
        self.calls.append(("reserve", reservation_id, id_tag, parent_id, expiry))
        if self.state is ConnectorStatus.FAULTED:
            return "Faulted"
        if self.state is ConnectorStatus.UNAVAILABLE:
            return "Unavailable"
        if self.state not in (ConnectorStatus.AVAILABLE, ConnectorStatus.RESERVED):
            return "Occupied"
        self.reservations[reservation_id] = (id_tag, parent_id, expiry)
        self.set_state(ConnectorStatus.RESERVED)
        return "Accepted"

    async def cancel_reservation(self, reservation_id: int) -> bool:
        self.calls.append(("cancel_reservation", reservation_id))
        if self.reservations.pop(reservation_id, None) is None:
            return False
        self.set_state(ConnectorStatus.AVAILABLE)
        return True

    def set_clock(self, utc: str, round_trip_s: float = 0.0) -> float:
        self.calls.append(("set_clock", utc))
        return self.clock.set(utc, round_trip_s=round_trip_s)

    def tune(self, **values: object) -> None:
        self.tuned.update(values)

    def set_power_limit(self, watts: float | None) -> None:
        self.limits.append(watts)
        if watts == 0 and self.state in (ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV):
            self.set_state(ConnectorStatus.SUSPENDED_EVSE)
        elif watts != 0 and self.state is ConnectorStatus.SUSPENDED_EVSE:
            self.set_state(ConnectorStatus.CHARGING)

    def set_current_limit(self, amps: float | None) -> None:
        self.calls.append(("set_current_limit", amps))

    def queue_message(self, session_id: int, kind: MessageKind, payload: dict[str, Any]) -> None:
        """As the core does: into the journal's outbox, then deliver."""
        self.store.enqueue(kind, session_id, payload, self.clock.stamp())
        self.deliverer.wake()

    def resend_held(self, session_id: int) -> int:
        n = self.store.resend(session_id)
        self.deliverer.wake()
        return n


    def notice(self, text: str) -> None:
        self.calls.append(("notice", text))

    def backend_link(self, online: bool) -> None:
        self.calls.append(("link", online))
        if online:
            self.deliverer.wake()
