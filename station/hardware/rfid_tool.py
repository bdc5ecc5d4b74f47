"""`station rfid read`: wait for a card, print its UID in every form, and find the receiver gain.

The reader is the station's own (station/hardware/rfid.py, on the real
`mfrc522` library). `--scan-gain` helps the installer of a reader that does
not read their cards at the chip's default gain (33 dB; clone modules with a
weak antenna often need 43 or 48): with a card held on the reader it tries
every receiver gain (18, 23, 33, 38, 43, 48 dB) for a number of polls each,
prints how many read the card, and names the lowest gain at which every poll
read it, as the `rfid.antenna_gain_db` line to put in the configuration.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Any, TextIO

from station.core.tags import format_tag, format_uid, simple_mfrc522_number
from station.hardware.rfid import GAINS_DB, Mfrc522Reader

DEMO_UID = bytes.fromhex("D64FC93B")
DEMO_DELAY_S = 1.0
DEMO_MIN_GAIN_DB = 38  # the demo card of --scan-gain in sim: read only from 38 dB on, like a weak clone
SCAN_POLLS = 10


def make_reader(config: Any) -> Mfrc522Reader:
    r = config.rfid
    return Mfrc522Reader(r.spi_bus, r.spi_device, r.reset_pin, r.poll_interval_s, r.absent_s,
                         spi_speed_hz=r.spi_speed_hz, antenna_gain_db=r.antenna_gain_db)


def _sim_chip(config: Any, out: TextIO, action: str) -> Any:
    """In sim mode: the emulated chip, attached here if nobody attached one (then a demo card comes)."""
    from station.emulated import fakespi, install
    from station.emulated.mfrc522chip import MFRC522Chip

    rfid = config.rfid
    install.install()
    if fakespi.attached(rfid.spi_bus, rfid.spi_device) is not None:
        return None
    chip = MFRC522Chip()
    fakespi.attach(rfid.spi_bus, rfid.spi_device, chip)
    print(f"hardware.mode = sim: emulated MFRC522; a demo card ({format_uid(DEMO_UID, separator=' ')}) "
          f"will be {action} in {DEMO_DELAY_S:g} s.", file=out)
    return chip


def uid_formats(uid: bytes, config: Any | None = None) -> list[tuple[str, str]]:
    """(label, text) for every form of a UID an installer may need to type into a backend."""
    rows: list[tuple[str, str]] = []
    if config is not None:
        rows.append(("id tag as configured", format_tag(uid, config)))
    for order in ("forward", "reverse"):
        label_order = "byte 0 first" if order == "forward" else "last byte first"
        for case in ("upper", "lower"):
            for sep, sep_name in (("", "no separator"), (":", "':'"), (" ", "' '")):
                rows.append((f"hex {case}, {sep_name}, {label_order}", format_uid(uid, case, sep, order)))
    rows.append(("decimal, byte 0 first", str(int.from_bytes(uid, "big"))))
    rows.append(("decimal, last byte first", str(int.from_bytes(uid, "little"))))
    rows.append(("SimpleMFRC522 read_id() number", str(simple_mfrc522_number(uid))))
    return rows


def cli_read(config: Any, timeout: float = 30.0, out: TextIO | None = None) -> int:
    """`station rfid read [--timeout S]`: wait for a card and print its UID in every format.

    Returns 0 when a card was read, 1 on timeout or when the reader fails
    (the message says which and how to fix it). In `hardware.mode = "sim"`
    the emulated chip is installed and, if no emulated chip is attached at
    the configured SPI position yet, one is attached and a demo card
    (D6 4F C9 3B) is tapped on it after one second; the output says so.
    A chip attached beforehand (by a test or the simulator) is used as it is.
    """
    out = out or sys.stdout
    rfid = config.rfid
    timer: threading.Timer | None = None
    if config.hardware.mode == "sim":
        chip = _sim_chip(config, out, "tapped")
        if chip is not None:
            timer = threading.Timer(DEMO_DELAY_S, chip.tap, args=(DEMO_UID,))
            timer.daemon = True
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    reader = make_reader(config)
    print(f"Hold a card to the reader on SPI {rfid.spi_bus}.{rfid.spi_device} (waiting up to {timeout:g} s) ...",
          file=out, flush=True)
    reader.start(on_tap=lambda uid: events.put(("tap", uid)), on_fault=lambda text: events.put(("fault", text)))
    if timer is not None:
        timer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                print(f"No card seen within {timeout:g} s at a receiver gain of {reader.antenna_gain_db} dB. Hold the "
                      "card flat on the reader's antenna and try again; if it still does not read (clone modules often "
                      "need more gain), hold it there and run `station rfid read --scan-gain`.", file=out)
                return 1
            try:
                kind, value = events.get(timeout=remaining)
            except queue.Empty:
                continue
            if kind == "fault" and value is not None:
                print(f"RFID reader fault: {value}", file=out)
                return 1
            if kind == "tap":
                uid: bytes = value
                sak = reader.last_sak
                kind_text = f", SAK 0x{sak:02X}" if sak is not None else ""
                print(f"Card UID: {len(uid)} bytes{kind_text}", file=out)
                rows = uid_formats(uid, config)
                width = max(len(label) for label, _ in rows)
                for label, text in rows:
                    print(f"  {label:<{width}}  {text}", file=out)
                return 0
    finally:
        if timer is not None:
            timer.cancel()
        reader.stop()


def cli_scan_gain(config: Any, timeout: float = 30.0, polls: int = SCAN_POLLS, out: TextIO | None = None) -> int:
    """`station rfid read --scan-gain`: with a card held on the reader, how many of `polls` polls
    read it at each receiver gain; names the lowest gain at which all did. 0 when some gain reads."""
    out = out or sys.stdout
    rfid = config.rfid
    timer: threading.Timer | None = None
    if config.hardware.mode == "sim":
        chip = _sim_chip(config, out, f"held on it (readable from {DEMO_MIN_GAIN_DB} dB)")
        if chip is not None:
            timer = threading.Timer(DEMO_DELAY_S, chip.present, args=(DEMO_UID,),
                                    kwargs={"min_gain_db": DEMO_MIN_GAIN_DB})
            timer.daemon = True
            timer.start()
    reader = make_reader(config)
    configured = reader.antenna_gain_db
    print(f"Hold a card on the reader on SPI {rfid.spi_bus}.{rfid.spi_device} and keep it there "
          f"(waiting up to {timeout:g} s) ...", file=out, flush=True)
    try:
        uid = _wait_for_card(reader, timeout)
        if uid is None:
            print(f"No card seen within {timeout:g} s, even at the highest gain ({max(GAINS_DB)} dB): check the "
                  "wiring (`station rfid read` names a reader fault) and hold the card flat on the antenna.", file=out)
            return 1
        print(f"Card {format_uid(uid, separator=' ')}: {polls} polls at each receiver gain", file=out)
        good: list[int] = []
        for gain in GAINS_DB:
            reader.set_gain(gain)
            reader.poll()  # settle: a card that answered unheard at the last gain is in an odd state
            reads = sum(1 for _ in range(polls) if reader.poll() == uid)
            mark = "  (configured)" if gain == configured else ""
            print(f"  {gain:>2} dB  {reads:>2}/{polls} read{mark}", file=out)
            if reads == polls:
                good.append(gain)
        if not good:
            print("No gain read the card on every poll: hold it closer, flat on the antenna, and try again.", file=out)
            return 1
        print(f"Lowest gain that read every time: {good[0]} dB. In the configuration, [rfid]:", file=out)
        print(f"  antenna_gain_db = {good[0]}", file=out)
        if good[0] > configured:
            print(f"(configured now: {configured} dB, which missed it)", file=out)
        return 0
    except Exception as exc:  # noqa: BLE001 - the tool reports any reader failure in words
        print(f"RFID reader fault: {reader.describe_fault(exc)}", file=out)
        return 1
    finally:
        if timer is not None:
            timer.cancel()
        reader.close()


def _wait_for_card(reader: Mfrc522Reader, timeout: float) -> bytes | None:
    """The UID of the first card read at the highest gain within `timeout`."""
    reader.set_gain(max(GAINS_DB))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        uid = reader.poll()
        if uid:
            return uid
        time.sleep(reader.poll_interval_s)
    return None
