"""The MFRC522's receiver gain and SPI speed: configured, set through the real `mfrc522` library, and
found by `station rfid read --scan-gain`.

The emulated chip (station/emulated/mfrc522chip.py) models RFCfgReg 0x26 (RxGain in bits 6-4, NXP
MFRC522 datasheet 9.3.3.6: 000 18 dB, 001 23, 100 33 = the reset value 0x48, 101 38, 110 43,
111 48) and cards that are heard only from some gain on, like a small card on a clone module with a
weak antenna. The register values below are written from that table, not from the reader's code.
"""

from __future__ import annotations

import io
import time

import pytest

from station import config as config_mod
from station.emulated import fakespi
from station.errors import ConfigError
from station.hardware.rfid import Mfrc522Reader
from station.hardware.rfid_tool import cli_read, cli_scan_gain

UID = bytes.fromhex("D64FC93B")
WAIT = 10.0
RFCFG = 0x26


def wait_for(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def reader(**kw) -> Mfrc522Reader:
    kw.setdefault("poll_interval_s", 0.01)
    kw.setdefault("absent_s", 0.1)
    kw.setdefault("fault_retry_s", 0.02)
    return Mfrc522Reader(0, 0, 25, **kw)


def reads(r: Mfrc522Reader, n: int = 6) -> int:
    return sum(1 for _ in range(n) if r.poll() == UID)


@pytest.mark.parametrize(("gain", "register"), [(18, 0x08), (23, 0x18), (33, 0x48), (38, 0x58), (43, 0x68),
                                                (48, 0x78)])
def test_the_gain_lands_in_rfcfgreg_bits_6_to_4(mfrc522_chip, gain, register):
    r = reader(antenna_gain_db=gain)
    try:
        r.open()
        assert mfrc522_chip.register(RFCFG) == register  # the reserved low bits (0x08 at reset) kept
        assert mfrc522_chip.rx_gain_db == gain
    finally:
        r.close()


def test_a_card_that_reads_only_above_some_gain(mfrc522_chip):
    mfrc522_chip.present(UID, min_gain_db=43)
    r = reader()  # the default: the chip's 33 dB
    try:
        assert reads(r) == 0
        r.set_gain(43)
        r.poll()  # the card answered unheard a moment ago: one poll to bring it back in step
        assert reads(r) == 6
    finally:
        r.close()


def test_the_worker_reads_it_with_the_configured_gain_and_keeps_it_after_a_chip_reset(mfrc522_chip):
    mfrc522_chip.present(UID, min_gain_db=48)
    taps: list[bytes] = []
    r = reader(antenna_gain_db=48)
    r.start(on_tap=taps.append, on_fault=lambda text: None)
    try:
        assert wait_for(lambda: taps == [UID])
        mfrc522_chip.power_cycle()  # a brown-out: every register back to its reset value, 33 dB
        assert mfrc522_chip.rx_gain_db == 33
        assert wait_for(lambda: mfrc522_chip.rx_gain_db == 48)  # noticed, reinitialised, gain set again
        mfrc522_chip.remove()
        time.sleep(0.3)
        mfrc522_chip.present(UID, min_gain_db=48)
        assert wait_for(lambda: len(taps) == 2)
    finally:
        r.stop()


def test_spi_speed_reaches_the_device(mfrc522_chip):
    r = reader(spi_speed_hz=500_000)
    try:
        r.open()
        assert r._spi.max_speed_hz == 500_000  # set by the mfrc522 library from our value
    finally:
        r.close()
    with pytest.raises(ValueError):
        reader(spi_speed_hz=20_000_000)
    with pytest.raises(ValueError):
        reader(antenna_gain_db=40)


def _config(**overrides):
    values = {"hardware.mode": "sim", "rfid.poll_interval_s": 0.02, "rfid.absent_s": 0.1}
    values.update(overrides)
    return config_mod.defaults(values)


def test_config_keys_and_bounds():
    cfg = _config(**{"rfid.antenna_gain_db": 48, "rfid.spi_speed_hz": 2_000_000})
    assert cfg.rfid.antenna_gain_db == 48 and cfg.rfid.spi_speed_hz == 2_000_000
    assert config_mod.defaults().rfid.antenna_gain_db == 33  # the chip's own default
    for bad in ({"rfid.antenna_gain_db": 40}, {"rfid.spi_speed_hz": 20_000_000}, {"rfid.spi_speed_hz": 1000}):
        with pytest.raises(ConfigError):
            config_mod.defaults(bad)


def test_scan_gain_names_the_lowest_gain_that_reads(mfrc522_chip):
    mfrc522_chip.present(UID, min_gain_db=43)
    out = io.StringIO()
    assert cli_scan_gain(_config(), timeout=WAIT, polls=5, out=out) == 0
    text = out.getvalue()
    for gain in (18, 23, 33, 38):
        assert f"{gain} dB   0/5 read" in text
    assert "43 dB   5/5 read" in text and "48 dB   5/5 read" in text
    assert "33 dB   0/5 read  (configured)" in text
    assert "antenna_gain_db = 43" in text and "(configured now: 33 dB, which missed it)" in text
    assert mfrc522_chip.card is not None  # the card was held, not tapped away


def test_scan_gain_demo_in_sim():
    fakespi.reset()  # nothing attached: the tool attaches a chip and holds a weak demo card on it
    out = io.StringIO()
    try:
        assert cli_scan_gain(_config(), timeout=WAIT, polls=4, out=out) == 0
    finally:
        fakespi.reset()
    text = out.getvalue()
    assert "demo card" in text and "antenna_gain_db = 38" in text


def test_scan_gain_without_a_card(mfrc522_chip):
    out = io.StringIO()
    assert cli_scan_gain(_config(), timeout=0.3, polls=3, out=out) == 1
    assert "No card seen" in out.getvalue()


def test_read_without_a_card_points_to_the_scan(mfrc522_chip):
    mfrc522_chip.present(UID, min_gain_db=48)  # there, but too weak at 33 dB
    out = io.StringIO()
    assert cli_read(_config(), timeout=0.5, out=out) == 1
    assert "at a receiver gain of 33 dB" in out.getvalue() and "--scan-gain" in out.getvalue()
    out = io.StringIO()
    assert cli_read(_config(**{"rfid.antenna_gain_db": 48}), timeout=WAIT, out=out) == 0
    assert "D64FC93B" in out.getvalue()


def test_the_station_builds_its_reader_from_the_config(tmp_path):
    import asyncio

    from station.hardware.factory import build_hardware

    async def build():
        hw = await build_hardware(_config(**{"rfid.antenna_gain_db": 43, "rfid.spi_speed_hz": 4_000_000,
                                             "station.state_dir": str(tmp_path)}))
        try:
            return hw.reader
        finally:
            for close in reversed(hw.closers):
                result = close()
                if asyncio.iscoroutine(result):
                    await result

    r = asyncio.run(build())
    assert (r.antenna_gain_db, r.spi_speed_hz) == (43, 4_000_000)

