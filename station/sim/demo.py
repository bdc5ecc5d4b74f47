"""The configuration `station simulate` runs with.

Without `-c`, a built-in demo: emulated hardware, an SDM630 meter, three demo
cards registered to apartments (and one unknown), and the MCSP reference
server embedded as the backend (listening on 127.0.0.1, its ledger in the
state directory), so the demo speaks the mission's own protocol end to end.
With `-c FILE`, that file with `hardware.mode` forced to "sim", so an
installer can try a real configuration on a laptop before the Pi arrives.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from station import config as configmod

DEMO_TAGS = {
    "16AC936B1692E73A": "Apartment 1",  # the key of the MCSP picture (injected: not an ISO 14443 UID length)
    "D64FC93B": "Apartment 2",  # the tag of the 2018 live log
    "04A2B3C4D5E6F7": "Apartment 3",  # a 7-byte UID (MIFARE Ultralight / NTAG)
}
UNKNOWN_TAG = "6AC32B40"


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "station-sim")


def demo_data() -> dict[str, Any]:
    return {
        "station": {"name": "Tankstelle1"},
        "hardware": {"mode": "sim"},
        "meter": {"model": "SDM630"},
        "lcd": {"cols": 20, "rows": 4},
        "sim": {"ev_connected_input": False},
        "backend": {"kind": "local", "local": {"tags": dict(DEMO_TAGS)}},
    }


async def prepare(path: str | None, state_dir: str | None, scenario: bool = False,
                  sim: dict[str, Any] | None = None):
    """The config to simulate with, and the embedded backend server (None with -c).

    `sim`: `sim.*` switches to turn on (the emulated inputs a scenario's steps need)."""
    if path is not None:
        return simulation_config(path, state_dir, scenario, sim), None
    from station.backends.mcsp.server import McspServer

    cfg = simulation_config(None, state_dir, scenario, sim)
    os.makedirs(cfg.station.state_dir, exist_ok=True)
    server = McspServer(tags=dict(DEMO_TAGS), db=os.path.join(cfg.station.state_dir, "mcsp-server.db"),
                        out=open(os.devnull, "w"))
    await server.start()
    data = demo_data()
    data["backend"] = {"kind": "mcsp", "mcsp": {"url": f"tcp://127.0.0.1:{server.port}", "timeout_s": 2.0}}
    data["station"]["state_dir"] = cfg.station.state_dir
    data["sim"].update(sim or {})
    return configmod.from_dict(data, "<demo>"), server


def simulation_config(path: str | None, state_dir: str | None, scenario: bool = False,
                      sim: dict[str, Any] | None = None) -> configmod.Config:
    if path is None:
        data = demo_data()
        source = "<demo>"
    else:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise configmod.ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise configmod.ConfigError(path, None, f"not valid TOML: {exc}") from None
        source = path
    data.setdefault("hardware", {})["mode"] = "sim"
    if state_dir is None:
        state_dir = tempfile.mkdtemp(prefix="station-sim-") if scenario else default_state_dir()
    data.setdefault("station", {})["state_dir"] = state_dir
    data.setdefault("sim", {}).update(sim or {})
    return configmod.from_dict(data, source)
