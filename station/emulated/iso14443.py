"""ISO 14443A cards as the emulated MFRC522 (station/emulated/mfrc522chip.py) sees them.

A `Card` receives the frames the chip transmits and answers as a real card
would; the chip decides whether its answer is heard (the receiver gain
against the card's `min_gain_db`).

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
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ISO 14443A / MIFARE frames
REQA, WUPA, HLTA = 0x26, 0x52, 0x50
SEL_CL = (0x93, 0x95, 0x97)
CASCADE_TAG = 0x88
MF_READ, MF_WRITE, MF_AUTH_A, MF_AUTH_B = 0x30, 0xA0, 0x60, 0x61
ACK, NAK_INVALID, NAK_NOT_ALLOWED = 0x0A, 0x00, 0x04


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
    min_gain_db: int = 18  # the receiver gain the chip needs to hear this card (18: any)

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
