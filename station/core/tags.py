"""Id tags: how a card's UID becomes the text a backend sees, and back.

A reader hands the core raw UID bytes (byte 0 first, as the card sends them
in the anticollision loop). Backends disagree on how to write those bytes:
OCPP recommends hex byte 0 first ("D64FC93B"), some central systems want
lower case, some a separator ("D6:4F:C9:3B", "D6 4F C9 3B"), and readers
that print the UID as a little-endian number lead people to store the bytes
reversed ("3BC94FD6"). So the form is configuration (`rfid.uid_case`,
`rfid.uid_separator`, `rfid.uid_byte_order`) and comparisons go through
`normalize_tag`, which ignores case and separators.

Nothing here does I/O; the functions are pure.
"""

from __future__ import annotations

import re
from typing import Any

_SEPARATORS = re.compile(r"[\s:\-.]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")


def format_uid(uid: bytes, case: str = "upper", separator: str = "", byte_order: str = "forward") -> str:
    """Write UID bytes as hex text.

    >>> format_uid(bytes.fromhex("D64FC93B"), separator=" ")
    'D6 4F C9 3B'
    >>> format_uid(bytes.fromhex("402BC36A"), case="lower", byte_order="reverse")
    '6ac32b40'
    """
    if case not in ("upper", "lower"):
        raise ValueError(f"case must be 'upper' or 'lower', got {case!r}")
    if byte_order not in ("forward", "reverse"):
        raise ValueError(f"byte_order must be 'forward' or 'reverse', got {byte_order!r}")
    data = bytes(uid)
    if byte_order == "reverse":
        data = data[::-1]
    digits = "%02X" if case == "upper" else "%02x"
    return separator.join(digits % b for b in data)


def parse_uid(text: str) -> bytes:
    """Read hex UID text with or without separators (space, ':', '-', '.'); an optional 0x prefix.

    Each group between separators must be whole bytes (an even number of
    digits), so "D6:4F:C9:3B", "d6 4f c9 3b", "D64FC93B" and "0xD64FC93B"
    all give the same bytes; "D6:4:C9" is an error, not a guess.
    """
    stripped = text.strip()
    if stripped[:2].lower() == "0x":
        stripped = stripped[2:]
    groups = [g for g in _SEPARATORS.split(stripped) if g]
    if not groups:
        raise ValueError(f"not a UID: {text!r} (expected hex bytes such as 'D6 4F C9 3B')")
    for group in groups:
        if not _HEX.fullmatch(group) or len(group) % 2:
            raise ValueError(f"not a UID: {text!r} (each group must be whole hex bytes, got {group!r})")
    return bytes.fromhex("".join(groups))


def normalize_tag(text: str) -> str:
    """The comparison form of an id tag: upper case, separators removed.

    Works on any id tag text, not only hex (OCPP id tags are free strings of
    up to 20 characters): "d6:4f:c9:3b", "D6 4F C9 3B" and "D64FC93B" are equal.
    """
    return _SEPARATORS.sub("", text.strip()).upper()


def format_tag(uid: bytes, config: Any) -> str:
    """The id tag for a UID as configured in `config.rfid` (case, separator, byte order)."""
    rfid = config.rfid
    return format_uid(uid, case=rfid.uid_case, separator=rfid.uid_separator, byte_order=rfid.uid_byte_order)


def simple_mfrc522_number(uid: bytes) -> int:
    """The number `SimpleMFRC522.read_id()` (mfrc522 0.0.7) prints for this card.

    It packs the five bytes of the first anticollision answer: for a 4-byte
    UID the UID plus its check byte (BCC), for longer UIDs the cascade tag
    0x88, the first three UID bytes and the BCC. Installers meet this number
    in old setups and tutorials, so `station rfid read` shows it.
    """
    first = bytes(uid[:4]) if len(uid) == 4 else b"\x88" + bytes(uid[:3])
    bcc = first[0] ^ first[1] ^ first[2] ^ first[3]
    return int.from_bytes(first + bytes([bcc]), "big")
