"""The MFRC522 RFID reader chip, emulated at register level, with ISO 14443A cards.

Attach an `MFRC522Chip` to the fake spidev (`fakespi.attach(0, 0, chip)`)
and the real `mfrc522` library, or our own reader, drives it exactly as it
would drive the chip on a Pi. Present cards with `present(uid)`,
`remove()` or `tap(uid)`.

Theory of operation
-------------------
SPI: each chip-select cycle (`transfer`) starts with an address byte
`(reg << 1) & 0x7E`, bit 7 set for a read. A write sends data bytes after
it, all into the same register (the datasheet's burst write: this is how
several bytes reach the FIFO in one transaction). A read sends one address
per byte and gets each register's value back one byte later; the last MOSI
byte (0x00) only clocks the final answer out.

Registers with behaviour (all others simply store what is written):

- CommandReg 0x01: Idle 0x0, CalcCRC 0x3 (CRC_A of the FIFO into
  CRCResultReg 0x21/0x22, DivIrqReg CRCIRq), Transmit 0x4, Transceive 0xC
  (waits for StartSend), MFAuthent 0xE, SoftReset 0xF.
- CommIrqReg 0x04 and DivIrqReg 0x05: bit 7 of a write selects set (1)
  or clear (0) of the other bits written as 1.
- ErrorReg 0x06 (read-only here: BufferOvfl when the 64-byte FIFO
  overflows), Status2Reg 0x08 bit 3 MFCrypto1On (set only by a successful
  MFAuthent, cleared by software), FIFODataReg 0x09 a queue, FIFOLevelReg
  0x0A (bit 7 flushes), ControlReg 0x0C bits 0-2 RxLastBits, BitFramingReg
  0x0D (bits 0-2 TxLastBits; writing bit 7 while the command is Transceive
  sends the FIFO as a frame), TxControlReg 0x14 bits 0-1 the antenna
  drivers (no field, no card), ModeReg 0x11 bits 0-1 the CRC preset
  (0x6363 for CRC_A), TModeReg 0x2A bit 7 TAuto with the timer prescaler
  and TReloadReg, VersionReg 0x37, RFCfgReg 0x26 bits 6-4 RxGain (the
  receiver's gain: 000 18 dB, 001 23, 010 18, 011 23, 100 33 (the reset
  value 0x48), 101 38, 110 43, 111 48 dB; NXP MFRC522 datasheet 9.3.3.6).
- A card's answer is heard only if the receiver's gain is at least the
  card's `min_gain_db` (a small or distant card, a clone module's weak
  antenna): otherwise the card still answers and changes state, but the
  chip hears nothing and the timer runs out, as on a real module.
- A frame a card answers: the answer goes to the FIFO, RxLastBits is
  set, CommIrqReg gets TxIRq and RxIRq, never TimerIRq (with TAuto the
  real timer stops when the answer starts). A frame nobody answers: TxIRq
  and, only if TAuto is set, TimerIRq (at once, or after the programmed
  timeout with `realtime_timer=True`). Without TAuto nothing ends the
  wait, as on the real chip.

Cards (the ISO 14443-3 state model, cascade levels, MIFARE Classic memory) are in
station/emulated/iso14443.py.

Thread safety: every SPI transaction and every card handle runs under one
lock, so a reader thread can poll while a test presents cards.
"""

from __future__ import annotations

import threading
import time

from station.emulated.iso14443 import (  # noqa: F401 - re-exported: tests and tools import them from here
    ACTIVE,
    HALT,
    IDLE,
    READY,
    Card,
    crc_a,
    with_crc,
)

# Registers
COMMAND, COMM_IEN, DIV_IEN, COMM_IRQ, DIV_IRQ, ERROR, STATUS1, STATUS2 = range(1, 9)
FIFO_DATA, FIFO_LEVEL, WATER_LEVEL, CONTROL, BIT_FRAMING, COLL = range(9, 15)
MODE, TX_MODE, RX_MODE, TX_CONTROL = 0x11, 0x12, 0x13, 0x14
CRC_RESULT_H, CRC_RESULT_L = 0x21, 0x22
RF_CFG = 0x26
RX_GAIN_DB = (18, 23, 18, 23, 33, 38, 43, 48)  # RFCfgReg bits 6-4
T_MODE, T_PRESCALER, T_RELOAD_H, T_RELOAD_L = 0x2A, 0x2B, 0x2C, 0x2D
VERSION = 0x37

