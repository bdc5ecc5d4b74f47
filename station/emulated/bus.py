"""The emulated RS-485 line: one pymodbus RTU server answering for every device on it.

Theory of operation
-------------------
A real line carries the kWh meter and the charge controller on one pair of
wires; each answers only its own address, the others stay silent. `EmulatedBus`
is that line: one pymodbus server (`ModbusSerialServer` with RTU framing, or
`ModbusTcpServer` for Modbus TCP) on one link, and one `SimDevice` per attached
device at the device's address. pymodbus answers a request for an address no
device has from a catch-all device (id 0, as its simulator requires); the
server's `trace_packet` hook drops every reply not sent from an attached
address, so the bus stays silent for it, as a real one does (3.16.1 would send
exception code 4). Each device may also drop or spoil its own replies there
(`BusDevice.on_reply`: a meter gone silent, a reply with a bad CRC).

The link is one of

* `link="socket"`: RTU over TCP on 127.0.0.1, ephemeral port; the client port
  is `socket://127.0.0.1:PORT`;
* `link="tcp"`: Modbus TCP (MBAP framing), for the client's `tcp://` ports;
* `link="pty"`: two pseudo-terminal pairs bridged inside the event loop
  (`PtyBridge`); the client gets a real tty, as a USB RS-485 adapter would be.

Every write request that reaches the line, for any address and whether the
device accepts it or not, is appended to `writes` (device address, function
code, register or coil address, values), decoded by pymodbus' `trace_pdu`
hook: tests read it to prove which registers the station wrote, and with which
function code.

Construct inside a running event loop (pymodbus' server must be), attach the
devices, then `start()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger("station.sim.bus")

WRITE_FUNCTIONS = (5, 6, 15, 16)
Link = Literal["socket", "pty", "tcp"]


class BusDevice(Protocol):
    """A device on the emulated line."""

    address: int

    def simdevice(self) -> SimDevice:
        """Its registers, at its address (built once, when the bus starts)."""

    def on_reply(self, frame: bytes) -> bytes:
        """A reply about to leave for the station: return it, spoil it, or b"" for silence."""


@dataclass(frozen=True)
class Write:
    """One write request seen on the line (`at`: time.monotonic() when it arrived, for benchmarks)."""

    device: int
    function_code: int
    address: int
    values: tuple[int, ...]
    at: float = field(default=0.0, compare=False)


class PtyBridge:
    """Two pty pairs whose masters are joined by the event loop: A <-> B.

    `server_path` and `client_path` are the two slave devices (real ttys). Every
    chunk that crosses the bridge is passed to `tap(direction, data, t)` if set,
    with direction "to_server" or "to_client" and t = time.monotonic() when it
    was read: tests timestamp the frames on the wire with it. Our own handles on
    both slaves stay open so that the masters never see EIO (and never spin)
    while no client has its end open.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tap: Callable[[str, bytes, float], None] | None = None
        self.ma, self.sa = os.openpty()
        self.mb, self.sb = os.openpty()
        for fd in (self.ma, self.sa, self.mb, self.sb):
            tty.setraw(fd)
        for fd in (self.ma, self.mb):
            os.set_blocking(fd, False)
        self.server_path = os.ttyname(self.sa)
        self.client_path = os.ttyname(self.sb)
        loop.add_reader(self.ma, self._pump, self.ma, self.mb)
        loop.add_reader(self.mb, self._pump, self.mb, self.ma)

    def _pump(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO cannot happen while we hold the slaves; be safe anyway
            return
        if self.tap is not None:
            self.tap("to_client" if src == self.ma else "to_server", data, time.monotonic())
        try:
            os.write(dst, data)
        except OSError:
            pass  # a full tty buffer drops bytes, like a line with nobody listening

    def close(self) -> None:
        for fd in (self.ma, self.mb):
            self.loop.remove_reader(fd)
        for fd in (self.ma, self.sa, self.mb, self.sb):
            try:
                os.close(fd)
            except OSError:
                pass


class EmulatedBus:
    """One emulated Modbus line with the devices attached to it. Construct inside a running loop."""

    def __init__(self, link: Link = "socket", *, host: str = "127.0.0.1", tcp_port: int = 0,
                 baudrate: int = 9600, parity: str = "N") -> None:
        if link not in ("socket", "pty", "tcp"):
            raise ValueError(f"link must be 'socket', 'pty' or 'tcp', not {link!r}")
        self._loop = asyncio.get_running_loop()
        self.link: Link = link
        self.host, self.tcp_port, self.baudrate, self.parity = host, tcp_port, baudrate, parity
        self.devices: dict[int, BusDevice] = {}
        self.writes: list[Write] = []
        self.port = ""  # the client's port, set by start()
        self._bridge: PtyBridge | None = None
        self._server: ModbusSerialServer | ModbusTcpServer | None = None
        self._started = False

    def attach(self, device: BusDevice) -> None:
        if self._started:
            raise RuntimeError("attach the devices before the bus starts")
        if device.address in self.devices:
            raise ValueError(f"two devices at address {device.address} on one bus")
        self.devices[device.address] = device

    @property
    def bridge(self) -> PtyBridge | None:
        """The pty pair of `link="pty"` (its `tap` timestamps the frames on the wire)."""
        return self._bridge

    @property
    def started(self) -> bool:
        return self._started

    def _context(self) -> list[SimDevice]:
        devices = [d.simdevice() for d in self.devices.values()]
        # pymodbus answers unknown ids from id 0; its replies are dropped in _trace (silence).
        nothing = [SimData(0xFFF0, count=1, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        devices.append(SimDevice(id=0, simdata=(bits, list(bits), nothing, list(nothing))))
        return devices

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            return data
        unit = 6 if self.link == "tcp" else 0  # MBAP header: the unit id is byte 6
        device = self.devices.get(data[unit]) if len(data) > unit else None
        if device is None:
            return b""  # no device has that address: silence, as on a shared line
        return device.on_reply(data)

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        # A write is recorded as the request arrives, before the device applies it: a test that reads
        # the device's state after seeing the write here must wait for it.
        if not sending and getattr(pdu, "function_code", None) in WRITE_FUNCTIONS:
            values = getattr(pdu, "registers", None) or [int(b) for b in getattr(pdu, "bits", []) or []]
            self.writes.append(Write(int(pdu.dev_id), int(pdu.function_code), int(pdu.address), tuple(values),
                                     time.monotonic()))
        return pdu

    async def start(self) -> str:
        """Start serving; returns the port string for the client."""
        if self._started:
            return self.port
        context = self._context()
        if self.link == "tcp":
            self._server = ModbusTcpServer(context, framer=FramerType.SOCKET, address=(self.host, self.tcp_port),
                                           trace_packet=self._trace, trace_pdu=self._trace_pdu)
        else:
            if self.link == "socket":
                server_port = f"socket://{self.host}:{self.tcp_port}"
            else:
                self._bridge = PtyBridge(self._loop)
                server_port = self._bridge.server_path
            self._server = ModbusSerialServer(context, framer=FramerType.RTU, port=server_port,
                                              baudrate=self.baudrate, parity=self.parity, trace_packet=self._trace,
                                              trace_pdu=self._trace_pdu)
        await self._server.serve_forever(background=True)
        if self.link in ("socket", "tcp"):
            sock = self._server.transport.sockets[0]  # type: ignore[attr-defined]
            host, port = sock.getsockname()[:2]
            self.port = f"{self.link}://{host}:{port}"
        else:
            assert self._bridge is not None
            self.port = self._bridge.client_path
        self._started = True
        log.info("emulated RS-485 line on %s: addresses %s", self.port, sorted(self.devices))
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None
        self._started = False
