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
  and TReloadReg, VersionReg 0x37.
- A frame a card answers: the answer goes to the FIFO, RxLastBits is
  set, CommIrqReg gets TxIRq and RxIRq, never TimerIRq (with TAuto the
  real timer stops when the answer starts). A frame nobody answers: TxIRq
  and, only if TAuto is set, TimerIRq (at once, or after the programmed
  timeout with `realtime_timer=True`). Without TAuto nothing ends the
  wait, as on the real chip.

Cards follow the ISO 14443-3 state model, which is what produces the
behaviour the libraries are known for:

    IDLE  --REQA/WUPA-->  READY  --SELECT (UID complete)-->  ACTIVE --HLTA--> HALT
    HALT  --WUPA only-->  READY*  (the * states fall back to HALT, not IDLE)

Any frame a state does not expect sends the card back to IDLE (HALT from
the * states) without an answer. So a card left on the reader by a library
that never halts it answers only every second REQA: the first REQA takes it
to READY, the library stops after ANTICOLL (or SELECT), and the next REQA is
unexpected there. WUPA plus HLTA after every read (what our reader does)
makes a held card answer every poll.

Cascade levels: 4-byte UIDs answer ANTICOLL `93 20` with UID0..3 + BCC;
7- and 10-byte UIDs answer with the cascade tag 0x88 + three UID bytes at
the first (and second) level, and SAK bit 2 says "UID not complete". BCC is
the XOR of the four bytes; CRC_A (preset 0x6363) protects SELECT, its SAK
answer, READ, WRITE and HLTA.

MIFARE Classic 1K memory (64 blocks of 16 bytes) with keys in the sector
trailers: MFAuthent with the right key A or B (and the UID's last four
bytes) sets MFCrypto1On; a wrong key leaves the card silent (TimerIRq) and
sends it back to IDLE. Crypto itself is not emulated: while the card is
authenticated it expects MFCrypto1On, and a frame sent without it (after
StopCrypto1) is noise to the card. Cards with SAK 0x00 (Ultralight-like)
read and write without authentication.

Thread safety: every SPI transaction and every card handle runs under one
lock, so a reader thread can poll while a test presents cards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

# Registers
COMMAND, COMM_IEN, DIV_IEN, COMM_IRQ, DIV_IRQ, ERROR, STATUS1, STATUS2 = range(1, 9)
FIFO_DATA, FIFO_LEVEL, WATER_LEVEL, CONTROL, BIT_FRAMING, COLL = range(9, 15)
MODE, TX_MODE, RX_MODE, TX_CONTROL = 0x11, 0x12, 0x13, 0x14
CRC_RESULT_H, CRC_RESULT_L = 0x21, 0x22
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

# ISO 14443A / MIFARE frames
REQA, WUPA, HLTA = 0x26, 0x52, 0x50
SEL_CL = (0x93, 0x95, 0x97)
CASCADE_TAG = 0x88
MF_READ, MF_WRITE, MF_AUTH_A, MF_AUTH_B = 0x30, 0xA0, 0x60, 0x61
ACK, NAK_INVALID, NAK_NOT_ALLOWED = 0x0A, 0x00, 0x04

FIFO_SIZE = 64
CLOCK_HZ = 13_560_000

_RESET_VALUES = {
    COMMAND: 0x20, COMM_IEN: 0x80, COMM_IRQ: 0x14, STATUS1: 0x21, WATER_LEVEL: 0x08, CONTROL: 0x10,
    COLL: 0x80, MODE: 0x3F, TX_CONTROL: 0x80, 0x16: 0x10, 0x17: 0x84, 0x18: 0x84, 0x19: 0x4D,
    0x1C: 0x62, 0x1F: 0xEB, CRC_RESULT_H: 0xFF, CRC_RESULT_L: 0xFF, 0x24: 0x26, 0x26: 0x48,
    0x27: 0x88, 0x28: 0x20, 0x29: 0x20,
}


def crc_a(data: bytes | list[int], preset: int = 0x6363) -> int:
    """ISO/IEC 14443-3 CRC_A (as the chip computes it with ModeReg CRCPreset 01).

    Transmitted low byte first: HLTA is `50 00 57 CD`, READ block 0 `30 00 02 A8`.
    """
    crc = preset
    for byte in data:
        byte ^= crc & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = ((crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)) & 0xFFFF
    return crc


