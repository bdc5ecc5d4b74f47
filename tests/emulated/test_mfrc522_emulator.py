"""The MFRC522 emulator, driven by the real mfrc522 0.0.7 library (nothing of it mocked)."""

from __future__ import annotations

import logging

import pytest

from station.core.tags import simple_mfrc522_number
from station.emulated import fakegpio, fakespi
from station.emulated.mfrc522chip import (
    ACTIVE,
    HALT,
    IDLE,
    READY,
    Card,
    MFRC522Chip,
    crc_a,
    with_crc,
)

UID4 = bytes.fromhex("D64FC93B")
UID7 = bytes.fromhex("04A1B2C3D4E5F6")
UID10 = bytes.fromhex("0811223344556677889A")


@pytest.fixture
def lib(mfrc522_chip):
    """The real library's MFRC522 with the reset pin explicit, as station uses it."""
    from mfrc522 import MFRC522

    fakegpio.setmode(fakegpio.BCM)
    reader = MFRC522(pin_rst=25)
    yield reader
    reader.spi.close()  # never Close_MFRC522(): it calls GPIO.cleanup()
    logging.getLogger("mfrc522Logger").handlers.clear()


@pytest.fixture
def simple(lib):
    from mfrc522 import SimpleMFRC522

    simple = SimpleMFRC522.__new__(SimpleMFRC522)
    simple.READER = lib
    return simple


def select(lib, uid4: bytes) -> int:
    status, _ = lib.MFRC522_Request(lib.PICC_REQIDL)
    assert status == lib.MI_OK
    status, serial = lib.MFRC522_Anticoll()
    assert status == lib.MI_OK and bytes(serial[:4]) == uid4
    return lib.MFRC522_SelectTag(serial)


# --- CRC and frames ------------------------------------------------------------------------


def test_crc_a_known_vectors():
    # ISO 14443-3 Annex B and the frames every MIFARE trace shows.
    assert crc_a(b"\x00\x00") == 0x1EA0
    assert crc_a(b"\x12\x34") == 0xCF26
    assert with_crc(b"\x50\x00") == bytes.fromhex("500057CD")  # HLTA
    assert with_crc(b"\x30\x00") == bytes.fromhex("300002A8")  # READ block 0


def test_chip_crc_coprocessor_matches(lib):
    assert lib.CalulateCRC([0x50, 0x00]) == [0x57, 0xCD]


# --- the library against the chip ----------------------------------------------------------


def test_version_and_init(lib, mfrc522_chip):
    assert lib.Read_MFRC522(lib.VersionReg) == 0x92
    assert lib.Read_MFRC522(lib.TModeReg) == 0x8D  # TAuto from the library's init
    assert lib.Read_MFRC522(lib.TxControlReg) & 0x03 == 0x03  # antenna on


def test_read_id_no_block_with_the_known_every_other_quirk(simple, mfrc522_chip):
    mfrc522_chip.present(UID4)
    results = [simple.read_id_no_block() for _ in range(6)]
    number = int.from_bytes(UID4 + bytes([0xD6 ^ 0x4F ^ 0xC9 ^ 0x3B]), "big")
    # The library never halts the card: REQA in READY is unexpected, so every second read is empty.
    assert results == [number, None] * 3
    assert number == simple_mfrc522_number(UID4)


def test_empty_poll_costs_the_library_its_busy_loop(simple, mfrc522_chip):
    before = mfrc522_chip.transfers
    assert simple.read_id_no_block() is None
    # 2000 CommIrqReg reads plus the set-up: the reason our reader drives the chip itself.
    assert mfrc522_chip.transfers - before > 2000


def test_seven_byte_uid_first_cascade_level(simple, lib, mfrc522_chip):
    mfrc522_chip.present(UID7)
    status, _ = lib.MFRC522_Request(lib.PICC_REQIDL)
    status, serial = lib.MFRC522_Anticoll()
    assert status == lib.MI_OK
    assert serial == [0x88, 0x04, 0xA1, 0xB2, 0x88 ^ 0x04 ^ 0xA1 ^ 0xB2]  # cascade tag + 3 bytes + BCC
    assert lib.MFRC522_SelectTag(serial) == 0x04  # SAK: UID not complete
    mfrc522_chip.remove()
    mfrc522_chip.present(UID7)
    assert simple.read_id_no_block() == simple_mfrc522_number(UID7)