# Commands
CMD_IDLE, CMD_MEM, CMD_RANDOM_ID, CMD_CALC_CRC, CMD_TRANSMIT = 0x0, 0x1, 0x2, 0x3, 0x4
CMD_NO_CHANGE, CMD_RECEIVE, CMD_TRANSCEIVE, CMD_MF_AUTHENT, CMD_SOFT_RESET = 0x7, 0x8, 0xC, 0xE, 0xF

# CommIrqReg bits
TX_IRQ, RX_IRQ, IDLE_IRQ, TIMER_IRQ = 0x40, 0x20, 0x10, 0x01
CRC_IRQ = 0x04  # DivIrqReg
BUFFER_OVFL = 0x10  # ErrorReg
MF_CRYPTO1_ON = 0x08  # Status2Reg

FIFO_SIZE = 64
CLOCK_HZ = 13_560_000

_RESET_VALUES = {
    COMMAND: 0x20, COMM_IEN: 0x80, COMM_IRQ: 0x14, STATUS1: 0x21, WATER_LEVEL: 0x08, CONTROL: 0x10,
    COLL: 0x80, MODE: 0x3F, TX_CONTROL: 0x80, 0x16: 0x10, 0x17: 0x84, 0x18: 0x84, 0x19: 0x4D,
    0x1C: 0x62, 0x1F: 0xEB, CRC_RESULT_H: 0xFF, CRC_RESULT_L: 0xFF, 0x24: 0x26, 0x26: 0x48,
    0x27: 0x88, 0x28: 0x20, 0x29: 0x20,
}


