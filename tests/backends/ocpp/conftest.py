"""Fixtures for the OCPP tests: a central system on 127.0.0.1:0 and a charge point factory.

Protocol intervals are shrunk by TIME_SCALE (the backend multiplies every
OCPP interval by it), so a "300 s" heartbeat is 6 s and a "1 s" retry 20 ms,
while the values on the wire stay the ones the spec talks about.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import strict_peer
from ocpp_csms import CentralSystem
from ocpp_double import StationDouble
from ocpp_files import served  # noqa: F401 - a fixture for every test here (files the central system serves)
from strict_peer import TimedCS

from station import config as config_mod
from station.backends.ocpp.backend import OcppBackend
from station.store import Store

TIME_SCALE = 0.02


@pytest.fixture
async def strict_cs():
    """The independent strict central system (ocpp-rpc), plain ws://, no security."""
    cs = await strict_peer.start()
    try:
        yield cs
    finally:
        await cs.close()


@pytest.fixture
async def strict_factory():
    """make(security options of strict_cs.js) -> a started strict central system (TimedCS)."""
    made: list[TimedCS] = []

    async def make(security: dict | None = None) -> TimedCS:
        cs = await strict_peer.start(security, TimedCS)
        assert isinstance(cs, TimedCS)
        made.append(cs)
        return cs

    yield make
    for cs in made:
        await cs.close()


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

    async def start(self) -> Rig:
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


# ---------------------------------------------------------------------------- whole station
class SimStation:
    """A whole simulated station (station.daemon.Station on emulated hardware) speaking OCPP."""

    def __init__(self, station: Any) -> None:
        self.station = station

    @property
    def world(self):
        return self.station.world

    @property
    def charger(self):
        return self.station.charger

    @property
    def backend(self) -> OcppBackend:
        return self.station.backend

    @property
    def store(self) -> Store:
        return self.station.store

    async def online(self, timeout: float = 15.0) -> None:
        assert await self.backend.wait_ready(timeout), "station did not register"

    async def state(self, value: str, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.charger.state.value != value:
            if loop.time() > deadline:
                raise AssertionError(f"state {self.charger.state.value}, expected {value}")
            await asyncio.sleep(0.02)

    async def idle(self, timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.store.pending_messages():
            if loop.time() > deadline:
                raise AssertionError(f"outbox not empty: {list(self.store.messages())}")
            await asyncio.sleep(0.02)


def station_config(tmp_path, url: str, **overrides: Any):
    values = {
        "station.state_dir": str(tmp_path), "station.name": "CP1", "hardware.mode": "sim",
        "backend.kind": "ocpp", "backend.ocpp.url": url,
        "sim.ev_connected_input": True, "sim.load_w": 7400.0,
        "charging.meter_interval_s": 0.2, "charging.finishing_s": 0.3, "charging.contactor_settle_s": 0.05,
        "charging.message_s": 0.5, "charging.no_power_timeout_s": 0, "rfid.poll_interval_s": 0.05,
        "rfid.absent_s": 0.2,
    }
    values.update(overrides)
    return config_mod.defaults(values)


@pytest.fixture
async def sim_factory(tmp_path, monkeypatch):
    """make(url, keys={...}, **config) -> SimStation, started. Stopped (as a power cut) at teardown."""
    from station.backends.ocpp import backend as chargepoint
    from station.daemon import Station

    monkeypatch.setattr(chargepoint, "create", lambda c, s: OcppBackend(c, s, time_scale=TIME_SCALE))
    made: list[Any] = []

    async def make(url: str, keys: dict[str, Any] | None = None, start: bool = True, **overrides: Any) -> SimStation:
        if keys:
            store = Store.open(tmp_path)
            saved = store.get_json("ocpp.config", {}) or {}
            saved.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in keys.items()})
            store.put_json("ocpp.config", saved)
            store.close()
        st = Station(station_config(tmp_path, url, **overrides))
        made.append(st)
        if start:
            await st.start()
            st.backend.response_timeout = 2.0
            assert not st.charger.poller.plugged, "the emulated EV input reads 'plugged' at start"
        return SimStation(st)

    yield make
    for st in made:
        try:
            async with asyncio.timeout(10):
                await st.stop(graceful=False)
        except Exception:
            pass


@pytest.fixture
async def sim(csms, sim_factory):
    """A registered simulated station with fast retries and no periodic samples."""
    s = await sim_factory(csms.url, {"TransactionMessageRetryInterval": 1, "MeterValueSampleInterval": 0})
    await s.online()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    return s


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The OCPP security tests' certificates (tests/backends/ocpp/pki.py), made once per module."""
    from pki import Pki

    return Pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------------------- OCPP 2.0.1
@pytest.fixture
async def strict201():
    """The independent strict OCPP 2.0.1 central system (ocpp-rpc with its bundled 2.0.1 schemas)."""
    cs = await strict_peer.start201(cls=TimedCS)
    try:
        yield cs
    finally:
        await cs.close()


@pytest.fixture
async def sim201_factory(sim_factory, tmp_path):
    """make(url, variables={"TxCtrlr/TxStartPoint": "Authorized", ...}, versions=["2.0.1"], **config) -> a
    whole simulated station speaking OCPP 2.0.1 (device-model values seeded in the journal as the central
    system would have set them)."""

    async def make(url: str, variables: dict[str, Any] | None = None, versions: list[str] | None = None,
                   start: bool = True, **overrides: Any) -> SimStation:
        if variables:
            store = Store.open(tmp_path)
            saved = store.get_json("ocpp201.variables", {}) or {}
            saved.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in variables.items()})
            store.put_json("ocpp201.variables", saved)
            store.close()
        overrides.setdefault("backend.ocpp.versions", versions or ["2.0.1"])
        return await sim_factory(url, start=start, **overrides)

    return make
