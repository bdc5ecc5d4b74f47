"""The station's OCPP client as a peer for bench/b_ocpp_peer.py (the Python side of the comparison).

    python -m bench.ocpp_peer_py URL CONNECTIONS MESSAGES PAUSE_MS STATE_DIR

Mirrors bench/node/peer.js: N charge points (each the station's real
`OcppBackend` with its own journal, registered by BootNotification, with the
IdleStation below playing the rest of the station), a pause, M
MeterValues CALLs on the first one, one after the other, each awaiting its
answer (the `ocpp` library validates each against the 1.6 schemas), a pause,
close. Prints BOOTED, SENT, CLOSED as the node script does.

IdleStation is the rest of the station as the backend sees it (StationControl,
station/core/ports.py) and no more: the real journal and the real deliverer, an
Available connector without a session, every command refused. The tests' own
double (tests/backends/ocpp/ocpp_double.py) plays sessions and records commands
for their assertions; a benchmark needs none of that, and imports nothing from
tests/.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from station.clock import Clock
from station.core.delivery import Deliverer
from station.core.model import ConnectorStatus, MeterReading, StatusReport
from station.supervisor import Supervisor


class IdleStation:
    """An idle station for one OcppBackend: Available, no session, commands refused."""

    name = "bench"
    meter_model = "SDM630"

    def __init__(self, store: Any, backend: Any) -> None:
        self.store, self.backend = store, backend
        self.clock = Clock(synchronized=lambda: False)  # the central system's time counts
        self.supervisor = Supervisor()
        self.deliverer = Deliverer(store, backend, self.clock)
        self.reading = MeterReading(energy_wh=1000, power_w=0.0, voltage_v=(230.0, 230.0, 230.0),
                                    current_a=(0.0, 0.0, 0.0))

    async def run(self) -> None:
        self.supervisor.spawn(self.deliverer.run(), "deliverer")
        await self.backend.start(self)

    async def close(self) -> None:
        self.supervisor.stopping()  # the backend's critical link loop ends now on purpose
        await self.backend.close()
        await self.supervisor.close()

    # -- StationControl
    def status(self) -> StatusReport:
        return StatusReport(1, ConnectorStatus.AVAILABLE, "NoError", None, None, self.clock.stamp())

    def current_session(self) -> None:
        return None

    def last_reading(self) -> MeterReading:
        return self.reading

    def meter_measurands(self) -> frozenset[str]:
        return frozenset({"energy", "power", "voltage", "current"})

    def offered_current(self) -> None:
        return None

    def spawn(self, coro, name: str, *, critical: bool = False, deadline_s: float | None = None) -> asyncio.Task:
        return self.supervisor.spawn(coro, name, critical=critical, deadline_s=deadline_s)

    def beat(self, name: str) -> None:
        self.supervisor.beat(name)

    async def remote_start(self, id_tag: str, connector_id: int | None = None) -> bool:
        return False

    async def remote_stop(self, backend_session_id: str) -> bool:
        return False

    async def reset(self, hard: bool) -> bool:
        return False

    async def set_available(self, available: bool) -> str:
        return "Rejected"

    async def unlock(self) -> str:
        return "NotSupported"

    async def stop_session(self, reason: str) -> bool:
        return False

    async def reserve(self, reservation_id: int, id_tag: str, parent_id: str | None, expiry: str) -> str:
        return "Rejected"

    async def cancel_reservation(self, reservation_id: int) -> bool:
        return False

    def set_clock(self, utc: str, round_trip_s: float = 0.0) -> float:
        return self.clock.set(utc, round_trip_s=round_trip_s)

    def tune(self, **values: object) -> None:
        pass

    def set_power_limit(self, watts: float | None) -> None:
        pass

    def set_current_limit(self, amps: float | None) -> None:
        pass

    def queue_message(self, session_id: int, kind: Any, payload: dict[str, Any]) -> None:
        self.store.enqueue(kind, session_id, payload, self.clock.stamp())
        self.deliverer.wake()

    def resend_held(self, session_id: int) -> int:
        n = self.store.resend(session_id)
        self.deliverer.wake()
        return n

    def notice(self, text: str) -> None:
        pass

    def backend_link(self, online: bool) -> None:
        if online:
            self.deliverer.wake()


async def main(url: str, n: int, m: int, pause_ms: int, state_dir: str) -> None:
    from station import config as config_mod
    from station.backends.ocpp.backend import OcppBackend
    from station.store import Store

    rigs = []
    for i in range(n):
        d = Path(state_dir) / f"cp{i}"
        cfg = config_mod.defaults({"station.state_dir": str(d), "backend.kind": "ocpp", "backend.ocpp.url": url,
                                   "backend.ocpp.charge_point_id": f"PY{i}"})
        store = Store.open(d)
        backend = OcppBackend(cfg, store)
        station = IdleStation(store, backend)
        await station.run()
        rigs.append((store, backend, station))
    for _, backend, _ in rigs:
        if not await backend.wait_ready(30):
            raise SystemExit("a charge point did not register")
    print(f"BOOTED {n}", flush=True)
    await asyncio.sleep(pause_ms / 1000)
    first = rigs[0][1]
    for i in range(m):
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        await first.link.request("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": stamp, "sampledValue": [
            {"value": str(1000 + i), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})
    print(f"SENT {m}", flush=True)
    await asyncio.sleep(pause_ms / 1000)
    for store, _, station in rigs:
        await station.close()
        store.close()
    print("CLOSED", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    url, n, m, pause, state = sys.argv[1:6]
    asyncio.run(main(url, int(n), int(m), int(pause), state))
