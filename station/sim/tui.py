"""The interactive terminal view of `station simulate`.

It shows what a person at the station would see (the LCD, the LEDs, the
contactor) beside what only the simulator knows (meter power and energy,
the connector state, the backend link, recent events), and takes keys to
play the driver and the car. Without a terminal (stdin not a TTY, e.g. in
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

from station.sim.demo import DEMO_TAGS, UNKNOWN_TAG

CARDS = {"1": "D64FC93B", "2": "04A2B3C4D5E6F7", "3": "16AC936B1692E73A", "4": UNKNOWN_TAG}
HELP = ("keys: 1-3 tap a registered card, 4 an unknown card, p plug/unplug, s stop button, "
        "+/- load, b backend down/up, q quit")
LED_GLYPH = {"green": "\x1b[32m●\x1b[0m", "yellow": "\x1b[33m●\x1b[0m", "red": "\x1b[31m●\x1b[0m", "blue": "\x1b[34m●\x1b[0m"}


def render(station, color: bool = True) -> str:
    """The view as text (also used by tests and the headless demo)."""
    ch, world = station.charger, station.world
    lcd = world.lcd_text()
    width = max((len(line) for line in lcd), default=16)
    leds = station.hardware.leds
    lit = sorted(getattr(leds, "lit", frozenset()))
    led_text = " ".join((LED_GLYPH.get(c, c) if color else c) for c in lit) or "(off)"
    session = ch.session
    lines = [
        f"station {station.config.station.name} ({station.config.meter.model} meter, {station.config.backend.kind} backend)",
        "+" + "-" * (width + 2) + "+",
        *[f"| {line:<{width}} |" for line in lcd],
        "+" + "-" * (width + 2) + "+",
        f"state      {ch.state.value}{'  [' + ', '.join(f.text for f in ch.faults.values()) + ']' if ch.faults else ''}",
        f"LEDs       {led_text}   ({leds.pattern.value if hasattr(leds, 'pattern') else ''})",
        f"contactor  {'CLOSED' if world.contactor_closed else 'open'}",
        f"car        {'plugged in' if world.plugged else 'not plugged'}, load {world.meter.load_w / 1000:.1f} kW",
        f"meter      {world.power_w / 1000:.2f} kW, register {world.meter_wh} Wh",
        f"session    {session.id_tag + ' since ' + str(session.meter_start_wh) + ' Wh' if session else '-'}",
        f"backend    {'online' if ch.online else 'OFFLINE'}, {station.store.pending_messages()} message(s) queued",
        "recent:",
        *[f"  {event}" for event in ch.recent[-6:]],
    ]
    return "\n".join(lines)


def run_interactive(config_path: str | None, state_dir: str | None) -> int:
    if not sys.stdin.isatty():
        return asyncio.run(_demo(config_path, state_dir))
    return asyncio.run(_interactive(config_path, state_dir))


async def _start(config_path: str | None, state_dir: str | None):
    from station.daemon import Station
    from station.sim.demo import prepare

    config, embedded = await prepare(config_path, state_dir)
    station = Station(config, embedded=embedded)
    await station.start()
    return station


async def _demo(config_path: str | None, state_dir: str | None) -> int:
    """No terminal: one session, narrated."""
    station = await _start(config_path, state_dir)
    tag = next(iter(DEMO_TAGS))
    card = "D64FC93B"
    try:
        steps = [
            (f"A driver taps card {card} ({DEMO_TAGS.get(card) or DEMO_TAGS[tag]})", lambda: station.world.tap(card)),
            ("The car draws 7.4 kW for a few seconds", lambda: asyncio.sleep(3.5)),
            ("The car has charged 1.5 kWh more (meter register advanced)", lambda: _consume(station, 1500)),
            ("The driver taps the same card again", lambda: station.world.tap(card)),
            ("The session is delivered to the backend", lambda: station.flush(10.0)),
        ]
        station.world.set_load(7400.0)
        print(render(station, color=False), end="\n\n", flush=True)
        for text, action in steps:
            print(f"== {text}", flush=True)
            await action()
            await asyncio.sleep(0.3)
            print(render(station, color=False), end="\n\n", flush=True)
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


async def _interactive(config_path: str | None, state_dir: str | None) -> int:
    station = await _start(config_path, state_dir)
    keys = _Keys(asyncio.get_running_loop())
    world = station.world
    tasks: set[asyncio.Task] = set()
    try:
        while True:
            sys.stdout.write("\x1b[H\x1b[2J" + render(station) + "\n\n" + HELP + "\n")
            sys.stdout.flush()
            try:
                key = await asyncio.wait_for(keys.queue.get(), 0.5)
            except TimeoutError:
                continue
            if key in ("q", "\x04"):
                break
            if key in CARDS:
                t = asyncio.create_task(world.tap(CARDS[key], wait=False))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            elif key == "p":
                world.plug(not world.plugged)
            elif key == "s" and world.pins.stop is not None:
                t = asyncio.create_task(world.press_stop())
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            elif key == "+":
                world.set_load(min(22000.0, world.meter.load_w + 1000.0))
            elif key == "-":
                world.set_load(max(0.0, world.meter.load_w - 1000.0))
            elif key == "b":
                await world.backend_link(not world.backend_up)
    finally:
        keys.close()
        await station.stop()
    return 0
