"""Modbus RTU done right: the silence between frames measured on a real pty, a bad CRC told
apart from silence, the OS error of a port that does not open, RS-485 direction control.

The meter side is pymodbus' own RTU server (station.emulated.meter_server.EmulatedMeter) and the
station side the real ModbusMeter adapter; nothing of either is mocked. Timing assertions
are lower bounds only (the specification's minimum), never upper bounds.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os

import pytest
import serial
import serial.serialposix

from station.emulated.meter_server import EmulatedMeter
from station.errors import MeterError
from station.hardware import rtu
from station.hardware.meter import ModbusMeter
from tests.support.meters import run_cli_against


def gaps_after_replies(events: list[tuple[str, float]]) -> list[float]:
    """Seconds from the last chunk of each reply to the first chunk of the next request."""
    gaps, last_reply = [], None
    for direction, t in events:
        if direction == "to_client":
            last_reply = t
        elif last_reply is not None:
            gaps.append(t - last_reply)
            last_reply = None
    return gaps


# -- timing ------------------------------------------------------------------------------------


def test_silence_is_three_and_a_half_characters_or_1_75_ms():
    # Modbus over serial line V1.02, 2.5.1.1: 3.5 characters; above 19200 baud 1.750 ms.
    assert rtu.frame_silence_s(9600) == pytest.approx(3.5 * 10 / 9600)  # 8N1: 3.65 ms
    assert rtu.frame_silence_s(19200) == pytest.approx(0.0018229, abs=1e-6)  # 1.82 ms
    assert rtu.frame_silence_s(9600, "E", 1) == pytest.approx(3.5 * 11 / 9600)  # 11-bit characters
    assert rtu.frame_silence_s(38400) == rtu.frame_silence_s(115200) == 0.00175


@pytest.mark.parametrize("baudrate", [9600, 19200, 38400])
async def test_silence_between_reply_and_next_request_on_the_wire(baudrate):
    async with EmulatedMeter("SDM630", link="pty", tick_s=None) as em:
        events: list[tuple[str, float]] = []
        assert em.bridge is not None
        em.bridge.tap = lambda direction, data, t: events.append((direction, t))
        meter = ModbusMeter("SDM630", em.port, 1, baudrate=baudrate, timeout_s=2.0)
        try:
            for _ in range(4):  # 3 requests per reading: 2 back-to-back gaps each
                await meter.read()
        finally:
            await meter.close()
    gaps = gaps_after_replies(events)
    assert len(gaps) >= 8
    assert min(gaps) >= rtu.frame_silence_s(baudrate)


async def test_turnaround_for_slow_meters():
    async with EmulatedMeter("SDM630", link="pty", tick_s=None) as em:
        events: list[tuple[str, float]] = []
        assert em.bridge is not None
        em.bridge.tap = lambda direction, data, t: events.append((direction, t))
        meter = ModbusMeter("SDM630", em.port, 1, baudrate=19200, timeout_s=2.0, turnaround_s=0.03)
        try:
            await meter.read()
            await meter.read()
        finally:
            await meter.close()
    gaps = gaps_after_replies(events)
    assert len(gaps) >= 4 and min(gaps) >= 0.03
    with pytest.raises(ValueError):
        ModbusMeter("SDM630", "/dev/null", 1, turnaround_s=2.0)


def test_turnaround_is_a_config_key_with_bounds():
    from station import config as configmod
    from station.errors import ConfigError

    assert configmod.defaults({"meter.turnaround_s": 0.05}).meter.turnaround_s == 0.05
    with pytest.raises(ConfigError, match="meter.turnaround_s"):
        configmod.defaults({"meter.turnaround_s": 1.5})


# -- bad CRC versus no reply (the emulated meter's fault hooks) --------------------------------------


@pytest.mark.parametrize("link", ["pty", "socket"])
async def test_bad_crc_is_told_apart_from_no_reply(link):
    async with EmulatedMeter("EM24", link=link, initial_wh=5000, tick_s=None) as em:
        meter = ModbusMeter("EM24", em.port, 1, timeout_s=0.3)
        try:
            em.set_fault("bad-crc")
            assert em.fault == "bad-crc"
            with pytest.raises(MeterError) as bad:
                await meter.read()
            em.set_fault("silent")
            with pytest.raises(MeterError) as silent:
                await meter.read()
            em.set_fault(None)
            assert (await meter.read()).energy_wh == 5000
        finally:
            await meter.close()
    assert bad.value.kind == "crc" and "bad CRC" in str(bad.value) and "no reply" not in str(bad.value)
    assert "termination" in bad.value.hint
    assert silent.value.kind == "timeout" and "no reply" in str(silent.value)
    with pytest.raises(ValueError):
        em.set_fault("noise")  # type: ignore[arg-type]


# -- ports that do not open --------------------------------------------------------------------------


async def test_missing_device_says_so_with_its_errno(tmp_path):
    port = str(tmp_path / "ttyAMA0")
    meter = ModbusMeter("SDM630", port, 1, timeout_s=0.2)
    with pytest.raises(MeterError) as exc:
        await meter.read()
    await meter.close()
    assert exc.value.kind == "port"
    assert "No such file or directory (ENOENT)" in str(exc.value)
    assert "UART" in exc.value.hint and "/dev/serial/by-id" in exc.value.hint
    assert "A/B" not in exc.value.hint and "wiring" not in exc.value.hint


async def test_port_in_use_says_so():
    async with EmulatedMeter("SDM630", link="pty", tick_s=None) as em:
        holder = serial.Serial(em.port, exclusive=True)  # another program has the port
        try:
            meter = ModbusMeter("SDM630", em.port, 1, timeout_s=0.2)
            with pytest.raises(MeterError) as exc:
                await meter.read()
            await meter.close()
        finally:
            holder.close()
    assert exc.value.kind == "port" and "(EAGAIN)" in str(exc.value)
    assert "in use" in exc.value.hint and "console" in exc.value.hint


def test_permission_denied_says_dialout():
    """A tty the station's user may not open: run the open in a child without root."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges (or the mode bits), try to read, report, leave
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            else:
                os.chmod(path, 0)
            meter = ModbusMeter("SDM630", path, 1, timeout_s=0.2)
            try:
                asyncio.run(meter.read())
                doc = {"kind": "none"}
            except MeterError as e:
                doc = {"kind": e.kind, "text": str(e), "hint": e.hint}
            os.write(w, json.dumps(doc).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    os.close(r)
    os.close(master)
    os.close(slave)
    doc = json.loads(data)
    assert doc["kind"] == "port" and "(EACCES)" in doc["text"]
    assert "dialout" in doc["hint"]


@pytest.mark.parametrize(("err", "words"), [
    (errno.ENOENT, "is the UART enabled"),
    (errno.EACCES, "dialout"),
    (errno.EBUSY, "serial console"),
    (errno.ENXIO, "unplugged"),
    (errno.ENOTTY, "not a serial port"),
])
def test_every_port_error_keeps_its_errno_and_gets_its_own_hint(err, words):
    e = rtu.port_error("/dev/ttyUSB0", OSError(err, os.strerror(err)))
    assert e.kind == "port" and f"({errno.errorcode[err]})" in str(e) and os.strerror(err) in str(e)
    assert words in e.hint
    other = rtu.port_error("/dev/ttyUSB0", OSError(errno.EINVAL, "x"))
    assert os.strerror(errno.EINVAL) in str(other)


# -- RS-485 direction control ------------------------------------------------------------------------


async def test_rs485_rts_settings_reach_the_serial_port(monkeypatch):
    """pyserial passes RS485Settings to the kernel with TIOCSRS485; a pty has no RS-485 mode,
    so the ioctl is recorded here (the kernel's side) and everything else goes through."""
    real_ioctl = fcntl.ioctl
    seen: list[list[int]] = []

    def ioctl(fd, request, arg=0, *rest):
        if request == serial.serialposix.TIOCGRS485:
            return 0  # the kernel's current settings: all zero
        if request == serial.serialposix.TIOCSRS485:
            seen.append(list(arg))
            return 0
        return real_ioctl(fd, request, arg, *rest)

    monkeypatch.setattr(serial.serialposix.fcntl, "ioctl", ioctl)
    async with EmulatedMeter("SDM630", link="pty", initial_wh=777, tick_s=None) as em:
        meter = ModbusMeter("SDM630", em.port, 1, timeout_s=2.0, rs485_rts=True, rs485_rts_level_for_tx=False)
        try:
            assert (await meter.read()).energy_wh == 777
            assert meter._client is not None
            port = ModbusMeter.serial_port(meter._client)
            assert port.rs485_mode.rts_level_for_tx is False and port.rs485_mode.rts_level_for_rx is True
        finally:
            await meter.close()
    assert seen, "TIOCSRS485 was not sent"
    flags = seen[-1][0]
    assert flags & 1  # SER_RS485_ENABLED
    assert not flags & 2  # SER_RS485_RTS_ON_SEND cleared: RTS low while sending
    assert flags & 4  # SER_RS485_RTS_AFTER_SEND: RTS high while receiving


async def test_rs485_on_a_port_without_it_is_a_clear_error():
    async with EmulatedMeter("SDM630", link="pty", tick_s=None) as em:
        meter = ModbusMeter("SDM630", em.port, 1, timeout_s=0.5, rs485_rts=True)
        with pytest.raises(MeterError) as exc:
            await meter.read()
        await meter.close()
    assert exc.value.kind == "port" and "RS-485" in str(exc.value) and "rs485_rts" in exc.value.hint


# -- `station meter read` (issue 14) -------------------------------------------------------------------


@pytest.fixture
def quiet_cli(monkeypatch):
    from station import cli

    monkeypatch.setattr(cli, "setup_logging", lambda *a, **k: None)  # keep pytest's log handlers


def test_meter_read_takes_the_model_in_any_case(capsys, quiet_cli):
    assert run_cli_against("SDM630", ["--model", "sdm630", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "SDM630" and doc["energy_import_wh"] == 4321
    assert run_cli_against("ABB-B23", ["--model", "abb-b23", "--parity", "n"]) == 0
    assert "ABB-B23" in capsys.readouterr().out


def test_meter_read_json_errors_are_json(capsys, quiet_cli, tmp_path):
    from station import cli

    code = cli.main(["meter", "read", "--model", "SDM630", "--port", str(tmp_path / "ttyAMA0"), "--json"])
    out = capsys.readouterr().out
    assert code == 1
    doc = json.loads(out)
    assert doc["kind"] == "port" and "ENOENT" in doc["error"] and "UART" in doc["hint"]
    assert cli.main(["meter", "read", "--model", "NOPE", "--port", "/dev/null", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["kind"] == "usage"


def test_meter_read_missing_uart_is_no_such_device(capsys, quiet_cli, tmp_path):
    from station import cli

    assert cli.main(["meter", "read", "--model", "SDM630", "--port", str(tmp_path / "ttyAMA0")]) == 1
    err = capsys.readouterr().err
    assert "no such device" in err and "is the UART enabled" in err
    assert "A/B" not in err and "cannot open or connect" not in err


def test_meter_read_timeout_and_stopbits_reach_the_port(capsys, quiet_cli, monkeypatch):
    opened: list[dict] = []
    real = serial.serial_for_url

    def spy(url, *args, **kwargs):
        opened.append(kwargs)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(serial, "serial_for_url", spy)
    code = run_cli_against("SDM630", ["--model", "SDM630", "--stopbits", "2", "--timeout", "0.3"], fault="silent")
    err = capsys.readouterr().err
    assert code == 1 and "within 0.3 s" in err and "no reply" in err
    assert opened and opened[-1]["stopbits"] == 2 and opened[-1]["timeout"] == 0.3
