"""Modbus RTU on a serial line: frame timing, port errors, RS-485 direction control.

Theory of operation
-------------------
Timing. Modbus RTU marks the end of a frame by silence: "Modbus over serial
line, specification and implementation guide V1.02", 2.5.1.1, asks for at
least 3.5 character times between frames, and for baud rates above 19200 a
fixed 1.750 ms. A character is 1 start bit, 8 data bits, the parity bit (if
any) and 1 or 2 stop bits: at 9600 baud 8N1, 3.5 characters are 3.65 ms; at
19200 8N1 1.82 ms. pymodbus sends the next request as soon as the previous
reply is decoded (measured 0.1-0.6 ms later), so `ModbusMeter` waits for
`frame_silence_s()` (or the configured turnaround, if longer: some meters
need more time between requests than the specification says) after the last
byte it received before it sends again.

Bad CRC versus no reply. pymodbus drops a frame whose CRC is wrong and then
times out, as if nothing had come. `classify_reply()` looks at the bytes that
did arrive (pymodbus' `trace_packet` hook shows them) so the error can say
"a reply with a bad CRC" (noise, missing termination, two masters) or "bytes
that are no Modbus frame" (wrong baud rate or parity) instead of "no reply"
(wiring, address).

Port errors. pymodbus' `connect()` returns False and keeps the reason to
itself; `open_error()` opens the port once more with pyserial to get the OS
error back, and `port_error()` turns its errno into a hint that fits it.

RS-485 direction. Adapters without automatic direction control need RTS to
switch their driver on while the station transmits. `rs485_settings()` builds
pyserial's `serial.rs485.RS485Settings`; set on a port (`rs485_mode`), pyserial
hands them to the kernel (TIOCSRS485), which toggles RTS around each frame.

One bus, several devices. The kWh meter and the charge controller usually
share one RS-485 line: one master, one request at a time, and the 3.5-character
silence between *any* two frames on the line, whoever they were for. So the
line is an object of its own, `RtuBus` (below): one pymodbus client, one lock,
one clock of the last byte received. `ModbusMeter` and `ModbusController`
each send their requests through it (`RtuBus.call`); the port is opened once.
A failed request closes the client (a late reply must never be taken for the
answer to the next request, whichever device asks next); the next request
opens it again. `RtuBus.watch` sees every frame the station sends: tests use
it to prove what was, and was not, written.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from station.errors import MeterError, ModbusError

FIXED_SILENCE_S = 0.00175  # above 19200 baud (specification 2.5.1.1)


def char_bits(parity: str = "N", stopbits: int = 1) -> int:
    """Bits on the wire per character: start + 8 data + parity + stop."""
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


def frame_silence_s(baudrate: int, parity: str = "N", stopbits: int = 1) -> float:
    """The least silence between two frames (3.5 characters; 1.75 ms above 19200 baud)."""
    if baudrate > 19200:
        return FIXED_SILENCE_S
    return 3.5 * char_bits(parity, stopbits) / baudrate


def crc16(data: bytes) -> int:
    """The Modbus CRC-16 (polynomial 0xA001 reflected, preset 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    crc = crc16(frame)
    return frame + bytes((crc & 0xFF, crc >> 8))


def reply_size(function_code: int, count: int) -> int:
    """Bytes of a good RTU reply to a request of `count` registers or bits.

    Reads of registers (FC3, FC4): address, function, byte count, 2 per register, CRC.
    Reads of bits (FC1, FC2): one byte per 8 bits. Writes (FC5, FC6, FC15, FC16) echo
    address, function, 4 bytes and the CRC.
    """
    if function_code in (3, 4):
        return 5 + 2 * count
    if function_code in (1, 2):
        return 5 + (count + 7) // 8
    return 8


def classify_reply(data: bytes, address: int, function_code: int, count: int) -> str:
    """What the received bytes are, for a request of `count` registers (or bits) from `address`:

    "ok" (a whole frame with a good CRC), "crc" (a whole frame of the expected
    shape with a wrong CRC), "partial" (the start of such a frame), "garbled"
    (anything else). Only used to explain a failure, never to accept data.
    """
    if not data:
        return "partial"
    if data[0] != address:
        return "garbled"
    if len(data) < 2:
        return "partial"
    if data[1] == function_code:
        size = reply_size(function_code, count)
        if function_code in (1, 2, 3, 4) and len(data) >= 3 and data[2] != size - 5:
            return "garbled"
    elif data[1] == function_code | 0x80:
        size = 5
    else:
        return "garbled"
    if len(data) < size:
        return "partial"
    frame = data[:size]
    return "ok" if with_crc(frame[:-2]) == frame else "crc"


# -- the serial port --------------------------------------------------------------------------

_BUSY = {errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK}


def is_device(port: str) -> bool:
    """A device path (RTU on a local serial port), not a URL."""
    return "://" not in port


def port_hint(port: str, err: int | None) -> str:
    """What to check when `port` cannot be opened with OS error `err`."""
    if err == errno.ENOENT:
        return (
            f"no such device {port}: is the UART enabled (enable_uart=1 in config.txt) or the USB "
            "adapter plugged in? Prefer a stable name from /dev/serial/by-id/"
        )
    if err in (errno.EACCES, errno.EPERM):
        return f"permission denied on {port}: add the station's user to the 'dialout' group"
    if err in _BUSY:
        return (
            f"{port} is in use by another program: a serial console on the UART (remove "
            "console=serial0 from cmdline.txt), a getty, ModemManager or a second station process"
        )
    if err in (errno.ENXIO, errno.ENODEV, errno.EIO):
        return f"{port} exists but answers with an I/O error: a USB adapter that was unplugged or failed?"
    if err == errno.ENOTTY:
        return f"{port} is not a serial port"
    return f"check that {port} is the meter's serial port"


def open_error(port: str, baudrate: int, parity: str, stopbits: int) -> OSError | None:
    """Open `port` as pymodbus would (pyserial, exclusive) and return the OSError, or None.

    pyserial's SerialException is an OSError whose first argument is the errno.
    """
    import serial

    try:
        s = serial.Serial(port, baudrate=baudrate, parity=parity, stopbits=stopbits, exclusive=True, timeout=0)
    except OSError as exc:
        return exc
    except ValueError as exc:  # a parameter pyserial refuses
        return OSError(errno.EINVAL, str(exc))
    s.close()
    return None


def errno_of(exc: BaseException | None) -> int | None:
    if isinstance(exc, OSError):
        if exc.errno is not None:
            return exc.errno
        if exc.args and isinstance(exc.args[0], int):
            return exc.args[0]
    return None


def port_error(port: str, exc: BaseException | None, *, error: type[ModbusError] = MeterError,
               device: str = "meter") -> ModbusError:
    """The error (MeterError by default) for a port that cannot be opened, with the OS error and a hint."""
    err = errno_of(exc)
    if err is not None:
        name = errno.errorcode.get(err, str(err))
        text = f"{os.strerror(err)} ({name})"
    else:
        text = str(exc) if exc is not None else "cannot open"
    return error(f"{device} port {port}: cannot open: {text}", kind="port", hint=port_hint(port, err))


def rs485_settings(rts_level_for_tx: bool = True, delay_before_tx_s: float | None = None,
                   delay_before_rx_s: float | None = None) -> object:
    """pyserial's RS485Settings: RTS at `rts_level_for_tx` while sending, the other level while receiving."""
    from serial.rs485 import RS485Settings

    return RS485Settings(
        rts_level_for_tx=rts_level_for_tx,
        rts_level_for_rx=not rts_level_for_tx,
        loopback=False,
        delay_before_tx=delay_before_tx_s,
        delay_before_rx=delay_before_rx_s,
    )


def apply_rs485(port: str, serial_port: object, settings: object, *, error: type[ModbusError] = MeterError,
                device: str = "meter") -> None:
    """Put a pyserial port into kernel RS-485 mode, or raise the error (MeterError) saying why not."""
    try:
        serial_port.rs485_mode = settings  # type: ignore[attr-defined]
    except (ValueError, NotImplementedError, OSError) as exc:
        raise error(
            f"{device} port {port}: RS-485 direction control (RTS) not available: {exc}",
            kind="port",
            hint="this adapter or UART driver has no kernel RS-485 mode; use an adapter with automatic "
            "direction control and set meter.rs485_rts = false",
        ) from exc


# -- the bus -------------------------------------------------------------------------------------


class RtuBus:
    """One Modbus line (RTU on a serial port or a `socket://` gateway, or Modbus TCP), shared by
    every device on it: one client, one request at a time, the silence kept between all frames.

    The port string chooses the link as for the meter (docs/hardware.md 2): a device path,
    `socket://HOST:PORT` (RTU framing over TCP, through pymodbus' TCP client: pyserial's socket
    handler would block the loop for 0.3 s on close) or `tcp://HOST:PORT` (Modbus TCP).
    """

    def __init__(self, port: str, *, baudrate: int = 9600, parity: str = "N", stopbits: int = 1,
                 timeout_s: float = 0.5, retries: int = 0, turnaround_s: float = 0.0, rs485_rts: bool = False,
                 rs485_rts_level_for_tx: bool = True) -> None:
        if not 0 <= turnaround_s <= 1:
            raise ValueError(f"turnaround {turnaround_s} s out of range 0..1 s")
        self.port, self.baudrate, self.parity, self.stopbits = port, baudrate, parity, stopbits
        self.timeout_s, self.retries, self.turnaround_s = timeout_s, retries, float(turnaround_s)
        self.rs485_rts, self.rs485_rts_level_for_tx = rs485_rts, rs485_rts_level_for_tx
        self.client: Any = None  # pymodbus AsyncModbusSerialClient | AsyncModbusTcpClient, when open
        self.lock = asyncio.Lock()
        self.requests = 0  # requests sent on this line, by every device
        self.watch: Callable[[bytes], None] | None = None  # sees every frame sent (tests)
        self._last_rx = 0.0  # time.monotonic() of the last byte received
        self._rx_any = False  # bytes arrived since the last request was sent
        self._rx_bad_crc = False  # ... and among them a whole frame with a wrong CRC
        self._expect: tuple[int, int, int] | None = None  # (device id, function code, count) of the request out
        self._stats: Any = None  # the asking device's counters (requests, bytes_sent)

    @property
    def is_tcp(self) -> bool:
        """Modbus TCP: the gateway times the line itself."""
        return self.port.startswith("tcp://")

    @property
    def silence_s(self) -> float:
        """The silence kept between the end of a reply and the next request."""
        if self.is_tcp:
            return self.turnaround_s
        return max(frame_silence_s(self.baudrate, self.parity, self.stopbits), self.turnaround_s)

    # -- link --------------------------------------------------------------------------------
    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.requests += 1
            if self._stats is not None:
                self._stats.requests += 1
                self._stats.bytes_sent += len(data)
            if self.watch is not None:
                self.watch(bytes(data))
            self._rx_any = self._rx_bad_crc = False
            return data
        # pymodbus passes its whole receive buffer (all bytes not yet consumed)
        self._last_rx = time.monotonic()
        if data:
            self._rx_any = True
            if self._expect is not None and not self.is_tcp:
                if classify_reply(data, *self._expect) == "crc":
                    self._rx_bad_crc = True
        return data

    def _new_client(self, error: type[ModbusError], device: str) -> Any:
        from pymodbus import FramerType
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

        for scheme, framer in (("tcp://", FramerType.SOCKET), ("socket://", FramerType.RTU)):
            if self.port.startswith(scheme):
                u = urlsplit(self.port)
                if not u.hostname or not u.port:
                    raise error(f"{device} port {self.port!r}: expected {scheme}HOST:PORT", kind="port",
                                hint=f"write the port as {scheme}HOST:PORT")
                return AsyncModbusTcpClient(u.hostname, port=u.port, framer=framer, timeout=self.timeout_s,
                                            retries=self.retries, reconnect_delay=0, trace_packet=self._trace)
        return AsyncModbusSerialClient(self.port, framer=FramerType.RTU, baudrate=self.baudrate, parity=self.parity,
                                       stopbits=self.stopbits, bytesize=8, timeout=self.timeout_s,
                                       retries=self.retries, reconnect_delay=0, trace_packet=self._trace)

    async def connect(self, error: type[ModbusError] = MeterError, device: str = "meter") -> Any:
        """The open client (opened now if need be), or `error` of kind "port"."""
        if self.client is not None and self.client.connected:
            return self.client
        self.drop()
        client = self._new_client(error, device)
        try:
            ok = await client.connect()
        except Exception as exc:  # pyserial raises SerialException/ValueError for bad ports
            client.close()
            raise self._open_failure(exc, error, device) from exc
        if not ok:
            client.close()
            raise self._open_failure(None, error, device)
        if self.rs485_rts and is_device(self.port):
            try:
                apply_rs485(self.port, serial_port(client), rs485_settings(self.rs485_rts_level_for_tx),
                            error=error, device=device)
            except ModbusError:
                client.close()
                raise
        self.client = client
        return client

    def _open_failure(self, exc: BaseException | None, error: type[ModbusError], device: str) -> ModbusError:
        """pymodbus hides why a port did not open: ask the OS again, for the errno."""
        if is_device(self.port):
            if errno_of(exc) is None:
                exc = open_error(self.port, self.baudrate, self.parity, self.stopbits) or exc
            return port_error(self.port, exc, error=error, device=device)
        u = urlsplit(self.port)
        why = f": {exc}" if exc is not None else ""
        return error(f"{device} port {self.port}: cannot connect to {u.hostname}:{u.port}{why}", kind="port",
                     hint="check the gateway's host name, port and that it is powered and on the network")

    def drop(self) -> None:
        """Close the client; the next request opens it again (and so flushes late replies)."""
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # closing a broken link must not hide the original error
                pass
            self.client = None

    async def close(self) -> None:
        self.drop()

    async def _quiet(self) -> None:
        """Wait until the line has been silent long enough for the next request."""
        wait = self._last_rx + self.silence_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    # -- one request -----------------------------------------------------------------------------
    async def call(self, op: Callable[[Any], Awaitable[Any]], *, device_id: int, function_code: int, count: int,
                   what: str, request: str, error: type[ModbusError] = MeterError, device: str = "meter",
                   silence_hint: str = "", garbled_hint: str = "", stats: Any = None) -> Any:
        """Send one request, `await op(client)`, on a quiet line, and return pymodbus' response
        (an exception response too: the caller decides what it means).

        No answer raises `error` of kind "timeout", "crc" or "garbled", saying `what` ("meter
        SDM630 at address 1 on /dev/ttyUSB0") and `request` ("a read of 2 registers at 0x0048"),
        and closes the client.
        """
        from pymodbus.exceptions import ModbusException

        async with self.lock:
            client = await self.connect(error, device)
            await self._quiet()
            self._expect, self._stats = (device_id, function_code, count), stats
            try:
                return await op(client)
            except (TimeoutError, ModbusException, OSError) as exc:
                failure = self._no_answer(exc, what, request, error, silence_hint, garbled_hint)
                self.drop()
                raise failure from exc
            finally:
                self._expect = self._stats = None

    def _no_answer(self, exc: BaseException, what: str, request: str, error: type[ModbusError], silence_hint: str,
                   garbled_hint: str) -> ModbusError:
        name = exc.__class__.__name__
        if self._rx_bad_crc:
            return error(f"{what}: reply to {request} with a bad CRC ({name})", kind="crc",
                         hint="noise on the line: check the bus termination (120 ohm at both ends), the cable's "
                         "shield and ground, and that no second master talks on the bus")
        if self._rx_any:
            return error(f"{what}: bytes that are no Modbus reply to {request} ({name})", kind="garbled",
                         hint=garbled_hint or f"check baud rate {self.baudrate}, parity {self.parity} and stop bits "
                         f"{self.stopbits} against the device's settings")
        return error(f"{what}: no reply to {request} within {self.timeout_s:g} s ({name})", kind="timeout",
                     hint=silence_hint)


def serial_port(client: Any) -> object:
    """The pyserial port object under a connected pymodbus serial client."""
    return getattr(client.ctx.transport, "sync_serial", None)


def bus_setting(name: str) -> Any:
    """A property of a device that reads and writes its line's setting `name` (a change takes
    effect when the client is next opened)."""
    return property(lambda self: getattr(self.bus, name), lambda self, value: setattr(self.bus, name, value))
