"""The emulated kWh meter: a real pymodbus RTU server serving a model's register map.

Theory of operation
-------------------
`EmulatedMeter` is a device on an emulated RS-485 line (station/emulated/
bus.py: pymodbus' `ModbusSerialServer` with RTU framing), so the station's
real `ModbusMeter` (pymodbus client) talks to it exactly as to a meter on
RS-485. Given a `bus`, it answers there at its address, beside the other
devices (the charge controller); without one it has a line of its own, made
from `link` ("socket": RTU over TCP on loopback, the client port
`socket://127.0.0.1:PORT`; "tcp": Modbus TCP; "pty": a pseudo-terminal pair,
a real tty as a USB RS-485 adapter would be).

Registers are built from the same `MeterModel` the client decodes with
(`models.encode`): the data store is pymodbus' simulator (`SimDevice` /
`SimData`, the 4-block form so that only the model's function code has
registers: a client using FC3 on an FC4 meter gets "illegal address", as
from the real one; writes are refused). `SimData` cannot compute values, so the device's
`action` hook (called by pymodbus for every request) first integrates the
load up to now (`tick`), then writes the current values into the register
block in place before pymodbus answers. Gaps inside a request group read 0.

Energy. The register holds integer Wh per phase (the total is their sum).
`set_load(W)` and `set_flowing(bool)` (the daemon wires flowing to the
contactor GPIO) make it grow with time: `tick()` integrates power x time in
joules per phase and moves only whole Wh into the register, keeping the
fraction, so nothing is lost between ticks. `advance(wh)` adds exactly `wh`
(the scenario's "consume" step). A model whose register counts in 0.01 or
0.1 kWh shows the floor of the exact count, as the real meter does.

Persistence. The energy counts live in `<state_dir>/sim-meter.json`,
written atomically (temporary file, fsync, rename, fsync of the directory)
*before* a new value becomes visible on the bus. So a restarted process,
even after SIGKILL, never shows a smaller register than was ever read:
a real meter keeps its register through a power cut.

Fault injection (tests and the scenario steps `meter-silent`, `meter-bad-crc`):
`set_fault("silent")` (the meter stops answering), `set_fault("bad-crc")`
(every reply leaves with its last CRC byte inverted: the client sees a reply
with a bad CRC, not silence; on Modbus TCP, which has no CRC, an undecodable
function code instead), `set_fault(None)` (healthy again); `fault` is the
current one. `set_dead(b)` and `set_garbage(b)` are the older spellings of the
same. `set_latency(s)` makes a slow meter, and `glitch_energy(wh, reads=1)`
shows a spurious energy value in the next reads (the "180 kWh, 5000 kWh,
180 kWh" case; not persisted). Requests for other device addresses get no
reply from the meter, as on a shared bus.

`ModbusSerialServer` must be constructed inside a running event loop, and
so must `EmulatedMeter`; call its methods from that loop's thread.
`follow_contactor(meter, pin, active_low)` wires `set_flowing` to the
emulated contactor output (station.emulated.fakegpio).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from station.emulated.bus import EmulatedBus, PtyBridge  # noqa: F401 - PtyBridge re-exported for tests
from station.hardware.meters.models import MeterModel, MeterValues, encode, get_model, registered_wh

log = logging.getLogger("station.sim.meter")

STATE_FILE = "sim-meter.json"
NOMINAL_V = 230.0
Fault = Literal["silent", "bad-crc"] | None
FAULTS: tuple[Fault, ...] = ("silent", "bad-crc", None)


class EmulatedMeter:
    """An emulated Modbus RTU kWh meter of one model. Construct inside a running loop."""

    def __init__(
        self,
        model: str | MeterModel = "SDM630",
        *,
        address: int = 1,
        state_dir: str | os.PathLike[str] | None = None,
        link: Literal["socket", "pty", "tcp"] = "socket",
        host: str = "127.0.0.1",
        tcp_port: int = 0,
        initial_wh: int = 0,
        voltage_v: float = NOMINAL_V,
        frequency_hz: float = 50.0,
        tick_s: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
        baudrate: int = 9600,
        parity: str = "N",
        bus: EmulatedBus | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.model: MeterModel = get_model(model) if isinstance(model, str) else model
        self.address = address
        self._own_bus = bus is None
        self.bus = bus or EmulatedBus(link, host=host, tcp_port=tcp_port, baudrate=baudrate, parity=parity)
        self.link = self.bus.link
        self._clock = clock
        self._tick_s = tick_s
        self._state_path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        # electrical state
        self.voltage_v = float(voltage_v)
        self.frequency_hz = float(frequency_hz)
        self.load_w = 0.0
        self.load_phases = self.model.phases
        self.flowing = False
        # energy: exact Wh per phase, plus the fraction not yet a whole Wh (joules)
        n = self.model.phases
        self._phase_wh = self._load_state(initial_wh)
        self._joules = [0.0] * n
        self._last_t = clock()
        self._visible = tuple(self._phase_wh)  # what the bus shows (persisted first)
        # fault injection
        self.fault: Fault = None
        self.latency_s = 0.0
        self._glitch: tuple[int, int] | None = None
        # counters (our address only)
        self.requests = 0  # read requests answered or deliberately not answered
        self.replies = 0  # frames actually sent
        self.reply_bytes = 0
        self.bus.attach(self)
        self.port: str = ""  # the client's port, set by start()
        self._ticker: asyncio.Task | None = None
        self._save()  # the file exists from the start

    # -- pymodbus data store ----------------------------------------------------------
    def simdevice(self) -> SimDevice:
        # Every register a full or a core read asks for (a real meter has the registers
        # between the model's fields too); neighbouring ranges are served as one block.
        spans: list[list[int]] = []
        for r in sorted({(r.address, r.end) for r in (*self.model.plan, *self.model.core_plan)}):
            if spans and r[0] <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], r[1])
            else:
                spans.append(list(r))
        regs = [SimData(a, count=e - a, values=0, datatype=DataType.REGISTERS) for a, e in spans]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        # The other function's block must not be empty (pymodbus needs one entry): a single
        # register far away from every map, so the model's addresses are illegal there.
        unused = [SimData(0xFFF0, count=1, values=0, datatype=DataType.REGISTERS)]
        if self.model.function_code == 4:
            blocks = (bits, list(bits), unused, regs)
        else:
            blocks = (bits, list(bits), regs, unused)
        return SimDevice(id=self.address, simdata=blocks, action=self._action)

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is not None:
            return ExcCodes.ILLEGAL_ADDRESS  # a read-only map
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        self.tick()
        values = self.values()
        e = self.model.energy
        if self._glitch is not None and address <= e.address < address + count:
            wh, left = self._glitch
            values.energy_wh = wh
            self._glitch = (wh, left - 1) if left > 1 else None
        words = encode(self.model, values)
        for a in range(address, address + count):
            w = words.get(a)
            if w is not None:
                registers[a - start_address] = w
        return None

    def on_reply(self, data: bytes) -> bytes:
        """A reply of ours about to leave (the bus drops other addresses' replies)."""
        self.requests += 1
        if self.fault == "silent":
            return b""
        if self.fault == "bad-crc":
            if self.link == "tcp":
                data = data[:7] + b"\x7f" + data[8:]  # an undefined function code: undecodable
            else:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])  # wrong CRC
        self.replies += 1
        self.reply_bytes += len(data)
        return data

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> str:
        """Start serving (its own line, or the shared one if not started yet); returns the client's port."""
        self.port = await self.bus.start()
        if self._tick_s:
            self._ticker = asyncio.create_task(self._tick_loop(self._tick_s), name="sim-meter tick")
        log.info("emulated %s at address %d on %s", self.model.name, self.address, self.port)
        return self.port

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        self.tick()
        if self._own_bus:
            await self.bus.stop()

    @property
    def bridge(self) -> PtyBridge | None:
        """The pty pair of `link="pty"` (its `tap` timestamps the frames on the wire)."""
        return self.bus.bridge

    async def __aenter__(self) -> EmulatedMeter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.tick()

    # -- the physics ---------------------------------------------------------------------
    def set_load(self, watts: float, phases: int | None = None) -> None:
        """The power the car draws while flowing, split evenly over `phases` (default all)."""
        if watts < 0:
            raise ValueError("load must not be negative")
        n = self.model.phases if phases is None else phases
        if not 1 <= n <= self.model.phases:
            raise ValueError(f"{self.model.name} has {self.model.phases} phase(s), not {n}")
        self.tick()
        self.load_w = float(watts)
        self.load_phases = n

    def set_flowing(self, flowing: bool) -> None:
        """Whether current flows (car connected, contactor closed)."""
        self.tick()
        self.flowing = bool(flowing)

    def advance(self, wh: int) -> None:
        """Add exactly `wh` Wh to the register (split over the loaded phases), now."""
        if int(wh) != wh or wh < 0:
            raise ValueError("advance() takes a whole, non-negative number of Wh")
        self.tick()
        n = self.load_phases
        base, rest = divmod(int(wh), n)
        for i in range(n):
            self._phase_wh[i] += base + (1 if i < rest else 0)
        self._commit()

    def tick(self, now: float | None = None) -> None:
        """Integrate the load up to `now` (default: the clock) into the register."""
        now = self._clock() if now is None else now
        dt = now - self._last_t
        self._last_t = now
        if dt <= 0 or not self.flowing or self.load_w <= 0:
            return
        per_phase = self.load_w / self.load_phases
        gained = False
        for i in range(self.load_phases):
            self._joules[i] += per_phase * dt
            whole = int(self._joules[i] // 3600)
            if whole:
                self._joules[i] -= whole * 3600
                self._phase_wh[i] += whole
                gained = True
        if gained:
            self._commit()

    def values(self) -> MeterValues:
        """What the meter measures now, as the bus shows it (energy as last persisted)."""
        n = self.model.phases
        p = self.load_w / self.load_phases if self.flowing else 0.0
        pp = tuple(p if i < self.load_phases else 0.0 for i in range(n))
        return MeterValues(
            energy_wh=sum(self._visible),
            energy_phase_wh=self._visible,
            power_w=sum(pp),
            power_phase_w=pp,
            voltage_v=(self.voltage_v,) * n,
            current_a=tuple(x / self.voltage_v for x in pp),
            frequency_hz=self.frequency_hz,
        )

    @property
    def energy_wh(self) -> int:
        """The exact energy count in Wh (visible on the bus)."""
        self.tick()
        return sum(self._visible)

    @property
    def register_wh(self) -> int:
        """The import register as a client decodes it (after the model's own rounding)."""
        return registered_wh(self.model, self.model.energy, self.energy_wh)

    @property
    def phase_wh(self) -> tuple[int, ...]:
        self.tick()
        return self._visible

    # -- fault injection -------------------------------------------------------------------
    def set_fault(self, fault: Fault) -> None:
        """"silent": no reply at all; "bad-crc": replies with a wrong CRC; None: healthy."""
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(map(repr, FAULTS))}, not {fault!r}")
        if fault != self.fault:
            log.info("emulated %s: fault %s", self.model.name, fault or "cleared")
        self.fault = fault

    @property
    def dead(self) -> bool:
        return self.fault == "silent"

    @property
    def garbage(self) -> bool:
        return self.fault == "bad-crc"

    def set_dead(self, dead: bool = True) -> None:
        """set_fault("silent"); False clears that fault only."""
        if dead:
            self.set_fault("silent")
        elif self.fault == "silent":
            self.set_fault(None)

    def set_garbage(self, garbage: bool = True) -> None:
        """set_fault("bad-crc"); False clears that fault only."""
        if garbage:
            self.set_fault("bad-crc")
        elif self.fault == "bad-crc":
            self.set_fault(None)

    def set_latency(self, seconds: float) -> None:
        self.latency_s = max(0.0, float(seconds))

    def glitch_energy(self, wh: int, reads: int = 1) -> None:
        """The next `reads` reads of the energy register show `wh` (not persisted)."""
        self._glitch = (int(wh), reads)

    # -- persistence -----------------------------------------------------------------------
    def _load_state(self, initial_wh: int) -> list[int]:
        n = self.model.phases
        if self._state_path is not None and self._state_path.exists():
            try:
                data = json.loads(self._state_path.read_text())
                phase = [int(x) for x in data["phase_wh"]]
                total = int(data["energy_wh"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise RuntimeError(f"{self._state_path}: unreadable emulated meter state: {exc}") from exc
            if len(phase) == n and sum(phase) == total:
                return phase
            initial_wh = total  # another model before: keep the total, split it anew
        base, rest = divmod(int(initial_wh), n)
        return [base + (1 if i < rest else 0) for i in range(n)]

    def _save(self) -> None:
        if self._state_path is None:
            return
        path = self._state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        doc = {"model": self.model.name, "energy_wh": sum(self._phase_wh), "phase_wh": self._phase_wh}
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _commit(self) -> None:
        """Persist, then publish: the bus never shows a count the file does not hold."""
        self._save()
        self._visible = tuple(self._phase_wh)


def follow_contactor(meter: EmulatedMeter, pin: int, active_low: bool = False) -> None:
    """Let current flow exactly while the emulated contactor output is closed.

    Hooks `station.emulated.fakegpio.on_output`: when the contactor pin changes, the
    meter's `set_flowing` follows (in the meter's event loop, also when the pin
    is driven from another thread).
    """
    import threading

    from station.emulated import fakegpio

    loop = meter._loop
    loop_thread = threading.get_ident()  # called from inside the loop, like the constructor

    def listener(changed_pin: int, level: int) -> None:
        if changed_pin != pin:
            return
        # A pin released to an input (GPIO.cleanup) drives the relay no more: open.
        closed = fakegpio.is_output(pin) and bool(level) != active_low
        if threading.get_ident() == loop_thread:
            meter.set_flowing(closed)
        else:
            loop.call_soon_threadsafe(meter.set_flowing, closed)

    fakegpio.on_output(listener)
    current = fakegpio.level(pin)
    if current is not None and fakegpio.is_output(pin):
        meter.set_flowing(bool(current) != active_low)


async def start_emulated_meter(model: str = "SDM630", **kwargs) -> EmulatedMeter:
    """Construct and start an emulated meter (inside the running loop); returns it."""
    meter = EmulatedMeter(model, **kwargs)
    await meter.start()
    return meter
