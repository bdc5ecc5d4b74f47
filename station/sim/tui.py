"""The interactive terminal view of `station simulate`.

It shows what a person at the station would see (the LCD, the LEDs, the
contactor) beside what only the simulator knows (meter power and energy,
the car, the backend link as it is and as the station sees it, recent
events), and takes keys to play the driver and the car. The help line names
the cards and offers only the keys that do something on this station (no
`p` without a plug sensor, no `s` without a stop button, the car's keys
only with an emulated charge controller: asleep, ventilation, diode,
full, phases, residual current). Without a terminal (stdin not a TTY, e.g. in
CI or piped), it plays a short demo session instead and prints the same
view after each step, then exits: `./run-station` always shows a session.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import termios
import threading
import tty

from station.core.tags import normalize_tag
from station.sim.demo import DEMO_TAGS, cards

LED_GLYPH = {"green": "\x1b[32m●\x1b[0m", "yellow": "\x1b[33m●\x1b[0m", "red": "\x1b[31m●\x1b[0m", "blue": "\x1b[34m●\x1b[0m"}


class View:
    """What the keys do on this station, and the names of the cards they tap."""

    def __init__(self, station) -> None:
        self.station = station
        world = station.world
        self.cards = {key: (uid, label) for key, uid, label in cards(station.config, station.embedded is not None)}
        named = {**(DEMO_TAGS if station.embedded is not None else {}), **dict(station.config.backend.local.tags)}
        self.names = {normalize_tag(tag): name for tag, name in named.items()}
        self.has_pilot = world.controller is not None  # an emulated charge controller and its car
        self.has_plug = world.pins.ev is not None or self.has_pilot
        self.has_stop = world.pins.stop is not None
        self.message = ""

    def help(self) -> str:
        taps = ", ".join(f"{key} {label}" for key, (uid, label) in self.cards.items())
        keys = [f"tap: {taps}"]
        keys.append("p plug/unplug the car" if self.has_plug else "p (no plug sensor in this config)")
        keys.append("s stop button" if self.has_stop else "s (no stop button in this config)")
        keys.append("+/- car load")
        if self.has_pilot:
            keys.append("car: a asleep, v ventilation, d diode fault, f full, h 1/3 phases, r residual current")
        keys.append("b backend link down/up")  # any backend (SimWorld.backend_link)
        keys.append("q quit")
        return "keys: " + "; ".join(keys)


def render(station, color: bool = True, view: View | None = None) -> str:
    """The view as text (also used by tests and the headless demo)."""
    view = view or View(station)
    ch, world = station.charger, station.world
    display = station.hardware.display
    if hasattr(display, "flush"):
        display.flush(0.2)  # the LCD thread writes the latest lines first (a blocking wait of 0.2 s at most)
    lcd = world.lcd_text()
    width = max((len(line) for line in lcd), default=16)
    leds = station.hardware.leds
    lit = sorted(getattr(leds, "lit", frozenset()))
    led_text = " ".join((LED_GLYPH.get(c, c) if color else c) for c in lit) or "(off)"
    session = ch.session
    cfg = station.config
    if view.has_plug:
        car = "plugged in" if world.plugged else "not plugged in"
        if view.has_pilot:
            c = world.car
            flags = [name for name, on in (("asleep", c.asleep), ("asks for ventilation", c.ventilation),
                                           ("no pilot diode", c.diode_fault), ("battery full", c.full)) if on]
            car += f", {c.phases} phase(s)" + "".join(f", {f}" for f in flags)
    else:
        car = "always plugged in (this config has no plug sensor)"
    who = ""
    if session is not None:
        name = view.names.get(normalize_tag(session.id_tag))
        who = f"{name} ({session.id_tag})" if name else session.id_tag
    queued = station.store.pending_messages()
    link = "up" if world.backend_up else "DOWN (key b)"
    seen = "online" if ch.online else "OFFLINE"
    if world.backend_up != ch.online:
        seen += " (not noticed yet: at its next request or heartbeat)" if ch.online else " (connecting)"
    backend = f"link {link}; the station sees it {seen}; {queued} message(s) queued"
    page = getattr(station, "status_page", None)
    lines = [
        f"station {cfg.station.name} ({cfg.meter.model} meter, {cfg.backend.kind} backend), journal in {cfg.station.state_dir}",
        *([f"status page {page.url}"] if page is not None and page.url else []),
        "+" + "-" * (width + 2) + "+",
        *[f"| {line:<{width}} |" for line in lcd],
        "+" + "-" * (width + 2) + "+",
        f"state      {ch.state.value}{'  [' + ', '.join(f.text for f in ch.faults.values()) + ']' if ch.faults else ''}",
        f"LEDs       {led_text}   ({leds.pattern.value if hasattr(leds, 'pattern') else ''})",
        f"contactor  {'CLOSED' if world.contactor_closed else 'open'}",
        f"car        {car}, load {world.load_w / 1000:.1f} kW",
        *([f"pilot      {world.pilot_text()}; the station offers {ch.offered_a or 0:g} A"]
          if world.controller is not None else []),
        f"meter      {world.power_w / 1000:.2f} kW, register {world.meter_wh} Wh",
        f"session    {who + ' since ' + str(session.meter_start_wh) + ' Wh' if session else '-'}",
        f"backend    {backend}",
        "recent:",
        *[f"  {event}" for event in ch.recent[-6:]],
    ]
    return "\n".join(lines)


def run_interactive(config_path: str | None, state_dir: str | None, status_page: str | None = None) -> int:
    if not sys.stdin.isatty():
        return asyncio.run(_demo(config_path, state_dir, status_page))
    return asyncio.run(_interactive(config_path, state_dir, status_page))


async def _start(config_path: str | None, state_dir: str | None, status_page: str | None = None):
    from station.daemon import Station
    from station.sim.demo import prepare

    config, embedded = await prepare(config_path, state_dir, status_page=status_page)
    station = Station(config, embedded=embedded)
    await station.start()
    return station


async def _demo(config_path: str | None, state_dir: str | None, status_page: str | None = None) -> int:
    """No terminal: one session, narrated."""
    station = await _start(config_path, state_dir, status_page)
    view = View(station)
    world = station.world
    key = "2" if "2" in view.cards else "1"
    card, label = view.cards[key]

    async def plug(plugged: bool) -> None:
        world.plug(plugged)
        await asyncio.sleep(0.5)

    try:
        steps = []
        if view.has_plug:
            steps.append(("The driver plugs in the car", lambda: plug(True)))
        steps += [
            (f"The driver taps card {label if label.startswith(card) else f'{card} ({label})'}", lambda: world.tap(card)),
            ("The car draws 7.4 kW for a few seconds", lambda: asyncio.sleep(3.5)),
            ("The car has charged 1.5 kWh more (meter register advanced)", lambda: _consume(station, 1500)),
            ("The driver taps the same card again", lambda: world.tap(card)),
        ]
        if view.has_plug:
            steps.append(("The driver unplugs the car", lambda: plug(False)))
        steps.append(("The session is delivered to the backend", lambda: station.flush(10.0)))
        world.set_load(7400.0)
        print(render(station, color=False, view=view), end="\n\n", flush=True)
        for text, action in steps:
            print(f"== {text}", flush=True)
            await action()
            await asyncio.sleep(0.3)
            print(render(station, color=False, view=view), end="\n\n", flush=True)
        sessions = station.store.sessions()
        if sessions:
            s = sessions[-1]
            print(f"Session {s.id}: {s.id_tag}, {s.energy_wh} Wh ({s.meter_start_wh} -> {s.meter_stop_wh} Wh), "
                  f"{'delivered' if s.extra.get('delivered') else 'NOT delivered'}. "
                  f"Run it interactively in a terminal: station simulate")
        return 0
    finally:
        await station.stop()


async def _consume(station, wh: int) -> None:
    station.world.consume(wh)
    await asyncio.sleep(1.2)


class _Keys:
    """Reads single keys from the terminal in a thread (cbreak mode, restored on exit)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._loop = loop
        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        self._stop = threading.Event()
        tty.setcbreak(self._fd)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if ready:
                key = os.read(self._fd, 1).decode(errors="replace")
                self._loop.call_soon_threadsafe(self.queue.put_nowait, key)

    def close(self) -> None:
        self._stop.set()
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)