def with_crc(data: bytes | list[int]) -> bytes:
    crc = crc_a(data)
    return bytes(data) + bytes([crc & 0xFF, crc >> 8])


def _crc_ok(frame: bytes) -> bool:
    return len(frame) >= 3 and with_crc(frame[:-2]) == frame


def _xor(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


IDLE, READY, ACTIVE, HALT = "IDLE", "READY", "ACTIVE", "HALT"

DEFAULT_TRAILER = bytes([0xFF] * 6 + [0xFF, 0x07, 0x80, 0x69] + [0xFF] * 6)


@dataclass(eq=False)
class Card:
    """One ISO 14443A card: a UID of 4, 7 or 10 bytes and, for MIFARE Classic 1K, 64 blocks.

    `sak` 0x08 is MIFARE Classic 1K (authentication needed); 0x00 an
    Ultralight-like card without authentication. `uid_reads` counts how
    often a reader got the card's whole UID (ANTICOLL answered at its last cascade level).
    """

    uid: bytes
    sak: int = 0x08
    blocks: list[bytearray] = field(default_factory=list)
    state: str = IDLE
    halted_before: bool = False  # the READY*/ACTIVE* states of ISO 14443-3
    level: int = 0  # cascade level (0-based) the card expects next in READY
    auth_sector: int | None = None
    write_pending: int | None = None
    uid_reads: int = 0
    requests_answered: int = 0

    def __post_init__(self) -> None:
        self.uid = bytes(self.uid)
        if len(self.uid) not in (4, 7, 10):
            raise ValueError(f"an ISO 14443A UID has 4, 7 or 10 bytes, got {len(self.uid)}: {self.uid.hex().upper()}")
        if self.uid[0] == CASCADE_TAG and len(self.uid) == 4:
            raise ValueError("a 4-byte UID cannot start with the cascade tag 0x88")
        if not self.blocks:
            self.blocks = [bytearray(16) for _ in range(64)]
            for trailer in range(3, 64, 4):
                self.blocks[trailer][:] = DEFAULT_TRAILER
            head = self.uid + (bytes([_xor(self.uid)]) if len(self.uid) == 4 else b"")
            self.blocks[0][: len(head) + 3] = head + bytes([self.sak]) + self.atqa
        self.blocks = [bytearray(b) for b in self.blocks]

    @property
    def atqa(self) -> bytes:
        # Bits 7-6 of the first byte: UID size single/double/triple; bit 2: bit-frame anticollision.
        return bytes([0x04 | {4: 0x00, 7: 0x40, 10: 0x80}[len(self.uid)], 0x00])

    @property
    def levels(self) -> list[bytes]:
        """The four UID bytes each cascade level carries (with the cascade tag where needed)."""
        u = self.uid
        if len(u) == 4:
            return [u]
        if len(u) == 7:
            return [bytes([CASCADE_TAG]) + u[:3], u[3:7]]
        return [bytes([CASCADE_TAG]) + u[:3], bytes([CASCADE_TAG]) + u[3:6], u[6:10]]

    @property
    def needs_auth(self) -> bool:
        return bool(self.sak & 0x08)

    # --- air interface -------------------------------------------------------------

    def power_off(self) -> None:
        """The field went away: the card forgets everything but its memory."""
        self.state, self.halted_before, self.level = IDLE, False, 0
        self.auth_sector = self.write_pending = None

    def _fall_back(self) -> None:
        """An unexpected frame: back to IDLE, or HALT if the card had been halted."""
        self.state = HALT if self.halted_before else IDLE
        self.level = 0
        self.auth_sector = self.write_pending = None

    def receive(self, frame: bytes, tx_last_bits: int, crypto_on: bool) -> tuple[bytes, int] | None:
        """One frame from the reader. Returns (answer, valid bits in its last byte; 0 = all 8) or None."""
        if self.state == HALT:
            if len(frame) == 1 and tx_last_bits == 7 and frame[0] == WUPA:
                return self._answer_request(halted=True)
            return None
        if self.state == IDLE:
            if len(frame) == 1 and tx_last_bits == 7 and frame[0] in (REQA, WUPA):
                return self._answer_request(halted=False)
            return None
        if tx_last_bits not in (0, 8):  # a short frame in READY/ACTIVE: REQA/WUPA are unexpected here
            self._fall_back()
            return None
        if self.state == READY:
            return self._ready(frame)
        return self._active(frame, crypto_on)

    def _answer_request(self, halted: bool) -> tuple[bytes, int]:
        self.state, self.halted_before, self.level = READY, halted, 0
        self.requests_answered += 1
        return self.atqa, 0

    def _ready(self, frame: bytes) -> tuple[bytes, int] | None:
        if len(frame) >= 2 and frame[0] in SEL_CL:
            level = SEL_CL.index(frame[0])
            levels = self.levels
            # A reader may restart the loop at level 1; other levels must come in order.
            if level < len(levels) and level in (0, self.level):
                self.level = level
                known = levels[level]
                if frame[1] == 0x20 and len(frame) == 2:  # ANTICOLL: "tell me your bytes"
                    if level == len(levels) - 1:
                        self.uid_reads += 1
                    return known + bytes([_xor(known)]), 0
                if frame[1] == 0x70 and len(frame) == 9 and _crc_ok(frame):  # SELECT
                    if frame[2:7] != known + bytes([_xor(known)]):
                        return None  # another card's UID: stay READY, silent
                    if level == len(levels) - 1:
                        self.state = ACTIVE
                        return with_crc([self.sak]), 0
                    self.level = level + 1
                    return with_crc([0x04]), 0  # cascade bit: UID not complete
                if 0x20 < frame[1] < 0x70:  # bit-oriented anticollision: only needed with several cards
                    return None
        self._fall_back()
        return None

    def _active(self, frame: bytes, crypto_on: bool) -> tuple[bytes, int] | None:
        if self.auth_sector is not None and not crypto_on:
            self._fall_back()  # plain text to an authenticated card is noise to it
            return None
        if self.write_pending is not None:
            block, self.write_pending = self.write_pending, None
            if len(frame) == 18 and _crc_ok(frame):
                self.blocks[block][:] = frame[:16]
                return bytes([ACK]), 4
            self._fall_back()
            return None
        if not _crc_ok(frame):
            self._fall_back()  # transmission error
            return None
        cmd = frame[0]
        if cmd == HLTA and frame[:2] == bytes([HLTA, 0x00]):
            self.state, self.halted_before, self.level = HALT, True, 0
            self.auth_sector = self.write_pending = None
            return None
        if cmd in (MF_READ, MF_WRITE) and len(frame) == 4:
            block = frame[1]
            if block >= len(self.blocks):
                self._fall_back()
                return bytes([NAK_INVALID]), 4
            if self.needs_auth and self.auth_sector != block // 4:
                self._fall_back()
                return bytes([NAK_NOT_ALLOWED]), 4
            if cmd == MF_READ:
                data = bytearray(self.blocks[block])
                if self.needs_auth and block % 4 == 3:
                    data[0:6] = bytes(6)  # key A never reads back
                return with_crc(bytes(data)), 0
            if block == 0:  # the manufacturer block is read-only
                self._fall_back()
                return bytes([NAK_NOT_ALLOWED]), 4
            self.write_pending = block
            return bytes([ACK]), 4
        self._fall_back()
        return None

    def authenticate(self, mode: int, block: int, key: bytes, uid4: bytes) -> bool:
        """MFAuthent: True when the card accepts the key (the chip then sets MFCrypto1On)."""
        if self.state != ACTIVE or mode not in (MF_AUTH_A, MF_AUTH_B) or block >= len(self.blocks):
            self._fall_back()
            return False
        trailer = self.blocks[block // 4 * 4 + 3]
        expected = bytes(trailer[0:6]) if mode == MF_AUTH_A else bytes(trailer[10:16])
        if key != expected or uid4 != self.uid[-4:]:
            self._fall_back()
            return False
        self.auth_sector = block // 4
        return True


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

    def present(self, uid: bytes, sak: int = 0x08, blocks: list[bytes] | None = None) -> Card:
        """Put a card on the reader (replacing any other); it stays until remove()."""
        card = Card(bytes(uid), sak=sak, blocks=[bytearray(b) for b in blocks] if blocks else [])
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

    def tap(self, uid: bytes, hold_s: float = 0.3, sak: int = 0x08) -> Card:
        """Present a card as a person taps it: it leaves by itself once a reader
        has read its whole UID and `hold_s` has passed (so a slow poller still sees it)."""
        card = self.present(uid, sak=sak)
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
