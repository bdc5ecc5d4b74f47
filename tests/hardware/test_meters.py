"""The meter chain end to end: the real pymodbus client (ModbusMeter) against the real
pymodbus RTU server (EmulatedMeter) over socket://, a pty pair and Modbus TCP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import station
from station.core.meterguard import MeterGuard
from station.core.ports import Meter
from station.emulated.meter_server import STATE_FILE, EmulatedMeter
from station.errors import MeterError
from station.hardware.meter import ModbusMeter, cli_read
from station.hardware.meters.models import MODELS
from tests.support.fakes import FakeClock

# Independent of models.py: the energy register's step (Wh) and per-phase energy presence.
ENERGY_STEP_WH = {"SDM630": 1, "SDM72D-M-V1": 1, "SDM72D-M-V2": 1,
                  "SDM120": 1, "ABB-B23": 10, "WE-514": 10, "WE-516": 1, "EM24": 100,
                  "EM24-OLD": 100}
HAS_PHASE_ENERGY = {"SDM630", "ABB-B23", "WE-516", "EM24", "EM24-OLD"}
ENERGY_AND_POWER_ONLY = {"SDM72D-M-V1"}  # nine registers: no voltage, current, frequency
PHASES = {"SDM630": 3, "SDM72D-M-V1": 3, "SDM72D-M-V2": 3,
          "SDM120": 1, "ABB-B23": 3, "WE-514": 1, "WE-516": 3, "EM24": 3, "EM24-OLD": 3}


def floor_to(wh: int, step: int) -> int:
    return wh - wh % step


@pytest.mark.parametrize("name", sorted(MODELS))
async def test_every_model_reads_exact_values_over_socket(name, tmp_path):
    # A stopped clock: the car draws power but the register does not move during the test,
    # so every value can be compared exactly.
    async with EmulatedMeter(name, state_dir=tmp_path, initial_wh=1_234_567, clock=FakeClock(), tick_s=None) as em:
        em.set_load(6900.0)  # 2300 W per phase on three phases: 10 A at 230 V
        em.set_flowing(True)
        meter = ModbusMeter(name, em.port, 1, timeout_s=2.0)
        try:
            assert isinstance(meter, Meter)
            r = await meter.read()
        finally:
            await meter.close()
    n = PHASES[name]
    step = ENERGY_STEP_WH[name]
    assert isinstance(r.energy_wh, int)
    assert r.energy_wh == floor_to(1_234_567, step)
    assert r.power_w == 6900.0
    if name in ENERGY_AND_POWER_ONLY:
        assert (r.voltage_v, r.current_a, r.power_phase_w, r.energy_phase_wh, r.frequency_hz) == ((), (), (), (), None)
        assert meter.measurands == {"energy", "power"}
        return
    assert r.voltage_v == (230.0,) * n
    assert r.current_a == ((30.0,) if n == 1 else (10.0, 10.0, 10.0))
    assert r.power_phase_w == ((6900.0,) if n == 1 else (2300.0, 2300.0, 2300.0))
    assert r.frequency_hz == 50.0
    if name in HAS_PHASE_ENERGY:
        split = (411_523, 411_522, 411_522)  # 1 234 567 over three phases, remainder on L1
        assert r.energy_phase_wh == tuple(floor_to(x, step) for x in split)
        assert all(isinstance(x, int) for x in r.energy_phase_wh)
    else:
        assert r.energy_phase_wh == ()
    assert meter.measurands >= {"energy", "power", "voltage", "current", "frequency"}
    assert ("energy_phase" in meter.measurands) == (name in HAS_PHASE_ENERGY)


@pytest.mark.parametrize("name", ["SDM630", "EM24", "ABB-B23", "WE-514"])
async def test_non_round_values_within_register_resolution(name):
    async with EmulatedMeter(name, voltage_v=231.7, frequency_hz=49.98, tick_s=None) as em:
        em.set_load(7400.0, phases=1)
        em.set_flowing(True)
        meter = ModbusMeter(name, em.port, 1, timeout_s=2.0)
        try:
            r = await meter.read()
        finally:
            await meter.close()
    assert r.voltage_v[0] == pytest.approx(231.7, abs=0.01)
    assert r.power_w == pytest.approx(7400.0, abs=0.1)
    assert r.current_a[0] == pytest.approx(7400 / 231.7, abs=0.01)
    assert r.frequency_hz == pytest.approx(49.98, abs=0.1)
    if PHASES[name] == 3:
        assert r.current_a[1:] == (0.0, 0.0)


async def test_pty_pair_link(tmp_path):
    async with EmulatedMeter("SDM630", link="pty", initial_wh=42_000, tick_s=None) as em:
        assert em.port.startswith("/dev/")
        meter = ModbusMeter("SDM630", em.port, 1, baudrate=19200, timeout_s=2.0)
        try:
            r1 = await meter.read()
            em.advance(1500)
            r2 = await meter.read()
            # a slow reply that misses its timeout must not be taken for the next answer
            em.set_latency(0.5)
            meter.timeout_s = 0.2
            await meter.close()  # the next read opens the port with the new timeout
            replies = em.replies
            with pytest.raises(MeterError):
                await meter.read()
            em.set_latency(0)
            meter.timeout_s = 2.0
            for _ in range(500):  # the late reply goes out to the (closed) port meanwhile
                if em.replies > replies:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            em.advance(1)  # the next answer differs from the late one
            r3 = await meter.read()
        finally:
            await meter.close()
    assert (r1.energy_wh, r2.energy_wh, r3.energy_wh) == (42_000, 43_500, 43_501)
    assert r3.voltage_v == (230.0, 230.0, 230.0)


async def test_modbus_tcp_link():
    async with EmulatedMeter("WE-516", link="tcp", initial_wh=777, tick_s=None) as em:
        assert em.port.startswith("tcp://")
        meter = ModbusMeter("WE-516", em.port, 1, timeout_s=2.0)
        try:
            r = await meter.read()
        finally:
            await meter.close()
    assert r.energy_wh == 777
    # Modbus TCP frames: 12-byte requests (MBAP 7 + PDU 5), replies 9 + 2 per register
    plan = MODELS["WE-516"].plan
    assert meter.stats.bytes_sent == 12 * len(plan)
    assert em.reply_bytes == meter.stats.bytes_received == sum(9 + 2 * r.count for r in plan)


@pytest.mark.parametrize("name", sorted(MODELS))
async def test_one_request_per_planned_group(name):
    m = MODELS[name]
    async with EmulatedMeter(name, tick_s=None) as em:
        meter = ModbusMeter(name, em.port, 1, timeout_s=2.0)
        try:
            for _ in range(3):
                await meter.read()
        finally:
            await meter.close()
    assert em.requests == 3 * len(m.plan)  # counted by the server
    assert meter.stats.requests == 3 * len(m.plan)  # counted by the client
    tx, rx = m.wire_bytes()
    assert meter.stats.bytes_sent == 3 * tx == 3 * 8 * len(m.plan)
    assert em.reply_bytes == 3 * rx == meter.stats.bytes_received


@pytest.mark.parametrize("name", sorted(MODELS))
async def test_core_read_energy_and_power_only(name):
    m = MODELS[name]
    async with EmulatedMeter(name, initial_wh=500_000, clock=FakeClock(), tick_s=None) as em:
        em.set_load(6900.0)
        em.set_flowing(True)
        meter = ModbusMeter(name, em.port, 1, timeout_s=2.0)
        try:
            first = await meter.read(full=False)  # the first reading is full: the start-up map check
            requests, sent, received = em.requests, meter.stats.bytes_sent, meter.stats.bytes_received
            r = await meter.read(full=False)
        finally:
            await meter.close()
    assert (first.voltage_v != ()) == (name not in ENERGY_AND_POWER_ONLY) and requests == len(m.plan)
    assert r.energy_wh == 500_000 and r.power_w == 6900.0
    assert r.voltage_v == () and r.energy_phase_wh == ()
    assert em.requests - requests == len(m.core_plan) <= 2
    assert meter.stats.bytes_sent - sent + meter.stats.bytes_received - received == sum(m.wire_bytes(full=False))


async def test_dead_meter_times_out_and_guard_faults_then_clears():
    async with EmulatedMeter("SDM120", initial_wh=180_000, tick_s=None) as em:
        meter = ModbusMeter("SDM120", em.port, 1, timeout_s=0.2)
        guard = MeterGuard(meter.max_power_w, max_failures=3)
        try:
            guard.accept(await meter.read())
            assert guard.accept(await meter.read()) is not None
            em.set_dead(True)
            states = []
            for _ in range(3):
                with pytest.raises(MeterError, match="no reply"):
                    await meter.read()
                states.append(guard.failed(MeterError("timeout")))
            assert states == [False, False, True] and guard.faulted
            em.set_dead(False)
            r = await meter.read()  # reconnects by itself
            assert guard.accept(r) is not None
            assert not guard.faulted
        finally:
            await meter.close()


async def test_garbled_reply_is_an_error_and_recovers():
    async with EmulatedMeter("EM24", initial_wh=5000, tick_s=None) as em:
        meter = ModbusMeter("EM24", em.port, 1, timeout_s=0.2)
        try:
            em.set_garbage(True)
            with pytest.raises(MeterError):
                await meter.read()
            em.set_garbage(False)
            assert (await meter.read()).energy_wh == 5000
        finally:
            await meter.close()


async def test_slow_meter_within_timeout_is_fine():
    async with EmulatedMeter("SDM630", initial_wh=5000, tick_s=None) as em:
        em.set_latency(0.05)
        meter = ModbusMeter("SDM630", em.port, 1, timeout_s=2.0)
        try:
            assert (await meter.read()).energy_wh == 5000
        finally:
            await meter.close()


async def test_other_address_gets_no_reply():
    async with EmulatedMeter("SDM630", address=7, tick_s=None) as em:
        wrong = ModbusMeter("SDM630", em.port, 8, timeout_s=0.2)
        right = ModbusMeter("SDM630", em.port, 7, timeout_s=2.0)
        try:
            with pytest.raises(MeterError, match="no reply"):
                await wrong.read()
            assert (await right.read()).energy_wh == 0
        finally:
            await wrong.close()
            await right.close()


async def test_wrong_model_gets_an_exception_reply():
    async with EmulatedMeter("ABB-B23", tick_s=None) as em:  # FC3 map at 0x5000..
        meter = ModbusMeter("SDM630", em.port, 1, timeout_s=2.0)  # FC4 at 0x0000..
        try:
            with pytest.raises(MeterError, match="exception code 2"):
                await meter.read()
        finally:
            await meter.close()


async def test_unreachable_port_is_a_meter_error(tmp_path):
    meter = ModbusMeter("SDM630", str(tmp_path / "no-such-tty"), 1, timeout_s=0.2)
    with pytest.raises(MeterError, match="cannot open"):
        await meter.read()
    await meter.close()


async def test_reconnects_after_the_meter_link_restarts(tmp_path):
    em1 = EmulatedMeter("SDM630", state_dir=tmp_path, initial_wh=1000, tick_s=None)
    port = await em1.start()
    meter = ModbusMeter("SDM630", port, 1, timeout_s=0.3)
    try:
        assert (await meter.read()).energy_wh == 1000
        em1.advance(5)
        await em1.stop()
        with pytest.raises(MeterError):
            await meter.read()
        tcp_port = int(port.rsplit(":", 1)[1])
        em2 = EmulatedMeter("SDM630", state_dir=tmp_path, tcp_port=tcp_port, tick_s=None)
        await em2.start()
        try:
            assert (await meter.read()).energy_wh == 1005
        finally:
            await em2.stop()
    finally:
        await meter.close()


async def test_spurious_spike_is_not_billed():
    async with EmulatedMeter("SDM630", initial_wh=180_000, tick_s=None) as em:
        meter = ModbusMeter("SDM630", em.port, 1, timeout_s=2.0)
        guard = MeterGuard(meter.max_power_w, max_failures=3)
        try:
            guard.accept(await meter.read())
            start = guard.accept(await meter.read())
            assert start is not None
            em.glitch_energy(5_000_000)
            assert guard.accept(await meter.read()) is None  # 5000 kWh rejected
            em.advance(12)  # plausible within the guard's allowance at 69 kW
            stop = guard.accept(await meter.read())
        finally:
            await meter.close()
    assert stop is not None and stop.energy_wh - start.energy_wh == 12


async def test_instant_consume_needs_a_guard_without_rate_limit():
    # The scenario's "consume" step adds its Wh at once, faster than any meter's rating:
    # a station on emulated hardware runs its guard with max_power_w=inf (decreases are
    # still rejected).
    async with EmulatedMeter("SDM630", initial_wh=180_000, tick_s=None) as em:
        meter = ModbusMeter("SDM630", em.port, 1, timeout_s=2.0)
        strict = MeterGuard(meter.max_power_w, max_failures=3)
        sim = MeterGuard(float("inf"), max_failures=3)
        try:
            for g in (strict, sim):
                r = await meter.read()
                g.accept(r)
                g.accept(r)
            em.advance(1500)
            r = await meter.read()
            assert strict.accept(r) is None
            assert sim.accept(r).energy_wh == 181_500
        finally:
            await meter.close()


def test_max_power_override():
    assert ModbusMeter("SDM120", "/dev/null", 1).max_power_w == 230 * 45
    assert ModbusMeter("SDM120", "/dev/null", 1, max_power_w=3680).max_power_w == 3680
    with pytest.raises(KeyError):
        ModbusMeter("SDM999", "/dev/null", 1)


# -- the emulated meter's energy register ---------------------------------------------------


async def test_energy_integrates_power_keeping_fractions():
    clock = FakeClock()
    em = EmulatedMeter("SDM120", clock=clock, tick_s=None)
    em.set_load(3600.0)  # 1 Wh per second
    em.tick()
    assert em.energy_wh == 0  # not flowing yet
    em.set_flowing(True)
    for _ in range(6):
        clock.t += 0.25
        em.tick()
    assert em.energy_wh == 1  # 1.5 Wh: the half is kept
    clock.t += 0.5
    assert em.energy_wh == 2
    em.set_flowing(False)
    clock.t += 100
    assert em.energy_wh == 2
    v = em.values()
    assert v.power_w == 0.0 and v.current_a == (0.0,)
    em.set_flowing(True)
    assert em.values().current_a == (3600.0 / 230.0,)
    em.advance(1500)
    assert em.energy_wh == 1502


async def test_three_phase_split_sums_to_the_total():
    clock = FakeClock()
    em = EmulatedMeter("SDM630", clock=clock, tick_s=None)
    em.set_load(11_000.0)
    em.set_flowing(True)
    clock.t += 3600
    # 3666.67 Wh per phase: whole Wh are in the register, the 0.67 Wh of each phase are kept
    assert em.phase_wh == (3666, 3666, 3666)
    clock.t += 3600 / 11_000 * 3  # 1 Wh more per phase: the kept fractions carry over
    assert em.phase_wh == (3667, 3667, 3667)
    assert sum(em.phase_wh) == em.energy_wh
    em.advance(10)
    assert sum(em.phase_wh) == em.energy_wh
    with pytest.raises(ValueError):
        em.advance(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        em.set_load(1000, phases=4)


async def test_energy_flows_while_the_emulated_contactor_is_closed(fake_gpio):
    from station.emulated.meter_server import follow_contactor

    clock = FakeClock()
    em = EmulatedMeter("SDM630", clock=clock, tick_s=None)
    em.set_load(3600.0, phases=1)
    fake_gpio.setup(17, fake_gpio.OUT, initial=fake_gpio.LOW)
    follow_contactor(em, 17)
    clock.t += 10
    assert em.energy_wh == 0 and not em.flowing
    fake_gpio.output(17, fake_gpio.HIGH)
    assert em.flowing
    clock.t += 10
    assert em.energy_wh == 10
    await asyncio.to_thread(fake_gpio.output, 17, fake_gpio.LOW)  # from another thread
    await asyncio.sleep(0)
    assert not em.flowing
    clock.t += 10
    assert em.energy_wh == 10


async def test_register_persists_across_a_new_server_instance(tmp_path):
    async with EmulatedMeter("SDM630", state_dir=tmp_path, initial_wh=100, tick_s=None) as em:
        em.advance(1500)
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert doc["energy_wh"] == 1600 and sum(doc["phase_wh"]) == 1600
    async with EmulatedMeter("SDM630", state_dir=tmp_path, initial_wh=0, tick_s=None) as em2:
        meter = ModbusMeter("SDM630", em2.port, 1, timeout_s=2.0)
        try:
            r = await meter.read()
        finally:
            await meter.close()
    assert r.energy_wh == 1600
    assert r.energy_phase_wh == tuple(doc["phase_wh"])


async def test_value_is_persisted_before_it_is_visible(tmp_path, monkeypatch):
    em = EmulatedMeter("SDM630", state_dir=tmp_path, initial_wh=100, tick_s=None)

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(em, "_save", disk_full)
    with pytest.raises(OSError):
        em.advance(50)
    assert em.energy_wh == 100  # not shown: it could not be kept


SIGKILL_SCRIPT = """
import asyncio, sys
from station.emulated.meter_server import EmulatedMeter