async def _interactive(config_path: str | None, state_dir: str | None, status_page: str | None = None) -> int:
    station = await _start(config_path, state_dir, status_page)
    view = View(station)
    keys = _Keys(asyncio.get_running_loop())
    tasks: set[asyncio.Task] = set()
    try:
        while True:
            sys.stdout.write("\x1b[H\x1b[2J" + render(station, view=view) + "\n\n" + view.help() + "\n"
                             + (view.message + "\n" if view.message else ""))
            sys.stdout.flush()
            try:
                async with asyncio.timeout(0.5):  # redraw twice a second (asyncio.timeout: see delivery.py)
                    key = await keys.queue.get()
            except TimeoutError:
                continue
            if key in ("q", "\x04"):
                break
            view.message = await press(station, view, key, tasks)
    finally:
        keys.close()
        await station.stop()
    return 0


async def press(station, view: View, key: str, tasks: set[asyncio.Task]) -> str:
    """Act on one key; returns a line for the user when the key does nothing here."""
    world = station.world

    def background(coro) -> None:
        # Owned by the station's supervisor like every other task: a failure is logged, never lost.
        t = station.supervisor.spawn(coro, f"key {key}")
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    if key in view.cards:
        background(world.tap(view.cards[key][0], wait=False))
    elif key == "p":
        if not view.has_plug:
            return "p: this config has no plug sensor (inputs.ev_connected_pin / sim.ev_connected_input)"
        world.plug(not world.plugged)
    elif key == "s":
        if not view.has_stop:
            return "s: this config has no stop button (inputs.stop_button_pin / sim.stop_button_input)"
        background(world.press_stop())
    elif key == "+":
        world.set_load(min(22000.0, world.load_w + 1000.0))
    elif key == "-":
        world.set_load(max(0.0, world.load_w - 1000.0))
    elif key == "b":
        await world.backend_link(not world.backend_up)
    elif key and key in "avdfhr":
        if not view.has_pilot:
            return f"{key}: the car's keys need an emulated charge controller ([controller] model)"
        car = world.car
        if key == "a":
            world.car_asleep(not car.asleep)
        elif key == "v":
            world.car_ventilation(not car.ventilation)
        elif key == "d":
            world.car_diode_fault(not car.diode_fault)
        elif key == "f":
            world.car_full(not car.full)
        elif key == "h":
            world.car_phases(1 if car.phases == 3 else 3)
        elif world.controller.rcd_tripped:
            world.controller.clear_rcd()
        else:
            world.inject("rcd-tripped")
    return ""
