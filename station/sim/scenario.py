"""Scenario files: scripted station lives for tests, demos and benchmarks.

A scenario is TOML with a list of `[[step]]` tables, run in order against a
whole Station on emulated hardware:

    tap      uid = "16AC936B1692E73A"   present a card once (hold_s optional)
    plug / unplug                       the EV-connected input (enables it)
    stop                                press the stop button (enables it)
    load     watts = 7400               the car draws this power from now on
    consume  wh = 1500                  the meter register advances by exactly this many Wh
    wait     seconds = 1.5
    expect   state = "Charging", within = 5      fail unless reached in time
             fault = "ContactorWelded"  ... and reporting this fault (vendor or OCPP error code)
             offered_a = 10             ... and the pilot offering this current (A; 0: no PWM);
                                        state or offered_a, or both (with [controller] model)
             online = true              ... and the backend online (false: offline); alone, it
                                        waits for the backend (a tap before it is answered offline)
    car      asleep = true              the car on the charge controller's pilot (with
             ventilation = true         [controller] model; any of these keys):
             diode_fault = true           asleep: connected, does not ask for current
             full = true                  ventilation: asks in state D
             phases = 1                   diode_fault: no diode in its pilot circuit
             max_current_a = 10           full: the battery is full (back to B)
                                          phases: its charger takes 1 or 3 phases
                                          max_current_a: the most its charger draws per phase
    backend  up = false                 take the backend link down or up (any backend: the embedded
                                        server stops, else the link is cut at the station)
    fault    kind = "contactor-welded"  make something fail (enables the emulated auxiliary
                                        contact, as plug/unplug enable the EV input and stop
                                        the stop button):
               contactor-welded   the contacts stick closed
               contactor-open     the contactor drops out (and will not close)
               meter-silent       the meter stops answering
               meter-bad-crc      the meter answers with a broken CRC
               reader-dead        the RFID reader's worker thread dies
               loop-hang          a loop of the station stops making progress; `loop` names it:
                                  events, meter, poll, pilot, deliverer (default meter), or event-loop
                                  (the whole asyncio loop blocks)
               controller-silent  the charge controller stops answering   } with
               rcd-tripped        its residual current monitor trips      } [controller]
               controller-restart it restarts (RAM from its EEPROM)       } model
    clear                               remove the injected faults (a hung loop stays hung)

A station that detects a dead or hung loop opens the contactor, journals what is
open and ends (as under systemd, which would restart it): the runner stops there,
reports why, and `station simulate --scenario` exits with 70 (EX_SOFTWARE). The
next run on the same state directory closes the open session as after a power cut.

At the end the runner waits (up to `settle_s`, 30 s by default) until every
journaled message is delivered. Exit status 0 means: every step passed and
nothing is left undelivered.

`system_clock` (top level) sets `station.system_clock` for the run: the
simulator counts the host's clock as synchronized ("trusted"); "untrusted"
makes the station take its time from the backend (or estimate it), "ntp"
asks the kernel, as on a Pi.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from station.clock import SYSTEM_CLOCK
from station.core.states import State
from station.core.tags import parse_uid
from station.errors import ScenarioError
from station.sim.world import FAULT_KINDS, HANGABLE_LOOPS

STEP_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "tap": {"uid": str, "hold_s": (int, float)},
    "plug": {},
    "unplug": {},
    "stop": {},
    "load": {"watts": (int, float)},
    "consume": {"wh": int},
    "wait": {"seconds": (int, float)},
    "expect": {"state": str, "within": (int, float), "fault": str, "offered_a": (int, float), "online": bool},
    "car": {"asleep": bool, "ventilation": bool, "diode_fault": bool, "full": bool, "phases": int,
            "max_current_a": (int, float)},
    "backend": {"up": bool},
    "fault": {"kind": str, "loop": str},
    "clear": {},
}
REQUIRED = {"tap": {"uid"}, "load": {"watts"}, "consume": {"wh"}, "wait": {"seconds"}, "backend": {"up"},
            "fault": {"kind"}}
EXIT_FAILED = 70  # the station gave up (a loop died or hung), as `station run` exits under systemd


@dataclass
class Scenario:
    steps: list[dict[str, Any]]
    settle_s: float = 30.0
    source: str = "<scenario>"
    system_clock: str | None = None  # station.system_clock for the run (None: the simulator's choice)


@dataclass
class Outcome:
    ok: bool
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def parse(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    unknown = set(data) - {"step", "settle_s", "system_clock"}
    if unknown:
        raise ScenarioError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}")
    steps = data.get("step")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{source}: no [[step]] entries")
    for n, step in enumerate(steps, 1):
        where = f"{source}: step {n}"
        if not isinstance(step, dict):
            raise ScenarioError(f"{where}: expected a table, got {type(step).__name__}")
        action = step.get("action")
        if not isinstance(action, str) or action not in STEP_KEYS:
            raise ScenarioError(f"{where}: action must be one of {', '.join(STEP_KEYS)}, got {action!r}")
        for key, value in step.items():
            if key == "action":
                continue
            want = STEP_KEYS[action].get(key)
            if want is None:
                raise ScenarioError(f"{where} ({action}): unknown key {key!r}")
            if isinstance(value, bool) and want is not bool:
                raise ScenarioError(f"{where} ({action}): {key} has the wrong type")
            if not isinstance(value, want):
                raise ScenarioError(f"{where} ({action}): {key} has the wrong type ({type(value).__name__})")
        missing = REQUIRED.get(action, set()) - set(step)
        if missing:
            raise ScenarioError(f"{where} ({action}): missing {sorted(missing)[0]!r}")
        if action == "expect" and not {"state", "offered_a", "online"} & set(step):
            raise ScenarioError(f"{where} (expect): missing 'state' (or 'offered_a', 'online')")
        if action == "expect" and "state" in step and step["state"] not in {s.value for s in State}:
            raise ScenarioError(f"{where}: unknown state {step['state']!r}")
        if action == "car" and len(step) == 1:
            raise ScenarioError(f"{where} (car): say what the car does (asleep, ventilation, diode_fault, full, "
                                "phases, max_current_a)")
        if action == "car" and step.get("phases", 3) not in (1, 3):
            raise ScenarioError(f"{where} (car): phases must be 1 or 3")
        if action == "consume" and step["wh"] < 0:
            raise ScenarioError(f"{where}: wh must not be negative")
        for key in ("hold_s", "watts", "seconds", "within", "offered_a", "max_current_a"):
            if key in step and not (math.isfinite(step[key]) and step[key] >= 0):
                raise ScenarioError(f"{where} ({action}): {key} must be a finite non-negative number")
        if action == "fault":
            if step["kind"] not in FAULT_KINDS:
                raise ScenarioError(f"{where} (fault): kind must be one of {', '.join(FAULT_KINDS)}, got {step['kind']!r}")
            if step.get("loop", "meter") not in HANGABLE_LOOPS:
                raise ScenarioError(f"{where} (fault): loop must be one of {', '.join(HANGABLE_LOOPS)}")
        if action == "tap":
            try:
                parse_uid(step["uid"])
            except ValueError as exc:
                raise ScenarioError(f"{where} (tap): {exc}") from None
    settle = data.get("settle_s", 30.0)
    if not isinstance(settle, (int, float)) or isinstance(settle, bool) or not (math.isfinite(settle) and settle >= 0):
        raise ScenarioError(f"{source}: settle_s must be a non-negative number")
    system_clock = data.get("system_clock")
    if system_clock is not None and system_clock not in SYSTEM_CLOCK:
        raise ScenarioError(f"{source}: system_clock must be one of {', '.join(SYSTEM_CLOCK)}")
    return Scenario(steps, float(settle), source, system_clock)


def load(path: str | Path) -> Scenario:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nesting
        raise ScenarioError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    return parse(data, str(path))


def inputs_needed(scenario: Scenario) -> dict[str, bool]:
    """The emulated inputs a scenario's steps need (`sim.*` switches)."""
    actions = {step["action"] for step in scenario.steps}
    kinds = {step.get("kind") for step in scenario.steps if step["action"] == "fault"}
    needed: dict[str, bool] = {}
    if actions & {"plug", "unplug"}:
        needed["ev_connected_input"] = True
    if "stop" in actions:
        needed["stop_button_input"] = True
    if kinds & {"contactor-welded", "contactor-open"}:
        needed["contactor_feedback"] = True
    return needed


