"""Run a whole station in this process on emulated hardware, with each backend on loopback.

`backend_rig(kind, state_dir)` starts what the backend needs (nothing for
local, an embedded `McspServer` for mcsp, the `ocpp` library's central system of
scripts/harness/ocpp_csms.py for ocpp, the strict ocpp-rpc central system of scripts/harness/peers
speaking 2.0.1 for ocpp201)
and yields (config overrides, server). Product
defaults are kept except where only waiting is saved (Finishing time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import ROOT

PEERS = ROOT / "scripts" / "harness" / "peers"
CARD = "D64FC93B"
TAGS = {CARD: "Apartment 2"}


def import_central_system():
    """scripts/harness/ocpp_csms.py's CentralSystem (built on the `ocpp` library), or None."""
    try:
        from ocpp_csms import CentralSystem  # type: ignore[import-not-found]  # scripts/harness (bench/__init__.py)
    except Exception as exc:  # noqa: BLE001 - reported as "not measured"
        logging.getLogger(__name__).warning("scripts/harness/ocpp_csms.py not importable: %s", exc)
        return None
    return CentralSystem


def import_strict_peer():
    """scripts/harness/strict_peer.py (the ocpp-rpc strict central system in a node process), or None."""
    import shutil

    if shutil.which("node") is None or not (PEERS / "node_modules" / "ocpp-rpc").is_dir():
        logging.getLogger(__name__).warning("node or scripts/harness/peers/node_modules/ocpp-rpc missing "
                                            "(bash scripts/harness/peers/install.sh)")
        return None
    try:
        import strict_peer  # type: ignore[import-not-found]  # scripts/harness (bench/__init__.py)
    except Exception as exc:  # noqa: BLE001 - reported as "not measured"
        logging.getLogger(__name__).warning("scripts/harness/strict_peer.py not importable: %s", exc)
        return None
    return strict_peer


@contextlib.asynccontextmanager
async def strict_central_system(version: str, frames: bool = False) -> AsyncIterator[Any]:
    """The strict central system speaking OCPP `version` ("1.6" or "2.0.1"), events stamped with arrival
    times; with `frames`, every websocket message is reported with its size."""
    sp = import_strict_peer()
    if sp is None:
        raise RuntimeError("no strict central system (node and scripts/harness/peers/install.sh needed)")
    cs = await sp.start({"protocols": [f"ocpp{version}"], "frames": frames}, cls=sp.TimedCS)
    try:
        yield cs
    finally:
        await cs.close()


@contextlib.asynccontextmanager
async def backend_rig(kind: str) -> AsyncIterator[tuple[dict[str, Any], Any]]:
    if kind == "local":
        yield {"backend.kind": "local", "backend.local.tags": dict(TAGS)}, None
        return
    if kind == "mcsp":
        from station.servers.mcsp import McspServer

        server = McspServer(tags=dict(TAGS), keep_requests=None)  # b_replay checks every request's order
        await server.start()
        try:
            yield {"backend.kind": "mcsp", "backend.mcsp.url": server.url}, server
        finally:
            await server.close()
        return
    if kind == "ocpp":
        CentralSystem = import_central_system()
        if CentralSystem is None:
            raise RuntimeError("no OCPP central system (scripts/harness/ocpp_csms.py) importable")
        cs = await CentralSystem().start()
        try:
            yield {"backend.kind": "ocpp", "backend.ocpp.url": cs.url, "station.name": "CP1"}, cs
        finally:
            await cs.close()
        return
    if kind == "ocpp201":
        async with strict_central_system("2.0.1") as cs:
            yield {"backend.kind": "ocpp", "backend.ocpp.url": cs.url, "backend.ocpp.versions": ["2.0.1"],
                   "station.name": "CP1"}, cs
        return
    raise ValueError(kind)


def station_config(state_dir: Path, overrides: dict[str, Any]):
    from station import config as configmod

    values: dict[str, Any] = {
        "hardware.mode": "sim",
        "station.state_dir": str(state_dir),
        "charging.finishing_s": 0.2,  # only saves waiting between taps
    }
    values.update(overrides)
    return configmod.defaults(values)


async def stop_station(station: Any) -> None:
    """Stop, tolerating a task that swallows one cancellation (Python 3.11 wait_for)."""
    try:
        await asyncio.wait_for(station.stop(), 15)
    except Exception:  # noqa: BLE001
        pass


async def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