async def main():
    em = EmulatedMeter("SDM630", state_dir=sys.argv[1], tick_s=0.01)
    await em.start()
    em.set_load(3_600_000.0)  # 1 kWh per second: the register moves at every tick
    em.set_flowing(True)
    print(em.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def start_meter_process(state_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(station.__file__).resolve().parents[1]))
    return subprocess.Popen(
        [sys.executable, "-c", SIGKILL_SCRIPT, str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )


async def test_register_never_goes_back_after_sigkill(tmp_path):
    proc = await asyncio.to_thread(start_meter_process, tmp_path)
    try:
        port = (await asyncio.to_thread(proc.stdout.readline)).strip()
        assert port.startswith("socket://"), port
        meter = ModbusMeter("SDM630", port, 1, timeout_s=2.0)
        seen = 0
        try:
            for _ in range(5):
                seen = max(seen, (await meter.read()).energy_wh)
                await asyncio.sleep(0.02)
        finally:
            await meter.close()
        assert seen > 0
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        proc.stdout.close()
    async with EmulatedMeter("SDM630", state_dir=tmp_path, tick_s=None) as em:
        meter = ModbusMeter("SDM630", em.port, 1, timeout_s=2.0)
        try:
            after = (await meter.read()).energy_wh
        finally:
            await meter.close()
    assert after >= seen


# -- station meter read ------------------------------------------------------------------------


async def test_cli_read_json(capsys):
    async with EmulatedMeter("SDM630", address=3, initial_wh=1_234_567, tick_s=None) as em:
        code = await cli_read("SDM630", em.port, 3, 9600, "N", True)
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {
        "model",
        "address",
        "energy_import_wh",
        "power_w",
        "voltage_v",
        "current_a",
        "energy_import_phase_wh",
    }
    assert doc["model"] == "SDM630" and doc["address"] == 3
    assert doc["energy_import_wh"] == 1_234_567 and isinstance(doc["energy_import_wh"], int)
    assert doc["voltage_v"] == [230.0, 230.0, 230.0]
    assert doc["current_a"] == [0.0, 0.0, 0.0]
    assert doc["power_w"] == 0.0
    assert doc["energy_import_phase_wh"] == [411_523, 411_522, 411_522]


async def test_cli_read_json_single_phase_without_phase_energy(capsys):
    async with EmulatedMeter("WE-514", initial_wh=2_000, tick_s=None) as em:
        code = await cli_read("WE-514", em.port, 1, 9600, "N", True)
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["energy_import_wh"] == 2000
    assert doc["voltage_v"] == [230.0] and doc["energy_import_phase_wh"] == []


async def test_cli_read_table(capsys):
    async with EmulatedMeter("EM24", initial_wh=9_870_000, tick_s=None) as em:
        code = await cli_read("EM24", em.port, 1, 9600, "N", False)
    assert code == 0
    out = capsys.readouterr().out
    assert "EM24" in out and "9870.000 kWh" in out and "L3" in out and "Voltage V" in out


async def test_cli_read_timeout_is_a_clear_error(capsys):
    async with EmulatedMeter("SDM630", tick_s=None) as em:
        em.set_dead(True)
        code = await cli_read("SDM630", em.port, 1, 9600, "E", False, timeout_s=0.2)
    assert code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error:" in captured.err and "no reply" in captured.err and "parity E" in captured.err
    assert "factory parity is N" in captured.err


async def test_cli_read_unknown_model(capsys):
    assert await cli_read("XYZ", "/dev/null", 1, 9600, "N", False) == 1
    assert "unknown meter model" in capsys.readouterr().err
    assert await cli_read("XYZ", "/dev/null", 1, 9600, "N", True) == 1  # --json: the error as JSON too
    doc = json.loads(capsys.readouterr().out)
    assert "unknown meter model" in doc["error"] and doc["kind"] == "usage"


def test_station_meter_read_command_line(capsys, monkeypatch):
    """`station meter read` runs cli_read with asyncio.run (its own loop); the emulated
    meter runs meanwhile in a second thread with its own loop (over RTU on a socket)."""
    from station import cli
    from tests.support.meters import run_cli_against

    monkeypatch.setattr(cli, "setup_logging", lambda *a, **k: None)  # keep pytest's log handlers
    assert run_cli_against("SDM120", ["--model", "SDM120", "--address", "1", "--json"], link="socket") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["energy_import_wh"] == 4321 and doc["model"] == "SDM120"


def test_emulated_meter_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        EmulatedMeter("SDM630")