def _matches(station: Any, state: str | None, fault: str | None, offered_a: float | None = None,
             online: bool | None = None) -> bool:
    c = station.charger
    if state is not None and (c.state.value != state or c.busy):
        return False
    if online is not None and c.online != online:
        return False
    if offered_a is not None:
        offered = station.world.offered_a
        if offered is None or abs(offered - offered_a) > 0.01:
            return False
    if fault is None:
        return True
    report = c.status()
    return fault in (report.vendor_error_code, report.error_code)


async def wait_for_state(station: Any, state: str | None, within: float, fault: str | None = None,
                         offered_a: float | None = None, online: bool | None = None) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _matches(station, state, fault, offered_a, online) or station.failure is not None:
            break
        await asyncio.sleep(0.02)
    return _matches(station, state, fault, offered_a, online)


def car_step(world: Any, step: dict[str, Any]) -> None:
    """The `car` step: the emulated car on the charge controller's pilot."""
    if world.controller is None:
        raise ScenarioError("the car step needs an emulated charge controller ([controller] model, "
                            "hardware.emulate_bus = true)")
    for key, call in (("asleep", world.car_asleep), ("ventilation", world.car_ventilation),
                      ("diode_fault", world.car_diode_fault), ("full", world.car_full), ("phases", world.car_phases)):
        if key in step:
            call(step[key])
    if "max_current_a" in step:
        world.car.max_current_a = float(step["max_current_a"])
        world.controller.car_changed()


