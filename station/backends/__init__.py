"""Backends: who authorizes taps and receives sessions. Chosen by `backend.kind`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from station.config import Config
    from station.core.ports import Backend
    from station.store import Store

MODULES = {
    "local": "station.backends.local",
    "mcsp": "station.backends.mcsp.client",
    "evcs-serial": "station.backends.evcs.dialect",
    "ocpp": "station.backends.ocpp.backend",
}


def create(config: Config, store: Store) -> Backend:
    # Imported lazily: a station speaking MCSP never pays for importing ocpp.
    module = importlib.import_module(MODULES[config.backend.kind])
    return module.create(config, store)