def test_write_and_read_text_through_simple_mfrc522(simple, mfrc522_chip):
    card = mfrc522_chip.present(UID4)
    number = simple_mfrc522_number(UID4)
    assert simple.write_no_block("station") == (number, "station")
    assert bytes(card.blocks[8][:7]) == b"station"
    assert simple.read_no_block() == (None, None)  # the card was left ACTIVE: this REQA is unexpected
    number_read, text = simple.read_no_block()
    assert number_read == number
    assert text.rstrip() == "station"


def test_read_block_and_write_block_with_auth(lib, mfrc522_chip):
    card = mfrc522_chip.present(UID4)
    card.blocks[5][:] = bytes(range(16))
    assert select(lib, UID4) == 0x08
    key = [0xFF] * 6
    assert lib.MFRC522_Auth(lib.PICC_AUTHENT1A, 7, key, list(UID4)) == lib.MI_OK
    assert lib.Read_MFRC522(lib.Status2Reg) & 0x08
    assert lib.MFRC522_Read(5) == list(range(16))
    lib.MFRC522_Write(6, list(range(100, 116)))
    assert bytes(card.blocks[6]) == bytes(range(100, 116))
    assert lib.MFRC522_Read(6) == list(range(100, 116))
    trailer = lib.MFRC522_Read(7)
    assert trailer[:6] == [0] * 6 and trailer[6:10] == [0xFF, 0x07, 0x80, 0x69]  # key A reads as zeros
    lib.MFRC522_StopCrypto1()
    assert not lib.Read_MFRC522(lib.Status2Reg) & 0x08


def test_wrong_key_fails_and_status2_stays_clear(lib, mfrc522_chip):
    mfrc522_chip.present(UID4)
    select(lib, UID4)
    assert lib.MFRC522_Auth(lib.PICC_AUTHENT1A, 7, [0x00] * 6, list(UID4)) != lib.MI_OK
    assert not lib.Read_MFRC522(lib.Status2Reg) & 0x08
    assert mfrc522_chip.card.state == IDLE
    assert lib.MFRC522_Read(4) is None  # unauthenticated: nothing


def test_read_without_auth_is_refused(lib, mfrc522_chip):
    mfrc522_chip.present(UID4)
    select(lib, UID4)
    assert lib.MFRC522_Read(4) is None


def test_ultralight_like_card_reads_without_auth(lib, mfrc522_chip):
    card = mfrc522_chip.present(UID7, sak=0x00)
    card.blocks[4][:] = b"0123456789abcdef"
    status, _ = lib.MFRC522_Request(lib.PICC_REQIDL)
    # The library has no cascade: select level 1, then level 2 by hand.
    status, serial = lib.MFRC522_Anticoll()
    assert lib.MFRC522_SelectTag(serial) == 0x04
    status, back, bits = lib.MFRC522_ToCard(lib.PCD_TRANSCEIVE, [0x95, 0x20])
    assert status == lib.MI_OK and back == list(UID7[3:7]) + [UID7[3] ^ UID7[4] ^ UID7[5] ^ UID7[6]]
    frame = [0x95, 0x70] + back
    frame += lib.CalulateCRC(frame)
    status, back, bits = lib.MFRC522_ToCard(lib.PCD_TRANSCEIVE, frame)
    assert bits == 24 and back[0] == 0x00
    assert bytes(lib.MFRC522_Read(4)) == b"0123456789abcdef"


def test_halt_then_only_wupa_wakes(lib, mfrc522_chip):
    card = mfrc522_chip.present(UID4)
    select(lib, UID4)
    lib.MFRC522_ToCard(lib.PCD_TRANSCEIVE, [0x50, 0x00] + lib.CalulateCRC([0x50, 0x00]))
    assert card.state == HALT
    assert lib.MFRC522_Request(lib.PICC_REQIDL)[0] != lib.MI_OK  # REQA: silence
    assert lib.MFRC522_Request(lib.PICC_REQALL) == (lib.MI_OK, 16)  # WUPA: ATQA
    assert card.state == READY and card.halted_before
    assert lib.MFRC522_Request(lib.PICC_REQALL)[0] != lib.MI_OK  # unexpected in READY*: back to HALT
    assert card.state == HALT


