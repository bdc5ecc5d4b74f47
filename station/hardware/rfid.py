"""The MFRC522 card reader: the `RfidReader` port on top of the `mfrc522` package.

Theory of operation
-------------------
Initialisation is the library's (`mfrc522.MFRC522`, 0.0.7): it opens the
SPI device, drives the reset pin high, soft-resets the chip, sets the
timer, the modulation and the antenna. Three of its traps are avoided
(see docs/hardware.md, "MFRC522"): the reset pin is always passed explicitly (without it the
library takes BCM 15, the UART RX of an RS-485 meter link, once anything
set BCM numbering); `Close_MFRC522()` is never called because it calls a
global `GPIO.cleanup()` that would release the contactor pin (we close the
SPI device only); and the log handler the library adds on every instance
is removed again (it duplicates every log line).

Polling is ours, not the library's. The library's wait loop spins up to
2000 CommIrqReg reads per empty poll (a CPU core on a Pi Zero) and never
halts the card, so a card left on the reader answers only every second
request. Instead, per poll:

    CommandReg <- Idle; CommIrqReg <- clear all; FIFOLevelReg <- flush
    FIFODataReg <- WUPA 0x52; CommandReg <- Transceive
    BitFramingReg <- StartSend | 7 bits            (6 single writes)
    sleep 0.5 ms; read CommIrqReg, ErrorReg, FIFOLevelReg, ControlReg,
    VersionReg in one burst; if neither RxIRq nor TimerIRq: sleep for the
    timer (5 ms, TAuto set once at init) and read again

so an empty poll costs 7 SPI transactions against the instant emulator and
8 on a real chip, with the chip's health (VersionReg) checked for free.
When a card answers, the poll reads its UID: ANTICOLL and SELECT per
cascade level (SAK bit 2 says another level follows: 4-, 7- and 10-byte
UIDs), CRC_A computed here rather than by the chip's coprocessor, then
HLTA. Burst writes put a whole frame into the FIFO in one transaction.
WUPA (not REQA) wakes a halted card, so a card held on the reader answers
every poll: presence is seen, not guessed.

Debounce: the first sighting of a UID is a tap. The UID stays "present"
while it keeps being seen; it has left once it was unseen for `absent_s`
*and* at least two completed polls did not see it (so a worker thread
starved on a busy machine does not turn a held card into two taps). Only
then is its next sighting a new tap. A poll where a card answered but its
UID could not be read (two cards at once, a card leaving mid-read) says
nothing about presence and counts as neither.

Faults: the SPI device missing, VersionReg reading 0x00/0xFF (module
unplugged or unpowered), a configuration that does not read back, or a
timer that never fires raise ReaderError inside the worker; it reports
`on_fault(text)` once, closes the device, and retries every
`fault_retry_s`; the first good poll after that reports `on_fault(None)`.
The worker never dies on an exception: callback errors are logged too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from station import privacy
from station.core.tags import format_uid
from station.errors import ReaderError

log = logging.getLogger(__name__)

# MFRC522 registers and bits used here (datasheet section 9)
_COMMAND, _COMM_IRQ, _ERROR, _FIFO_DATA, _FIFO_LEVEL = 0x01, 0x04, 0x06, 0x09, 0x0A
_CONTROL, _BIT_FRAMING, _TX_CONTROL = 0x0C, 0x0D, 0x14
_T_MODE, _T_PRESCALER, _T_RELOAD_H, _T_RELOAD_L, _VERSION = 0x2A, 0x2B, 0x2C, 0x2D, 0x37
_RF_CFG = 0x26  # RFCfgReg: bits 6-4 RxGain, the receiver's voltage gain (datasheet 9.3.3.6)
_CMD_IDLE, _CMD_TRANSCEIVE = 0x00, 0x0C
_TX_IRQ, _RX_IRQ, _TIMER_IRQ = 0x40, 0x20, 0x01
_ERRORS = 0x1B  # BufferOvfl, CollErr, ParityErr, ProtocolErr
_START_SEND = 0x80

# Timer: 13.56 MHz / (2 * 169 + 1) = 40 kHz, 25 us per tick; 201 ticks = 5 ms.
# A card answers WUPA, ANTICOLL or SELECT within about 0.1 ms; 5 ms is ample
# and bounds the time an empty poll waits.
_T_MODE_VALUE = 0x80  # TAuto: the timer starts at the end of every transmission
_T_PRESCALER_VALUE = 0xA9
_T_RELOAD = 200
_TIMER_S = (_T_RELOAD + 1) * (2 * _T_PRESCALER_VALUE + 1) / 13_560_000
_ANSWER_WAIT_S = 0.0005  # an answer is in after ~0.1 ms of air time; look once after this
_GIVE_UP_S = 0.25  # no interrupt at all after this long: the chip is not working

# ISO 14443A
_WUPA, _HLTA = 0x52, 0x50
_SEL = (0x93, 0x95, 0x97)
_CASCADE_TAG = 0x88
_MIN_MISSES = 2

# RxGain codes (RFCfgReg bits 6-4) by gain in dB; 010 and 011 repeat 18 and 23 dB. The reset value
# 0x48 is 33 dB. Clone modules with a weak antenna often read only at 43 or 48 dB.
RX_GAIN_CODES: dict[int, int] = {18: 0b000, 23: 0b001, 33: 0b100, 38: 0b101, 43: 0b110, 48: 0b111}
GAINS_DB: tuple[int, ...] = tuple(RX_GAIN_CODES)
SPI_MAX_HZ = 10_000_000  # "SPI ... up to 10 Mbit/s" (datasheet 8.1.2)


def _crc_a(data: bytes) -> bytes:
    """CRC_A (ISO 14443-3, preset 0x6363), low byte first, ready to append."""
    crc = 0x6363
    for byte in data:
        byte ^= crc & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = ((crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)) & 0xFFFF
    return bytes([crc & 0xFF, crc >> 8])


class _Unreadable(Exception):
    """A card answered but the exchange failed (collision, a card leaving, a bad check byte)."""


@dataclass
class _Seen:
    last: float
    misses: int = 0


class TapDebouncer:
    """Turns a stream of poll results into taps (the rule is in the module docstring).

    `update(uid, now)` takes one completed poll's result (a UID, None for no
    card, b"" for an unreadable card) and returns the UID when it is a new
    tap, else None. Pure: the clock is passed in.
    """

    def __init__(self, absent_s: float, min_misses: int = _MIN_MISSES) -> None:
        self.absent_s = absent_s
        self.min_misses = min_misses
        self._present: dict[bytes, _Seen] = {}

    @property
    def present(self) -> list[bytes]:
        """UIDs currently considered on the reader."""
        return list(self._present)

    def update(self, uid: bytes | None, now: float) -> bytes | None:
        if uid == b"":
            return None  # a card is there but unreadable: no news about presence
        for known, seen in list(self._present.items()):
            if known == uid:
                continue
            seen.misses += 1
            if seen.misses >= self.min_misses and now - seen.last >= self.absent_s:
                del self._present[known]
        if uid is None:
            return None
        found = self._present.get(uid)
        if found is not None:
            found.last, found.misses = now, 0
            return None
        self._present[uid] = _Seen(now)
        return uid


class Mfrc522Reader:
    """The `RfidReader` port for an MFRC522 on SPI.

    `start(on_tap, on_fault)` polls in a daemon thread; `stop()` joins it and
    closes the SPI device (never GPIO.cleanup()). For synchronous use (tests,
    tools), `open()`, `poll()` and `close()` work without the thread; do not
    mix the two at the same time.
    """

    def __init__(
        self,
        bus: int = 0,
        device: int = 0,
        reset_pin: int = 25,
        poll_interval_s: float = 0.1,
        absent_s: float = 0.6,
        *,
        fault_retry_s: float = 1.0,
        spi_speed_hz: int = 1_000_000,
        antenna_gain_db: int = 33,
    ) -> None:
        if reset_pin is None or reset_pin < 0:
            raise ValueError("the MFRC522 reset pin must be given explicitly (BCM number)")
        if antenna_gain_db not in RX_GAIN_CODES:
            raise ValueError(f"MFRC522 receiver gain must be one of {GAINS_DB} dB, got {antenna_gain_db}")
        if not 0 < spi_speed_hz <= SPI_MAX_HZ:
            raise ValueError(f"MFRC522 SPI speed must be at most {SPI_MAX_HZ} Hz, got {spi_speed_hz}")
        self.antenna_gain_db = antenna_gain_db
        self.bus, self.device, self.reset_pin = bus, device, reset_pin
        self.poll_interval_s = poll_interval_s
        self.absent_s = absent_s
        self.fault_retry_s = fault_retry_s
        self.spi_speed_hz = spi_speed_hz
        self.version: int | None = None  # VersionReg at the last init (0x91/0x92 genuine, 0x88/0xB2 clones)
        self.polls = 0  # completed polls of the worker
        self.last_atqa: bytes | None = None
        self.last_sak: int | None = None
        self._lib: Any = None  # the mfrc522.MFRC522 instance while open
        self._spi: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._fault: str | None = None
        self._debouncer = TapDebouncer(absent_s)
        self._on_tap: Callable[[bytes], None] = lambda uid: None
        self._on_fault: Callable[[str | None], None] = lambda text: None
        self._on_beat: Callable[[], None] = lambda: None

    # --- the port ------------------------------------------------------------------------

    def start(self, on_tap: Callable[[bytes], None], on_fault: Callable[[str | None], None],
              on_beat: Callable[[], None] = lambda: None) -> None:
        if self._thread is not None:
            raise RuntimeError("reader already started")
        self._on_tap, self._on_fault, self._on_beat = on_tap, on_fault, on_beat
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"rfid-spi{self.bus}.{self.device}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("RFID worker did not stop within %.1f s", timeout)
        self.close()

    def alive(self) -> bool:
        """The worker thread runs (the supervisor asks: a dead reader must not go unnoticed)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def fault(self) -> str | None:
        """The fault currently reported, None when the reader works."""
        return self._fault

    # --- synchronous use ----------------------------------------------------------------

    def open(self) -> None:
        """Initialise the chip through the library (idempotent). Raises on failure."""
        if self._lib is not None:
            return
        import RPi.GPIO as GPIO  # bound here: in sim mode the fake is installed by then
        try:
            from mfrc522 import MFRC522
        except ModuleNotFoundError as exc:
            if exc.name != "mfrc522":
                raise
            # pip cannot install it with the extras (setup.cfg says why): say how.
            raise ReaderError("the mfrc522 library is not installed: pip install --no-deps mfrc522==0.0.7 "
                              "(README.md, Installing by hand)") from None

        mode = GPIO.getmode()
        if mode not in (None, GPIO.BCM):
            raise ReaderError("GPIO numbering is BOARD, but station numbers pins BCM")
        logger = logging.getLogger("mfrc522Logger")
        handlers = list(logger.handlers)
        lib = MFRC522.__new__(MFRC522)
        try:
            # pin_rst explicit: never the library's default (BCM 15, the UART RX).
            lib.__init__(bus=self.bus, device=self.device, spd=self.spi_speed_hz, pin_mode=GPIO.BCM, pin_rst=self.reset_pin)
        except BaseException:
            spi = getattr(lib, "spi", None)
            if spi is not None:
                spi.close()
            raise
        finally:
            for handler in logger.handlers[:]:
                if handler not in handlers:  # 0.0.7 adds one per instance: duplicated lines
                    logger.removeHandler(handler)
        self._lib, self._spi = lib, lib.spi
        try:
            self._configure()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the SPI device. Never GPIO.cleanup(): that would release every pin of the process."""
        spi, self._spi, self._lib = self._spi, None, None
        if spi is not None:
            try:
                spi.close()
            except OSError:
                pass

    def poll(self) -> bytes | None:
        """One poll: the UID of the card in the field, None if there is none.

        Returns b"" when a card answered but its UID could not be read (two
        cards at once, a card leaving mid-read). Raises ReaderError when the
        chip does not work.
        """
        self.open()
        atqa = self._transceive(bytes([_WUPA]), 7)
        if atqa is None:
            return None
        try:
            if len(atqa[0]) != 2:
                raise _Unreadable(f"ATQA of {len(atqa[0])} bytes")
            uid, sak = self._select()
            self._halt()
        except _Unreadable as exc:
            log.debug("card unreadable: %s", exc)
            return b""
        self.last_atqa, self.last_sak = atqa[0], sak
        return uid

    # --- chip access -----------------------------------------------------------------

    def _write(self, reg: int, *values: int) -> None:
        self._spi.xfer2([(reg << 1) & 0x7E, *values])

    def _read(self, *regs: int) -> list[int]:
        answer = self._spi.xfer2([((reg << 1) & 0x7E) | 0x80 for reg in regs] + [0])
        return list(answer[1:])

    def _configure(self) -> None:
        """Our timer and receiver gain on top of the library's init, then check that the chip took them."""
        self._write(_T_MODE, _T_MODE_VALUE)
        self._write(_T_PRESCALER, _T_PRESCALER_VALUE)
        self._write(_T_RELOAD_H, _T_RELOAD >> 8)
        self._write(_T_RELOAD_L, _T_RELOAD & 0xFF)
        self._set_gain(self.antenna_gain_db)
        version, t_mode, prescaler, reload_l, tx_control, rf_cfg = self._read(
            _VERSION, _T_MODE, _T_PRESCALER, _T_RELOAD_L, _TX_CONTROL, _RF_CFG)
        self._check_version(version)
        timer = (t_mode, prescaler, reload_l) == (_T_MODE_VALUE, _T_PRESCALER_VALUE, _T_RELOAD & 0xFF)
        if not timer or tx_control & 0x03 != 0x03 or (rf_cfg >> 4) & 0x07 != RX_GAIN_CODES[self.antenna_gain_db]:
            raise ReaderError(
                f"MFRC522 on SPI {self.bus}.{self.device} did not take its configuration "
                f"(TModeReg 0x{t_mode:02X}, TxControlReg 0x{tx_control:02X}, RFCfgReg 0x{rf_cfg:02X}): check the wiring"
            )
        if self.version != version:
            log.info("MFRC522 on SPI %d.%d, version 0x%02X", self.bus, self.device, version)
        self.version = version

    def set_gain(self, gain_db: int) -> None:
        """Change the receiver gain now (`station rfid read --scan-gain` tries each)."""
        if gain_db not in RX_GAIN_CODES:
            raise ValueError(f"MFRC522 receiver gain must be one of {GAINS_DB} dB, got {gain_db}")
        self.antenna_gain_db = gain_db
        if self._lib is not None:
            self._set_gain(gain_db)

    def _set_gain(self, gain_db: int) -> None:
        """RxGain through the library's own register access (Read_/Write_MFRC522), keeping the
        register's reserved bits (7 and 3-0) as the chip has them."""
        lib = self._lib
        rf_cfg = lib.Read_MFRC522(lib.RFCfgReg)
        lib.Write_MFRC522(lib.RFCfgReg, (rf_cfg & 0x8F) | RX_GAIN_CODES[gain_db] << 4)

    def _check_version(self, version: int) -> None:
        if version in (0x00, 0xFF):
            raise ReaderError(
                f"MFRC522 on SPI {self.bus}.{self.device} does not answer (VersionReg 0x{version:02X}): "
                "check wiring and power"
            )

    def _start(self, frame: bytes, tx_last_bits: int) -> None:
        self._write(_COMMAND, _CMD_IDLE)  # end whatever ran before
        self._write(_COMM_IRQ, 0x7F)  # bit 7 clear: clear every interrupt bit
        self._write(_FIFO_LEVEL, 0x80)  # flush
        self._write(_FIFO_DATA, *frame)  # burst write: the whole frame in one transaction
        self._write(_COMMAND, _CMD_TRANSCEIVE)
        self._write(_BIT_FRAMING, _START_SEND | tx_last_bits)

    def _transceive(self, frame: bytes, tx_last_bits: int = 0) -> tuple[bytes, int] | None:
        """Send a frame; (answer, valid bits of its last byte, 0 = 8) or None if no card answered."""
        self._start(frame, tx_last_bits)
        began = time.monotonic()
        time.sleep(_ANSWER_WAIT_S)
        while True:
            irq, error, level, control, version = self._read(_COMM_IRQ, _ERROR, _FIFO_LEVEL, _CONTROL, _VERSION)
            self._check_version(version)
            if irq & _RX_IRQ:
                break
            if irq & _TIMER_IRQ:
                return None
            if time.monotonic() - began > _GIVE_UP_S:
                raise ReaderError(
                    f"MFRC522 on SPI {self.bus}.{self.device} gives no interrupt (CommIrqReg 0x{irq:02X}): "
                    "chip reset or not working"
                )
            time.sleep(_TIMER_S if time.monotonic() - began < _TIMER_S else 0.001)
        if error & _ERRORS:
            raise _Unreadable(f"ErrorReg 0x{error:02X}")
        data = bytes(self._read(*[_FIFO_DATA] * level)) if level else b""
        return data, control & 0x07

    def _select(self) -> tuple[bytes, int]:
        """Anticollision and select through the cascade levels: (UID, final SAK)."""
        uid = b""
        for sel in _SEL:
            answer = self._transceive(bytes([sel, 0x20]))
            if answer is None or len(answer[0]) != 5 or answer[1]:
                raise _Unreadable(f"ANTICOLL {sel:02X}: {answer!r}")
            part = answer[0]
            if part[0] ^ part[1] ^ part[2] ^ part[3] != part[4]:
                raise _Unreadable(f"bad BCC in {part.hex()}")
            frame = bytes([sel, 0x70]) + part
            answer = self._transceive(frame + _crc_a(frame))
            if answer is None or len(answer[0]) != 3 or _crc_a(answer[0][:1]) != answer[0][1:]:
                raise _Unreadable(f"SELECT {sel:02X}: {answer!r}")
            sak = answer[0][0]
            if sak & 0x04:  # UID not complete: the next cascade level follows
                if part[0] != _CASCADE_TAG:
                    raise _Unreadable("SAK says cascade but no cascade tag")
                uid += part[1:4]
                continue
            return uid + part[:4], sak
        raise _Unreadable("more than three cascade levels")

    def _halt(self) -> None:
        """HLTA: the card sleeps until the next WUPA (so it answers every poll, no every-other quirk)."""
        frame = bytes([_HLTA, 0x00])
        self._start(frame + _crc_a(frame), 0)
        began = time.monotonic()
        time.sleep(_ANSWER_WAIT_S)
        # The card does not answer HLTA; wait only until the frame is out.
        while not self._read(_COMM_IRQ)[0] & _TX_IRQ:
            if time.monotonic() - began > _GIVE_UP_S:
                raise ReaderError(f"MFRC522 on SPI {self.bus}.{self.device} does not finish transmitting")
            time.sleep(0.001)

    # --- the worker ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._on_beat()
            try:
                self.open()
                uid = self.poll()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any failure
                self._report_fault(self.describe_fault(exc))
                self.close()
                self._stop.wait(self.fault_retry_s)
                continue
            self._report_fault(None)
            self.polls += 1
            try:
                self._debounce(uid, time.monotonic())
            except Exception:  # noqa: BLE001
                log.exception("RFID tap handler failed")
            self._stop.wait(self.poll_interval_s)

    def _debounce(self, uid: bytes | None, now: float) -> None:
        tapped = self._debouncer.update(uid, now)
        if tapped is not None:
            log.info("card tapped: %s", privacy.tag(format_uid(tapped)))
            self._on_tap(tapped)

    def _report_fault(self, text: str | None) -> None:
        if text == self._fault:
            return
        self._fault = text
        if text is None:
            log.info("RFID reader works again")
        else:
            log.warning("RFID reader fault: %s", text)
        try:
            self._on_fault(text)
        except Exception:  # noqa: BLE001
            log.exception("RFID fault handler failed")

    def describe_fault(self, exc: Exception) -> str:
        node = f"/dev/spidev{self.bus}.{self.device}"
        if isinstance(exc, FileNotFoundError):
            return f"no SPI device {node}: enable SPI (dtparam=spi=on in config.txt, or raspi-config)"
        if isinstance(exc, PermissionError):
            return f"no permission to open {node}: add the station user to the spi group"
        if isinstance(exc, ReaderError):
            return str(exc)
        return f"RFID reader on {node}: {type(exc).__name__}: {exc}"
