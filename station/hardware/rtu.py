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
"""

from __future__ import annotations

import errno
import os

from station.errors import MeterError

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


def classify_reply(data: bytes, address: int, function_code: int, count: int) -> str:
    """What the received bytes are, for a read of `count` registers from `address`:

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
        size = 5 + 2 * count
        if len(data) >= 3 and data[2] != 2 * count:
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


def port_error(port: str, exc: BaseException | None) -> MeterError:
    """The MeterError for a port that cannot be opened, with the OS error and a hint."""
    err = errno_of(exc)
    if err is not None:
        name = errno.errorcode.get(err, str(err))
        text = f"{os.strerror(err)} ({name})"
    else:
        text = str(exc) if exc is not None else "cannot open"
    return MeterError(f"meter port {port}: cannot open: {text}", kind="port", hint=port_hint(port, err))


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


def apply_rs485(port: str, serial_port: object, settings: object) -> None:
    """Put a pyserial port into kernel RS-485 mode, or raise MeterError saying why not."""
    try:
        serial_port.rs485_mode = settings  # type: ignore[attr-defined]
    except (ValueError, NotImplementedError, OSError) as exc:
        raise MeterError(
            f"meter port {port}: RS-485 direction control (RTS) not available: {exc}",
            kind="port",
            hint="this adapter or UART driver has no kernel RS-485 mode; use an adapter with automatic "
            "direction control and set meter.rs485_rts = false",
        ) from exc