class MFRC522Chip:
    """The chip. `transfers` counts SPI transactions (each `transfer` call).

    Fault handles: `powered = False` makes the chip dead (MISO reads
    `miso_idle`, 0x00 by default; 0xFF models a pulled-up MISO), and
    `power_cycle()` is a power-on reset (all registers back to their reset
    values, as after a brown-out). With `reset_pin` set, the chip follows the
    emulated GPIO pin wired to NRSTPD: held in hard power-down while the pin
    is not driven high, reset when it goes high.
    """

    def __init__(self, version: int = 0x92, reset_pin: int | None = None, realtime_timer: bool = False) -> None:
        self._lock = threading.RLock()
        self.crash: BaseException | None = None
        self.version = version
        self.reset_pin = reset_pin
        self.realtime_timer = realtime_timer
        self.powered = True
        self.miso_idle = 0x00
        self.transfers = 0
        self._regs = bytearray(64)
        self._fifo = bytearray()
        self._crypto = False
        self._timer_deadline: float | None = None
        self._card: Card | None = None
        self._tap_until: float | None = None  # a tap() card leaves after this time once read
        self._in_reset = reset_pin is not None
        self._power_on_reset()

    # --- handles ------------------------------------------------------------------------

    def present(self, uid: bytes, sak: int = 0x08, blocks: list[bytes] | None = None,
                min_gain_db: int = 18) -> Card:
        """Put a card on the reader (replacing any other); it stays until remove(). Its answers
        are heard only with the receiver gain at `min_gain_db` or more."""
        card = Card(bytes(uid), sak=sak, blocks=[bytearray(b) for b in blocks] if blocks else [],
                    min_gain_db=min_gain_db)
        with self._lock:
            self._card, self._tap_until = card, None
        return card

    def present_card(self, card: Card) -> Card:
        """Put an existing Card (with its memory) on the reader."""
        card.power_off()
        with self._lock:
            self._card, self._tap_until = card, None
        return card

    def remove(self) -> Card | None:
        """Take the card away. Returns it."""
        with self._lock:
            card, self._card, self._tap_until = self._card, None, None
        if card is not None:
            card.power_off()
        return card

    def tap(self, uid: bytes, hold_s: float = 0.3, sak: int = 0x08, min_gain_db: int = 18) -> Card:
        """Present a card as a person taps it: it leaves by itself once a reader
        has read its whole UID and `hold_s` has passed (so a slow poller still sees it)."""
        card = self.present(uid, sak=sak, min_gain_db=min_gain_db)
        with self._lock:
            self._tap_until = time.monotonic() + hold_s
        return card

    @property
    def card(self) -> Card | None:
        with self._lock:
            self._end_tap()
            return self._card

    def power_cycle(self) -> None:
        """A power-on reset of the chip (registers to reset values; the card loses the field)."""
        with self._lock:
            self._power_on_reset()

    @property
    def rx_gain_db(self) -> int:
        """The receiver gain RFCfgReg selects now."""
        with self._lock:
            return RX_GAIN_DB[(self._regs[RF_CFG] >> 4) & 0x07]

    def register(self, reg: int) -> int:
        """Peek at a register without side effects (for tests)."""
        with self._lock:
            return self._regs[reg]

    # --- SPI -------------------------------------------------------------------------------

    def transfer(self, data: list[int]) -> list[int]:
        if self.crash is not None:
            # Fault injection (scenario step `reader-dead`): something the reader's worker does
            # not catch, so its thread dies, as a bug or a driver gone wrong would end it.
            raise self.crash
        with self._lock:
            self.transfers += 1
            self._end_tap()
            if not self._alive() or not data:
                return [self.miso_idle] * len(data)
            first = data[0]
            if first & 0x80:  # read: every byte but the last is an address
                out = [0]
                for byte in data[:-1]:
                    out.append(self._read((byte >> 1) & 0x3F))
                return out
            reg = (first >> 1) & 0x3F
            for value in data[1:]:
                self._write(reg, value)
            return [0] * len(data)

    def _alive(self) -> bool:
        if not self.powered:
            return False
        if self.reset_pin is None:
            return True
        from station.emulated import fakegpio

        if fakegpio.level(self.reset_pin) != fakegpio.HIGH:
            self._in_reset = True
            return False
        if self._in_reset:  # NRSTPD rose: power-on reset
            self._in_reset = False
            self._power_on_reset()
        return True

    def _end_tap(self) -> None:
        card = self._card
        if self._tap_until is not None and card is not None and card.uid_reads and time.monotonic() >= self._tap_until:
            card.power_off()
            self._card, self._tap_until = None, None

    # --- registers -----------------------------------------------------------------------

    def _power_on_reset(self) -> None:
        self._regs[:] = bytes(64)
        for reg, value in _RESET_VALUES.items():
            self._regs[reg] = value
        self._fifo.clear()
        self._crypto = False
        self._timer_deadline = None
        if self._card is not None:
            self._card.power_off()

    def _field_on(self) -> bool:
        return bool(self._regs[TX_CONTROL] & 0x03)

    def _read(self, reg: int) -> int:
        if reg == FIFO_DATA:
            return self._fifo.pop(0) if self._fifo else 0x00
        if reg == FIFO_LEVEL:
            return len(self._fifo) & 0x7F
        if reg == COMM_IRQ and self._timer_deadline is not None and time.monotonic() >= self._timer_deadline:
            self._timer_deadline = None
            self._regs[COMM_IRQ] |= TIMER_IRQ
        if reg == STATUS2:
            return (self._regs[STATUS2] & ~MF_CRYPTO1_ON & 0xFF) | (MF_CRYPTO1_ON if self._crypto else 0)
        if reg == VERSION:
            return self.version
        return self._regs[reg]

    def _write(self, reg: int, value: int) -> None:
        if reg in (COMM_IRQ, DIV_IRQ):
            bits = value & 0x7F
            if value & 0x80:
                self._regs[reg] |= bits
            else:
                self._regs[reg] &= ~bits & 0xFF
        elif reg == FIFO_DATA:
            if len(self._fifo) < FIFO_SIZE:
                self._fifo.append(value)
            else:
                self._regs[ERROR] |= BUFFER_OVFL
        elif reg == FIFO_LEVEL:
            if value & 0x80:
                self._fifo.clear()
                self._regs[ERROR] &= ~BUFFER_OVFL & 0xFF
        elif reg == STATUS2:
            if not value & MF_CRYPTO1_ON:
                self._crypto = False  # software can clear MFCrypto1On, never set it
            self._regs[STATUS2] = value & 0xC0
        elif reg == CONTROL:
            # TStartNow/TStopNow are triggers (the timer runs by TAuto only here); RxLastBits is read-only.
            self._regs[CONTROL] = (self._regs[CONTROL] & 0x07) | 0x10
        elif reg == BIT_FRAMING:
            self._regs[BIT_FRAMING] = value
            if value & 0x80 and (self._regs[COMMAND] & 0x0F) == CMD_TRANSCEIVE:
                self._send(receive=True)
        elif reg == TX_CONTROL:
            self._regs[TX_CONTROL] = value
            if not self._field_on() and self._card is not None:
                self._card.power_off()
        elif reg == COMMAND:
            self._command(value)
        elif reg in (ERROR, STATUS1, VERSION, 0x00):
            pass  # read-only
        else:
            self._regs[reg] = value

    def _command(self, value: int) -> None:
        cmd = value & 0x0F
        keep = value & 0x30  # RcvOff, PowerDown
        if cmd == CMD_NO_CHANGE:
            self._regs[COMMAND] = (self._regs[COMMAND] & 0x0F) | keep
            return
        if cmd == CMD_SOFT_RESET:
            self._power_on_reset()
            self._regs[COMMAND] = 0x20  # reset values everywhere, command Idle
            return
        self._regs[COMMAND] = cmd | keep
        if cmd == CMD_IDLE:
            return
        if cmd == CMD_CALC_CRC:
            preset = (0x0000, 0x6363, 0xA671, 0xFFFF)[self._regs[MODE] & 0x03]
            crc = crc_a(bytes(self._fifo), preset)
            self._fifo.clear()
            self._regs[CRC_RESULT_L], self._regs[CRC_RESULT_H] = crc & 0xFF, crc >> 8
            self._regs[DIV_IRQ] |= CRC_IRQ
            return  # CalcCRC keeps running until another command, as on the chip
        if cmd == CMD_TRANSMIT:
            self._send(receive=False)
            self._regs[COMMAND] = CMD_IDLE | keep
            self._regs[COMM_IRQ] |= IDLE_IRQ
            return
        if cmd == CMD_MF_AUTHENT:
            self._authenticate()
            return
        if cmd in (CMD_MEM, CMD_RANDOM_ID):
            self._regs[COMMAND] = CMD_IDLE | keep
            self._regs[COMM_IRQ] |= IDLE_IRQ
        # Transceive waits for StartSend; Receive waits for a frame that never comes unasked.

    def _card_in_field(self) -> Card | None:
        return self._card if self._field_on() else None

    def _send(self, receive: bool) -> None:
        frame = bytes(self._fifo)
        self._fifo.clear()
        tx_last_bits = self._regs[BIT_FRAMING] & 0x07
        self._regs[ERROR] = 0
        self._regs[COMM_IRQ] |= TX_IRQ
        card = self._card_in_field()
        answer = card.receive(frame, tx_last_bits, self._crypto) if card and frame else None
        if answer is not None and card is not None and RX_GAIN_DB[(self._regs[RF_CFG] >> 4) & 0x07] < card.min_gain_db:
            answer = None  # the card answered, too weakly for this receiver gain: nothing is heard
        if not receive:
            return
        if answer is None:
            self._no_answer()
            return
        data, last_bits = answer
        self._fifo.extend(data)
        self._regs[CONTROL] = (self._regs[CONTROL] & ~0x07 & 0xFF) | (last_bits & 0x07)
        self._timer_deadline = None  # TAuto: the timer stops when the answer starts
        self._regs[COMM_IRQ] |= RX_IRQ

    def _no_answer(self) -> None:
        if not self._regs[T_MODE] & 0x80:
            return  # TAuto off: nothing ends the wait, as on the real chip
        if self.realtime_timer:
            self._timer_deadline = time.monotonic() + self.timer_timeout_s()
        else:
            self._regs[COMM_IRQ] |= TIMER_IRQ

    def timer_timeout_s(self) -> float:
        """The timeout programmed in TModeReg/TPrescalerReg/TReloadReg."""
        prescaler = ((self._regs[T_MODE] & 0x0F) << 8) | self._regs[T_PRESCALER]
        reload = (self._regs[T_RELOAD_H] << 8) | self._regs[T_RELOAD_L]
        return (reload + 1) * (2 * prescaler + 1) / CLOCK_HZ

    def _authenticate(self) -> None:
        data = bytes(self._fifo)
        self._fifo.clear()
        card = self._card_in_field()
        ok = False
        if card is not None and len(data) >= 12:
            ok = card.authenticate(data[0], data[1], data[2:8], data[8:12])
        elif card is not None:
            card._fall_back()
        if ok:
            self._crypto = True
            self._regs[COMMAND] = CMD_IDLE | (self._regs[COMMAND] & 0x30)
            self._regs[COMM_IRQ] |= IDLE_IRQ
        else:
            self._no_answer()  # MFAuthent does not end when the card stays silent
