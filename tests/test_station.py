"""The whole charging cycle on emulated hardware: real mfrc522, RPLCD and pymodbus code underneath."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest

from station.cli import main
from station.emulated import fakegpio
from tests.stations import CARD, CARD7, UNKNOWN, lcd, make_config, running_station, state_is, until


async def test_tap_consume_tap_bills_exact_energy(tmp_path):
    async with running_station(tmp_path) as st:
        st.world.set_load(0)
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        assert st.world.contactor_closed
        st.world.consume(1500)
        await st.world.tap(CARD)
        await state_is(st, "Available")
        assert not st.world.contactor_closed
        assert await st.flush(10)
        [s] = st.store.sessions()
        assert (s.meter_start_wh, s.meter_stop_wh, s.energy_wh) == (0, 1500, 1500)
        assert s.stop_reason == "Local" and s.extra["delivered"] and s.id_tag == CARD


def test_scenario_cli_json(tmp_path, capsys):
    code = main(["--log-level", "WARNING", "simulate", "--scenario", "tests/scenarios/one_session.toml",
                 "--state-dir", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["state"] == "Available" and out["undelivered"] == 0 and out["meter_wh"] == 1500
    [s] = out["sessions"]
    assert s["energy_wh"] == 1500 and s["delivered"] is True
    assert set(s) == {"id_tag", "meter_start_wh", "meter_stop_wh", "energy_wh", "started_at", "stopped_at",
                      "stop_reason", "backend_session_id", "delivered"}


def test_scenario_failure_exits_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[step]]\naction = "tap"\nuid = "6AC32B40"\n[[step]]\naction = "expect"\nstate = "Charging"\nwithin = 1\n')
    assert main(["--log-level", "WARNING", "simulate", "--scenario", str(bad), "--state-dir", str(tmp_path / "s")]) == 1
    assert "expected Charging" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text('[[step]]\naction = "jump"\n')
    assert main(["simulate", "--scenario", str(broken)]) == 2
    assert "step 1" in capsys.readouterr().err


async def test_load_drives_charging_and_suspended_ev(tmp_path):
    async with running_station(tmp_path) as st:
        st.world.set_load(0)
        await st.world.tap(CARD7)  # a 7-byte UID through the emulated chip's cascade levels
        await state_is(st, "SuspendedEV")
        st.world.set_load(11000)
        await state_is(st, "Charging")
        await until(lambda: "kW" in lcd(st), what="power on the LCD")
        st.world.set_load(0)
        await state_is(st, "SuspendedEV")
        await st.world.tap(CARD7)
        await state_is(st, "Available")
        [s] = st.store.sessions()
        assert s.energy_wh == s.meter_stop_wh - s.meter_start_wh >= 0
        assert s.meter_stop_wh == st.world.meter_wh


async def test_unknown_card_refused_with_message(tmp_path):
    async with running_station(tmp_path) as st:
        await st.world.tap(UNKNOWN, wait=False)
        await until(lambda: "not" in lcd(st).lower() or "invalid" in lcd(st).lower(), what="refusal on the LCD")
        await state_is(st, "Available")
        assert not st.world.contactor_closed
        assert st.store.sessions() == []
        assert [s.state for s in st.store.sessions(("refused",))] == ["refused"]


async def test_other_card_during_session_is_refused(tmp_path):
    async with running_station(tmp_path) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await st.world.tap(CARD7)
        assert st.charger.state.value in ("SuspendedEV", "Charging")
        assert st.world.contactor_closed
        assert st.charger.presenter.notice is not None and st.charger.presenter.notice.key == "other_card"
        await st.world.tap(CARD)
        await state_is(st, "Available")
        assert len(st.store.sessions()) == 1


async def test_ev_input_plug_first_and_unplug_ends_session(tmp_path):
    async with running_station(tmp_path, {"sim.ev_connected_input": True}) as st:
        st.world.plug(True)
        await state_is(st, "Preparing")
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        st.world.consume(321)
        st.world.plug(False)
        await state_is(st, "Available")
        [s] = st.store.sessions()
        assert s.stop_reason == "EVDisconnected" and s.energy_wh == 321


async def test_ev_input_tap_first_waits_for_plug_then_times_out(tmp_path):
    async with running_station(tmp_path, {"sim.ev_connected_input": True, "charging.connection_timeout_s": 1}) as st:
        await st.world.tap(CARD)
        await state_is(st, "Preparing")
        assert not st.world.contactor_closed
        await state_is(st, "Available", timeout=10)  # nobody plugged in
        assert st.store.sessions() == []
        await st.world.tap(CARD)
        await state_is(st, "Preparing")
        st.world.plug(True)
        await state_is(st, "SuspendedEV")
        assert st.world.contactor_closed


async def test_stop_button(tmp_path):
    async with running_station(tmp_path, {"sim.stop_button_input": True}) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await st.world.press_stop()
        await state_is(st, "Available")
        [s] = st.store.sessions()
        assert s.stop_reason == "Local"


async def test_car_that_never_draws_power_is_ended(tmp_path):
    async with running_station(tmp_path, {"charging.no_power_timeout_s": 1}) as st:
        st.world.set_load(0)
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await state_is(st, "Available", timeout=15)
        [s] = st.store.sessions()
        assert s.stop_reason == "Other" and s.energy_wh == 0


async def test_contactor_that_does_not_close_is_a_fault(tmp_path):
    async with running_station(tmp_path) as st:
        st.world.break_contactor()
        await st.world.tap(CARD)
        await state_is(st, "Faulted")
        assert st.charger.status().error_code == "OtherError"
        assert "did not close" in st.charger.status().info
        [s] = st.store.sessions()
        assert s.stop_reason == "Other"


async def test_welded_contactor_is_a_fault(tmp_path):
    async with running_station(tmp_path) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        st.world.weld()
        await st.world.tap(CARD)
        await state_is(st, "Faulted")
        assert "welded" in st.charger.status().info


async def test_dead_meter_faults_and_recovers(tmp_path):
    async with running_station(tmp_path) as st:
        st.world.set_load(0)
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        st.world.consume(200)
        await until(lambda: st.charger.reading and st.charger.reading.energy_wh == 200, what="reading of 200 Wh")
        st.world.meter.set_dead(True)
        await state_is(st, "Faulted", timeout=20)
        assert st.charger.status().error_code == "PowerMeterFailure"
        [s] = st.store.sessions()
        # The session ended with the last good reading, marked as such: nothing billed that was not measured.
        assert s.stop_reason == "Other" and s.meter_stop_wh == 200 and s.meter_stop_estimated
        await st.world.tap(CARD)
        assert len(st.store.sessions()) == 1  # no session on a faulted station
        st.world.meter.set_dead(False)
        await state_is(st, "Available", timeout=20)


async def test_power_loss_closes_the_session_at_restart(tmp_path):
    async with running_station(tmp_path, graceful=False) as st:
        st.world.set_load(0)
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        st.world.consume(777)
        await asyncio.sleep(0.5)
    # The emulated meter kept its register in the state dir, as a real one does.
    async with running_station(tmp_path) as st:
        assert await st.flush(10)
        [s] = st.store.sessions()
        assert s.stop_reason == "PowerLoss" and s.energy_wh == 777 and not s.meter_stop_estimated
        assert s.extra["delivered"]
        assert st.charger.state.value == "Available"


async def test_graceful_stop_ends_the_session_as_reboot(tmp_path):
    async with running_station(tmp_path) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
    async with running_station(tmp_path) as st:
        [s] = st.store.sessions()
        assert s.stop_reason == "Reboot" and s.extra["delivered"]


async def test_outage_offline_policy_and_in_order_delivery(tmp_path):
    async with running_station(tmp_path, {"backend.offline_policy": "cached"}) as st:
        st.world.set_load(0)
        await st.world.tap(CARD)  # online: accepted, and now cached
        await state_is(st, "SuspendedEV")
        await st.world.tap(CARD)
        await state_is(st, "Available")
        await st.world.backend_link(False)
        for wh in (100, 200, 300):
            await st.world.tap(CARD)  # cached: allowed offline
            await state_is(st, "SuspendedEV")
            st.world.consume(wh)
            await st.world.tap(CARD)
            await state_is(st, "Available")
        await st.world.tap(CARD7)  # never seen online: refused offline
        await state_is(st, "Available")
        assert st.store.pending_messages() == 6
        await until(lambda: "offline" in lcd(st).lower(), what="the LCD saying offline")
        await st.world.backend_link(True)
        assert await st.flush(15)
        sessions = st.store.sessions()
        assert [s.energy_wh for s in sessions] == [0, 100, 200, 300]
        assert all(s.extra["delivered"] for s in sessions)
        received = st.backend.received
        assert received == [(k, s.id) for s in sessions for k in ("start", "stop")]


async def test_offline_policy_refuse(tmp_path):
    async with running_station(tmp_path, {"backend.offline_policy": "refuse"}) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await st.world.tap(CARD)
        await state_is(st, "Available")
        await st.world.backend_link(False)
        await st.world.tap(CARD)
        await state_is(st, "Available")
        assert len(st.store.sessions()) == 1


async def test_unwritable_journal_refuses_to_charge(tmp_path):
    async with running_station(tmp_path) as st:
        st.store._db.execute("PRAGMA query_only=ON")  # SQLite's read-only path, as on a read-only filesystem
        await st.world.tap(CARD)
        await state_is(st, "Available")
        assert not st.world.contactor_closed
        text = lcd(st).lower()
        assert "record" in text or "speicher" in text or "aufzeich" in text, text
        st.store._db.execute("PRAGMA query_only=OFF")
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (root only): a real ENOSPC, as on a full SD card."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


async def test_full_disk_refuses_to_charge(small_disk):
    async with running_station(small_disk) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await st.world.tap(CARD)
        await state_is(st, "Available")
        filler = small_disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
        os.close(fd)
        await st.world.tap(CARD)
        await state_is(st, "Available")
        assert not st.world.contactor_closed
        assert len(st.store.sessions()) == 1
        assert "storage" in st.charger.faults
        filler.unlink()
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        assert len(st.store.sessions()) == 2


async def test_corrupt_journal_is_set_aside_and_rows_recovered(tmp_path):
    async with running_station(tmp_path) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await st.world.tap(CARD)
        await state_is(st, "Available")
    db = tmp_path / "journal.db"
    data = bytearray(db.read_bytes())
    data[100:120] = b"\xff" * 20  # damage the first page's header area
    db.write_bytes(bytes(data))
    async with running_station(tmp_path) as st:
        assert any(p.name.startswith("journal.db.corrupt-") for p in tmp_path.iterdir())
        assert st.charger.state.value == "Available"


async def test_german_lcd(tmp_path):
    async with running_station(tmp_path, {"station.language": "de", "lcd.cols": 20, "lcd.rows": 4}) as st:
        await until(lambda: "Karte" in lcd(st), what="German idle screen")
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await st.world.tap(CARD)
        await state_is(st, "Available")


async def test_reader_never_releases_all_pins(tmp_path):
    async with running_station(tmp_path) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
    assert fakegpio.cleanup_calls == []


async def test_systemd_notify_ready_watchdog_status(tmp_path, notify_socket):
    async with running_station(tmp_path / "state"):
        await until(lambda: "WATCHDOG=1" in notify_socket.drain(), what="WATCHDOG=1")
        assert any("READY=1" in m and "STATUS=Available" in m for m in notify_socket.got)
    assert any("STOPPING=1" in m for m in notify_socket.drain())


def test_sessions_command_json_and_csv(tmp_path, capsys):
    async def one() -> None:
        async with running_station(tmp_path) as st:
            st.world.set_load(0)
            await st.world.tap(CARD)
            await state_is(st, "SuspendedEV")
            st.world.consume(42)
            await st.world.tap(CARD)
            await state_is(st, "Available")
            await st.flush(10)

    asyncio.run(one())
    assert main(["sessions", "--state-dir", str(tmp_path), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["energy_wh"] == 42 and row["delivered"] is True
    assert main(["sessions", "--state-dir", str(tmp_path), "--csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("id,id_tag,meter_start_wh") and ",42," in out[1]
    assert main(["sessions", "--state-dir", str(tmp_path)]) == 0
    assert CARD in capsys.readouterr().out


def test_diagram_shows_every_state(capsys):
    from station.core.states import State

    assert main(["diagram"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stateDiagram-v2")
    for s in State:
        assert s.value in out


def test_demo_without_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    assert main(["--log-level", "WARNING", "simulate", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Session 1: D64FC93B" in out and "delivered" in out


@pytest.mark.parametrize("kind", ["local"])
def test_config_used_by_simulate_is_forced_to_sim(tmp_path, kind):
    cfg_file = tmp_path / "station.toml"
    cfg_file.write_text(f'[hardware]\nmode = "pi"\n[backend]\nkind = "{kind}"\n')
    from station.sim.demo import simulation_config

    cfg = simulation_config(str(cfg_file), str(tmp_path / "s"))
    assert cfg.hardware.mode == "sim" and cfg.station.state_dir == str(tmp_path / "s")
    assert make_config(tmp_path).hardware.mode == "sim"
