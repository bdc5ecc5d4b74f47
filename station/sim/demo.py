"""The configuration `station simulate` runs with.

Without `-c`, a built-in demo: emulated hardware, an SDM630 meter, three demo
cards registered to apartments (and one unknown), a plug sensor and a stop
button (as a real station has them), and the MCSP reference server embedded
as the backend (listening on 127.0.0.1, its ledger in the state directory),
so the demo speaks the mission's own protocol end to end. Scenario runs keep
the demo without the plug sensor, so that a tap alone starts a session (the
scenario files are written that way); the stop button is there.

With `-c FILE`, that file with `hardware.mode` forced to "sim", so an
installer can try a real configuration on a laptop before the Pi arrives. A
station whose file wires an EV-connected input or a stop button gets the
emulated one (unless its `sim.*` switch says otherwise).

The state directory (journal, emulated meter register): `--state-dir`, else
the file's `station.state_dir`, else a temporary directory for a scenario and
~/.local/state/station-sim for the interactive view. The one exception is
/var/lib/station, the installed station's journal: a simulation never writes
simulated sessions there unless `--state-dir` names it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from station import config as configmod

log = logging.getLogger(__name__)

DEMO_TAGS = {
    "16AC936B1692E73A": "Apartment 1",  # the key of the MCSP picture (injected: not an ISO 14443 UID length)
    "D64FC93B": "Apartment 2",  # the tag of the 2018 live log
    "04A2B3C4D5E6F7": "Apartment 3",  # a 7-byte UID (MIFARE Ultralight / NTAG)
}
UNKNOWN_TAG = "6AC32B40"
PRODUCTION_STATE_DIR = configmod.SCHEMA["station.state_dir"].default


def default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "station-sim")


def demo_data(plug_sensor: bool = True) -> dict[str, Any]:
    return {
        "station": {"name": "Tankstelle1"},
        "hardware": {"mode": "sim"},
        "meter": {"model": "SDM630"},
        "lcd": {"cols": 20, "rows": 4},
        "sim": {"ev_connected_input": plug_sensor, "stop_button_input": True},
        "backend": {"kind": "local", "local": {"tags": dict(DEMO_TAGS)}},
    }


async def prepare(path: str | None, state_dir: str | None, scenario: bool = False, status_page: str | None = None,
                  sim: dict[str, Any] | None = None, system_clock: str | None = None):
    """The config to simulate with, and the embedded backend server (None with -c).

    `sim`: `sim.*` switches to turn on (the emulated inputs a scenario's steps need).
    `system_clock`: `station.system_clock` (a scenario's); else see _sim_clock."""
    if path is not None:
        return simulation_config(path, state_dir, scenario, status_page, sim, system_clock), None
    from station.servers.mcsp import McspServer

    cfg = simulation_config(None, state_dir, scenario, status_page, sim, system_clock)
    os.makedirs(cfg.station.state_dir, exist_ok=True)
    # out=None: the server's billing printout would scroll through the terminal view.
    server = McspServer(tags=dict(DEMO_TAGS), db=os.path.join(cfg.station.state_dir, "mcsp-server.db"), out=None)
    await server.start()
    data = demo_data(plug_sensor=not scenario)
    data["backend"] = {"kind": "mcsp", "mcsp": {"url": f"tcp://127.0.0.1:{server.port}", "timeout_s": 2.0}}
    data["station"]["state_dir"] = cfg.station.state_dir
    data["sim"].update(sim or {})
    _status_page(data, status_page)
    _sim_clock(data, system_clock)
    return configmod.from_dict(data, "<demo>"), server


def simulation_config(path: str | None, state_dir: str | None, scenario: bool = False,
                      status_page: str | None = None, sim: dict[str, Any] | None = None,
                      system_clock: str | None = None) -> configmod.Config:
    if path is None:
        data = demo_data(plug_sensor=not scenario)
        source = "<demo>"
    else:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise configmod.ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise configmod.ConfigError(path, None, f"not valid TOML: {exc}") from None
        except RecursionError:  # tomllib recurses once per level of nesting
            raise configmod.ConfigError(path, None, "not valid TOML: arrays or tables nested too deeply") from None
        source = path
        _emulate_wired_inputs(data)
    data.setdefault("hardware", {})["mode"] = "sim"
    station = data.setdefault("station", {})
    station["state_dir"] = choose_state_dir(state_dir, station.get("state_dir"), scenario, source)
    data.setdefault("sim", {}).update(sim or {})
    _status_page(data, status_page)
    _sim_clock(data, system_clock)
    return configmod.from_dict(data, source)


def choose_state_dir(flag: str | None, configured: Any, scenario: bool, source: str = "<demo>") -> str:
    """--state-dir, else the config's station.state_dir, else the simulator's default."""
    if flag is not None:
        return flag
    if isinstance(configured, str) and configured:
        if os.path.normpath(configured) != PRODUCTION_STATE_DIR:
            return configured
        log.warning("%s: station.state_dir is %s, the installed station's journal: the simulation keeps its "
                    "sessions apart (pass --state-dir to choose a directory)", source, configured)
    return tempfile.mkdtemp(prefix="station-sim-") if scenario else default_state_dir()


def _emulate_wired_inputs(data: dict[str, Any]) -> None:
    """A file that wires an input gets the emulated one, unless its sim.* switch is set."""
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        inputs = {}
    sim = data.get("sim")
    if sim is not None and not isinstance(sim, dict):
        return  # the loader names the problem
    sim = data.setdefault("sim", {})
    for pin, switch in (("ev_connected_pin", "ev_connected_input"), ("stop_button_pin", "stop_button_input")):
        if inputs.get(pin) is not None and switch not in sim:
            sim[switch] = True


def _sim_clock(data: dict[str, Any], system_clock: str | None) -> None:
    """The host's clock counts as synchronized, as a Pi's with NTP would (a laptop or a test machine
    is right, even where the kernel does not say so, as in a container), unless the file or the
    scenario says otherwise."""
    station = data.setdefault("station", {})
    if isinstance(station, dict):
        if system_clock is not None:
            station["system_clock"] = system_clock
        else:
            station.setdefault("system_clock", "trusted")


def _status_page(data: dict[str, Any], listen: str | None) -> None:
    if listen is not None:
        page = data.setdefault("status_page", {})
        if isinstance(page, dict):
            page.update(enabled=True, listen=listen)


def cards(config: configmod.Config, embedded: bool) -> list[tuple[str, str, str]]:
    """(key, uid, label) for the keys 1-3 of the terminal view, and 4 for an unknown card.

    The demo's registered cards in apartment order; with -c the first three tags of
    backend.local.tags that are card UIDs, else the demo cards, labelled so that the
    view never promises a registration the config does not have.
    """
    from station.core.tags import parse_uid

    local = dict(config.backend.local.tags)
    kind = config.backend.kind
    out: list[tuple[str, str, str]] = []
    if embedded:
        chosen = sorted(DEMO_TAGS.items(), key=lambda kv: kv[1])
    else:
        usable = []
        for tag, name in local.items():
            try:
                raw = parse_uid(tag)
            except ValueError:
                continue  # an id tag that is no card UID (OCPP tags are free text)
            if config.rfid.uid_byte_order == "reverse":
                raw = raw[::-1]  # the reader reverses what the card sends
            usable.append((raw.hex().upper(), name))
        chosen = usable[:3]
    for n, (uid, name) in enumerate(chosen, 1):
        out.append((str(n), uid, name))
    if not out:
        why = "not listed: refused" if kind == "local" else f"the {kind} backend decides"
        out = [(str(n), uid, f"{uid} ({why})") for n, uid in enumerate(sorted(DEMO_TAGS, key=DEMO_TAGS.__getitem__), 1)]
    out.append(("4", UNKNOWN_TAG, "an unknown card"))
    return out