def test_timer_irq_only_without_answer(lib, mfrc522_chip):
    def request() -> int:
        lib.Write_MFRC522(lib.BitFramingReg, 0x07)
        lib.Write_MFRC522(lib.CommIrqReg, 0x7F)
        lib.SetBitMask(lib.FIFOLevelReg, 0x80)
        lib.Write_MFRC522(lib.FIFODataReg, 0x26)
        lib.Write_MFRC522(lib.CommandReg, lib.PCD_TRANSCEIVE)
        lib.SetBitMask(lib.BitFramingReg, 0x80)
        return lib.Read_MFRC522(lib.CommIrqReg)

    irq = request()
    assert irq & 0x01 and not irq & 0x20  # no card: TimerIRq, no RxIRq
    mfrc522_chip.present(UID4)
    irq = request()
    assert irq & 0x20 and not irq & 0x01  # a card's answer never sets TimerIRq
    assert lib.Read_MFRC522(lib.FIFOLevelReg) == 2
    mfrc522_chip.remove()
    lib.Write_MFRC522(lib.TModeReg, 0x00)  # TAuto off: nothing ends the wait
    assert not request() & 0x21


def test_antenna_off_no_card(lib, simple, mfrc522_chip):
    mfrc522_chip.present(UID4)
    lib.AntennaOff()
    lib.Write_MFRC522(lib.TModeReg, 0x8D)
    status, _ = lib.MFRC522_Request(lib.PICC_REQIDL)
    assert status != lib.MI_OK


def test_comm_irq_set_clear_semantics(lib):
    lib.Write_MFRC522(lib.CommIrqReg, 0x7F)
    assert lib.Read_MFRC522(lib.CommIrqReg) == 0
    lib.Write_MFRC522(lib.CommIrqReg, 0x80 | 0x21)
    assert lib.Read_MFRC522(lib.CommIrqReg) == 0x21
    lib.Write_MFRC522(lib.CommIrqReg, 0x01)
    assert lib.Read_MFRC522(lib.CommIrqReg) == 0x20


def test_soft_reset_restores_reset_values(lib, mfrc522_chip):
    lib.MFRC522_Reset()
    assert lib.Read_MFRC522(lib.TModeReg) == 0x00
    assert lib.Read_MFRC522(lib.TxControlReg) == 0x80
    assert lib.Read_MFRC522(lib.VersionReg) == 0x92


# --- the reset pin trap -----------------------------------------------------------------------


def test_library_default_reset_pin_is_bcm15_the_uart_rx(mfrc522_chip):
    from mfrc522 import MFRC522

    fakegpio.setmode(fakegpio.BCM)
    reader = MFRC522()  # no pin_rst: the reset pin trap of docs/hardware.md
    try:
        assert fakegpio.level(15) == 1  # drove the UART RX pin high
        assert reader.Read_MFRC522(reader.VersionReg) == 0x00  # our chip's NRSTPD (BCM 25) is still low
    finally:
        reader.spi.close()
        logging.getLogger("mfrc522Logger").handlers.clear()


def test_chip_dead_until_reset_pin_high(mfrc522_chip):
    spi = fakespi.SpiDev()
    spi.open(0, 0)
    assert spi.xfer2([0x80 | (0x37 << 1), 0]) == [0, 0]
    fakegpio.setmode(fakegpio.BCM)
    fakegpio.setup(25, fakegpio.OUT, initial=fakegpio.HIGH)
    assert spi.xfer2([0x80 | (0x37 << 1), 0]) == [0, 0x92]


# --- SPI details --------------------------------------------------------------------------------


def test_fakespi_open_close_and_detach():
    fakespi.reset()
    spi = fakespi.SpiDev()
    with pytest.raises(FileNotFoundError):
        spi.open(0, 0)
    chip = fakespi.attach(0, 1, MFRC522Chip())
    spi.open(0, 1)
    assert spi.xfer2([0x80 | (0x37 << 1), 0]) == [0, 0x92]
    assert chip.transfers == 1 and fakespi.transfers(0, 1) == 1 and spi.transfers == 1
    fakespi.detach(0, 1)
    assert spi.xfer2([0x80 | (0x37 << 1), 0]) == [0, 0]  # module pulled off: MISO low
    spi.close()
    with pytest.raises(OSError):
        spi.xfer2([0, 0])
    fakespi.attach(0, 1, chip)
    with pytest.raises(TypeError):
        fakespi.SpiDev(0, 1).writebytes(["x"])
    fakespi.reset()


