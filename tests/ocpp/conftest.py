"""Fixtures for the OCPP tests: a central system on 127.0.0.1:0 and a charge point factory.

Protocol intervals are shrunk by TIME_SCALE (the backend multiplies every
OCPP interval by it), so a "300 s" heartbeat is 6 s and a "1 s" retry 20 ms,
while the values on the wire stay the ones the spec talks about.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from station import config as config_mod
from station.backends.ocpp16.chargepoint import OcppBackend
from station.store import Store

from ocpp_csms import CentralSystem
from ocpp_double import StationDouble

TIME_SCALE = 0.02


@pytest.fixture
async def csms():
    cs = await CentralSystem().start()
    yield cs
    await cs.close()


class Rig:
    """A charge point (OcppBackend + StationDouble) wired to a central system."""

    def __init__(self, tmp_path, url: str, keys: dict[str, Any] | None, cp_id: str = "CP1",
                 extra: dict[str, Any] | None = None) -> None:
        self.cfg = config_mod.defaults({"station.state_dir": str(tmp_path), "backend.kind": "ocpp",
                                        "backend.ocpp.url": url, "backend.ocpp.charge_point_id": cp_id,
                                        **(extra or {})})
        self.store = Store.open(tmp_path)
        if keys:
            saved = self.store.get_json("ocpp.config", {}) or {}
            saved.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in keys.items()})
            self.store.put_json("ocpp.config", saved)
        self.backend = OcppBackend(self.cfg, self.store, time_scale=TIME_SCALE)
        self.backend.response_timeout = 2.0
        self.station = StationDouble(self.store, self.backend)

    async def start(self) -> "Rig":
        await self.station.run()
        return self

    async def close(self) -> None:
        await self.station.close()
        self.store.close()

    async def online(self, timeout: float = 10.0) -> None:
        assert await self.backend.wait_ready(timeout), "charge point did not register"

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until the outbox is empty."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.store.pending_messages():
            if loop.time() > deadline:
                raise AssertionError(f"outbox not empty after {timeout} s: {list(self.store.messages())}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def rig_factory(tmp_path):
    rigs: list[Rig] = []

    async def make(url: str, keys: dict[str, Any] | None = None, start: bool = True, **kw) -> Rig:
        rig = Rig(tmp_path, url, keys, **kw)
        rigs.append(rig)
        if start:
            await rig.start()
        return rig

    yield make
    for rig in rigs:
        await rig.close()


@pytest.fixture
async def rig(csms, rig_factory):
    """A registered charge point with fast transaction retries."""
    r = await rig_factory(csms.url, {"TransactionMessageRetryInterval": 1, "MeterValueSampleInterval": 0})
    await r.online()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    return r