async def run(station: Any, scenario: Scenario) -> Outcome:
    """Run the steps on a started Station (hardware.mode = "sim")."""
    world = station.world
    failures: list[str] = []
    # The car draws nothing until a `load` step says so, so that `consume` steps give exact figures
    # (the emulated meter's; the real devices of emulate_bus = false draw what they draw).
    if world.meter is not None:
        world.set_load(0.0)
    for n, step in enumerate(scenario.steps, 1):
        if station.failure is not None:
            break
        action = step["action"]
        if action == "tap":
            await world.tap(step["uid"], hold_s=step.get("hold_s", 0.4))
        elif action == "plug":
            world.plug(True)
        elif action == "unplug":
            world.plug(False)
        elif action == "stop":
            await world.press_stop()
        elif action == "load":
            world.set_load(float(step["watts"]))
        elif action == "consume":
            world.consume(int(step["wh"]))
        elif action == "wait":
            await asyncio.sleep(float(step["seconds"]))
        elif action == "expect":
            within = float(step.get("within", 5))
            offered = step.get("offered_a")
            online = step.get("online")
            if not await wait_for_state(station, step.get("state"), within, step.get("fault"),
                                        None if offered is None else float(offered), online):
                report = station.charger.status()
                fault = f" ({report.vendor_error_code or report.error_code})" if report.error_code != "NoError" else ""
                wanted = " ".join(filter(None, (step.get("state"), f"with {step['fault']}" if "fault" in step else "",
                                                f"offering {offered:g} A" if offered is not None else "",
                                                "" if online is None else f"backend {'on' if online else 'off'}line")))
                now = f", offering {station.world.offered_a:g} A" if offered is not None and \
                    station.world.offered_a is not None else ""
                link = "" if online is None else f", backend {'on' if station.charger.online else 'off'}line"
                failures.append(f"step {n}: expected {wanted} within {within:g} s, "
                                f"station is {station.charger.state.value}{fault}{now}{link}")
                break
        elif action == "car":
            try:
                car_step(world, step)
            except ScenarioError as exc:
                failures.append(f"step {n}: {exc}")
                break
        elif action == "backend":
            await world.backend_link(bool(step["up"]))
        elif action == "fault":
            world.inject(step["kind"], step.get("loop", "meter"))
        elif action == "clear":
            world.clear()
        # Let the station react to the step before the next one (taps are debounced by the reader).
        await asyncio.sleep(0.05)
    if station.failure is not None:
        summary = summarize(station)
        return Outcome(False, [*failures, f"station failed: {station.failure}"], summary)
    delivered = await station.flush(scenario.settle_s) if not failures else False
    summary = summarize(station)
    if not failures and not delivered:
        failures.append(f"{summary['undelivered']} message(s) still undelivered after {scenario.settle_s:g} s")
    return Outcome(not failures, failures, summary)


def summarize(station: Any) -> dict[str, Any]:
    sessions = []
    for s in station.store.sessions():
        sessions.append({
            "id_tag": s.id_tag, "meter_start_wh": s.meter_start_wh, "meter_stop_wh": s.meter_stop_wh,
            "energy_wh": s.energy_wh, "started_at": s.started_at, "stopped_at": s.stopped_at,
            "stop_reason": s.stop_reason, "backend_session_id": s.backend_session_id,
            "delivered": bool(s.extra.get("delivered")),
        })
    return {
        "state": station.charger.state.value,
        "failed": station.failure,  # why the station gave up (a dead or hung loop), else None
        "meter_wh": station.world.meter_wh,
        "undelivered": station.store.pending_messages(),
        "sessions": sessions,
    }


def run_scenario_file(config_path: str | None, state_dir: str | None, path: str, as_json: bool = False) -> int:
    try:
        scenario = load(path)
    except ScenarioError as exc:
        print(f"scenario error: {exc}", file=sys.stderr)
        return 2

    async def main() -> Outcome:
        from station.daemon import Station
        from station.sim.demo import prepare

        config, embedded = await prepare(config_path, state_dir, scenario=True, sim=inputs_needed(scenario),
                                         system_clock=scenario.system_clock)
        used_dir.append(config.station.state_dir)
        station = Station(config, embedded=embedded)
        await station.start()
        station.watch_event_loop()
        try:
            return await run(station, scenario)
        finally:
            await station.stop(graceful=station.failure is None)

    used_dir: list[str] = []
    outcome = asyncio.run(main())
    if as_json:
        # ok and failures too: a script reading the JSON must not have to parse stderr.
        print(json.dumps({"ok": outcome.ok, "failures": outcome.failures, "state_dir": used_dir[0],
                          **outcome.summary}, indent=2))
    else:
        s = outcome.summary
        print(f"state {s['state']}, meter {s['meter_wh']} Wh, {len(s['sessions'])} session(s), {s['undelivered']} undelivered"
              f" (journal in {used_dir[0]})")
        for sess in s["sessions"]:
            print(f"  {sess['id_tag']}: {sess['energy_wh']} Wh ({sess['meter_start_wh']} -> {sess['meter_stop_wh']}), "
                  f"{sess['stop_reason']}, {'delivered' if sess['delivered'] else 'NOT delivered'}")
    for failure in outcome.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if outcome.summary.get("failed"):
        return EXIT_FAILED
    return 0 if outcome.ok else 1