def test_burst_write_and_multi_register_read():
    chip = MFRC522Chip()
    chip.transfer([0x0A << 1, 0x80])  # flush
    chip.transfer([0x09 << 1, 1, 2, 3, 4])  # four bytes into the FIFO in one transaction
    assert chip.transfer([0x80 | (0x0A << 1), 0x80 | (0x37 << 1), 0]) == [0, 4, 0x92]
    assert chip.transfer([0x80 | (0x09 << 1)] * 4 + [0]) == [0, 1, 2, 3, 4]
    assert chip.transfers == 4


# --- cards and handles -------------------------------------------------------------------------


def test_card_rejects_impossible_uids():
    with pytest.raises(ValueError, match="4, 7 or 10"):
        Card(bytes.fromhex("16AC936B1692E73A"))
    with pytest.raises(ValueError):
        Card(bytes.fromhex("88010203"))


def test_cascade_levels_of_ten_byte_uid():
    card = Card(UID10)
    assert card.atqa == b"\x84\x00"
    assert card.levels == [b"\x88" + UID10[:3], b"\x88" + UID10[3:6], UID10[6:]]
    assert Card(UID7).atqa == b"\x44\x00"


def test_state_model_directly():
    card = Card(UID4)
    assert card.receive(b"\x26", 8, False) is None  # REQA must be a 7-bit short frame
    assert card.receive(b"\x26", 7, False) == (b"\x04\x00", 0)
    assert card.receive(b"\x93\x20", 0, False) == (UID4 + bytes([0xD6 ^ 0x4F ^ 0xC9 ^ 0x3B]), 0)
    wrong = with_crc(b"\x93\x70" + b"\x01\x02\x03\x04\x04")
    assert card.receive(wrong, 0, False) is None and card.state == READY  # not my UID: stay READY
    sel = with_crc(b"\x93\x70" + UID4 + bytes([0xD6 ^ 0x4F ^ 0xC9 ^ 0x3B]))
    answer, bits = card.receive(sel, 0, False)
    assert answer == with_crc(b"\x08") and card.state == ACTIVE
    assert card.receive(b"\x26", 7, False) is None and card.state == IDLE  # REQA in ACTIVE: unexpected


def test_tap_leaves_after_being_read(simple, mfrc522_chip):
    card = mfrc522_chip.tap(UID4, hold_s=0)
    assert mfrc522_chip.card is card
    assert simple.read_id_no_block() == simple_mfrc522_number(UID4)
    assert mfrc522_chip.card is None
    assert card.uid_reads == 1


def test_powered_off_chip_reads_idle_level(lib, mfrc522_chip):
    mfrc522_chip.powered = False
    assert lib.Read_MFRC522(lib.VersionReg) == 0x00
    mfrc522_chip.miso_idle = 0xFF
    assert lib.Read_MFRC522(lib.VersionReg) == 0xFF
    mfrc522_chip.powered = True
    assert lib.Read_MFRC522(lib.VersionReg) == 0x92


def test_realtime_timer_follows_the_programmed_timeout():
    chip = MFRC522Chip(realtime_timer=True)
    for reg, value in ((0x2A, 0x80), (0x2B, 0xA9), (0x2C, 0x00), (0x2D, 200), (0x14, 0x83)):
        chip.transfer([reg << 1, value])
    assert chip.timer_timeout_s() == pytest.approx(0.005025, rel=1e-3)
    chip.transfer([0x09 << 1, 0x26])
    chip.transfer([0x0D << 1, 0x07])
    chip.transfer([0x01 << 1, 0x0C])
    chip.transfer([0x0D << 1, 0x87])
    import time

    deadline = time.monotonic() + 5
    while not chip.transfer([0x80 | (0x04 << 1), 0])[1] & 0x01:
        assert time.monotonic() < deadline
        time.sleep(0.001)
