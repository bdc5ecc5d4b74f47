"""What a newcomer meets in `station simulate`: the demo behaves like a real station, the keys do what
the help line says, the view tells the truth about the backend link, and the journal is where it was
asked to be.

The demo runs whole (emulated chips, the embedded MCSP reference server as the backend); keys go
through the same `press()` the terminal view calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

from station.cli import main
from station.daemon import Station
from station.sim.demo import PRODUCTION_STATE_DIR, prepare, simulation_config
from station.sim.tui import View, press, render
from tests.stations import lcd, state_is, until

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def demo(state_dir, config: str | None = None):
    cfg, embedded = await prepare(config, None if state_dir is None else str(state_dir))
    station = Station(cfg, embedded=embedded)
    await station.start()
    tasks: set[asyncio.Task] = set()
    try:
        yield station, View(station), tasks
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
        await station.stop()


async def test_demo_is_a_station_with_a_plug_sensor_and_a_stop_button(tmp_path):
    async with demo(tmp_path) as (st, view, tasks):
        assert view.has_plug and view.has_stop
        help_line = view.help()
        assert "p plug/unplug the car" in help_line and "s stop button" in help_line
        # A car that is not plugged in draws nothing: the tap waits for the plug.
        assert await press(st, view, "2", tasks) == ""
        await state_is(st, "Preparing")
        await asyncio.sleep(2.5)  # two meter samples at the demo's 1 s
        assert not st.world.contactor_closed and st.world.power_w == 0
        assert st.charger.reading.power_w == 0
        await press(st, view, "p", tasks)
        await state_is(st, "Charging", timeout=15)
        assert st.world.contactor_closed and st.world.power_w == 7400
        await press(st, view, "s", tasks)
        await state_is(st, "Finishing")
        # Still plugged after the session: the station says so, and does not invite the next tap.
        await asyncio.sleep(st.config.charging.finishing_s + 1.5)
        assert st.charger.state.value == "Finishing"
        assert "tap card" not in lcd(st).lower()
        await press(st, view, "p", tasks)
        await state_is(st, "Available")
        assert "tap card" in lcd(st).lower()
        [s] = st.store.sessions()
        assert s.stop_reason == "Local" and s.id_tag == "D64FC93B"


async def test_keys_tap_the_apartment_their_label_names(tmp_path):
    """The label of each key is checked against the apartment the backend (the MCSP server) billed."""
    async with demo(tmp_path) as (st, view, tasks):
        labels = {key: label for key, (uid, label) in view.cards.items()}
        assert labels == {"1": "Apartment 1", "2": "Apartment 2", "3": "Apartment 3", "4": "an unknown card"}
        assert "tap: 1 Apartment 1, 2 Apartment 2, 3 Apartment 3, 4 an unknown card" in view.help()
        st.world.plug(True)
        for key in ("1", "2", "3"):
            await st.world.tap(view.cards[key][0])
            await state_is(st, "Charging", timeout=15)
            assert labels[key] in render(st, color=False, view=view)  # the session line names the apartment
            await st.world.tap(view.cards[key][0])
            await state_is(st, "Finishing")
            st.world.plug(False)
            await state_is(st, "Available")
            st.world.plug(True)
        assert await st.flush(15)
        billed = [r.apartment for r in st.embedded.sessions()]
        assert billed == ["Apartment 1", "Apartment 2", "Apartment 3"]
        await st.world.tap(view.cards["4"][0])
        await until(lambda: "refused" in lcd(st).lower() or "not" in lcd(st).lower(), what="the refusal")
        assert len(st.embedded.sessions()) == 3


async def test_backend_key_shows_the_link_and_what_the_station_sees(tmp_path):
    async with demo(tmp_path) as (st, view, tasks):
        await until(lambda: st.charger.online, timeout=15, what="the demo backend online")
        text = render(st, color=False, view=view)
        assert "link up; the station sees it online" in text
        await press(st, view, "b", tasks)
        text = render(st, color=False, view=view)
        # At once, whatever the station has noticed so far.
        assert "link DOWN (key b)" in text
        assert ("sees it online (not noticed yet" in text) == st.charger.online
        st.world.plug(True)
        await st.world.tap("D64FC93B")  # the station asks the server: now it knows
        await until(lambda: not st.charger.online, timeout=20, what="the station noticing the outage")
        assert "link DOWN (key b); the station sees it OFFLINE" in render(st, color=False, view=view)
        await press(st, view, "b", tasks)
        assert "link up" in render(st, color=False, view=view)


def test_shipped_config_in_the_simulator_promises_nothing_it_lacks(tmp_path, monkeypatch):
    """`station simulate -c config/station.toml`: the local backend lists no cards, no plug sensor, no button."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))

    async def run() -> tuple[View, str, str, str | None]:
        async with demo(None, str(ROOT / "config" / "station.toml")) as (st, view, tasks):
            p = await press(st, view, "p", tasks)
            s = await press(st, view, "s", tasks)
            await press(st, view, "1", tasks)
            await asyncio.gather(*tasks)
            await until(lambda: len(st.store.sessions(("refused",))) == 1, what="the tap refused")
            return view, p, s, st.config.station.state_dir

    view, p, s, state_dir = asyncio.run(run())
    help_line = view.help()
    assert "registered" not in help_line and "Apartment" not in help_line
    assert "not listed: refused" in help_line
    assert "p (no plug sensor in this config)" in help_line and "s (no stop button in this config)" in help_line
    assert "no plug sensor" in p and "no stop button" in s
    # The shipped file says state_dir = "/var/lib/station": the simulation keeps away from that journal.
    assert state_dir == str(tmp_path / "xdg" / "station-sim") != PRODUCTION_STATE_DIR


def test_config_with_wired_inputs_gets_emulated_ones(tmp_path):
    cfg = tmp_path / "station.toml"
    cfg.write_text("[inputs]\nev_connected_pin = 22\nstop_button_pin = 27\n")
    c = simulation_config(str(cfg), str(tmp_path / "s"))
    assert c.sim.ev_connected_input and c.sim.stop_button_input
    cfg.write_text("[inputs]\nev_connected_pin = 22\n[sim]\nev_connected_input = false\n")
    c = simulation_config(str(cfg), str(tmp_path / "s"))
    assert not c.sim.ev_connected_input and not c.sim.stop_button_input


def test_state_dir_flag_then_config_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[station]\nstate_dir = "{tmp_path / "from-config"}"\n')
    assert simulation_config(str(cfg), str(tmp_path / "flag")).station.state_dir == str(tmp_path / "flag")
    assert simulation_config(str(cfg), None).station.state_dir == str(tmp_path / "from-config")
    assert simulation_config(str(cfg), None, scenario=True).station.state_dir == str(tmp_path / "from-config")
    cfg.write_text("[meter]\nmodel = \"SDM120\"\n")
    assert simulation_config(str(cfg), None).station.state_dir == str(tmp_path / "xdg" / "station-sim")
    assert "station-sim-" in simulation_config(str(cfg), None, scenario=True).station.state_dir
    cfg.write_text(f'[station]\nstate_dir = "{PRODUCTION_STATE_DIR}"\n')
    assert simulation_config(str(cfg), None).station.state_dir != PRODUCTION_STATE_DIR
    assert simulation_config(str(cfg), PRODUCTION_STATE_DIR).station.state_dir == PRODUCTION_STATE_DIR  # asked for


def test_scenario_journal_goes_where_the_config_says(tmp_path, capsys):
    journal = tmp_path / "journal-here"
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[station]\nstate_dir = "{journal}"\n[backend.local.tags]\nD64FC93B = "Apartment 2"\n')
    code = main(["--log-level", "WARNING", "simulate", "-c", str(cfg), "--scenario",
                 str(ROOT / "tests" / "scenarios" / "one_session.toml"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] is True and out["failures"] == []
    assert out["state_dir"] == str(journal) and (journal / "journal.db").exists()
    assert main(["sessions", "--state-dir", str(journal), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["energy_wh"] == 1500


def test_scenario_json_reports_failures(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[step]]\naction = "tap"\nuid = "6AC32B40"\n[[step]]\naction = "expect"\nstate = "Charging"\nwithin = 1\n')
    code = main(["--log-level", "WARNING", "simulate", "--scenario", str(bad), "--state-dir", str(tmp_path / "s"),
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["ok"] is False
    [failure] = out["failures"]
    assert failure.startswith("step 2: expected Charging within 1 s")


def test_scenario_stop_step_works_on_the_demo(tmp_path, capsys):
    scenario = tmp_path / "stop.toml"
    scenario.write_text('[[step]]\naction = "tap"\nuid = "D64FC93B"\n[[step]]\naction = "expect"\n'
                        'state = "SuspendedEV"\n[[step]]\naction = "stop"\n[[step]]\naction = "expect"\n'
                        'state = "Available"\nwithin = 10\n')
    code = main(["--log-level", "WARNING", "simulate", "--scenario", str(scenario), "--state-dir",
                 str(tmp_path / "s"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert [s["stop_reason"] for s in out["sessions"]] == ["Local"]


def test_readme_first_screen_matches_the_simulator(tmp_path):
    """The part of the README before "On a Raspberry Pi": the keys, the commands, the status page."""
    readme = (ROOT / "README.md").read_text()
    first = readme[:readme.index("## On a Raspberry Pi")]

    async def help_line() -> str:
        async with demo(tmp_path) as (st, view, tasks):
            # Not at once: an MCSP backend closed within its first second can hang (reported).
            await until(lambda: st.charger.online, timeout=15, what="the demo backend online")
            return view.help()

    line = asyncio.run(help_line())
    keys = re.findall(r"(?:tap: |, |; )(\d|[a-z]|\+/-) ([^,;]+)", line)
    assert [k for k, _ in keys] == ["1", "2", "3", "4", "p", "s", "+/-", "b", "q"]
    for key, what in keys:
        assert f"`{key}` {what}" in first, f"README does not say `{key}` {what}"
    from station.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"| `station {name}" in first, f"the commands table lacks `station {name}`"
    assert "--status-page" in first and "status page" in first.lower()


def test_a_controller_scenario_checks_the_offered_current(tmp_path, capsys):
    """The example configuration with a charge controller, a scripted car and `expect offered_a`."""
    code = main(["--log-level", "WARNING", "simulate", "-c", str(ROOT / "config" / "examples" / "evse-din.toml"),
                 "--scenario", str(ROOT / "tests" / "scenarios" / "evse-din" / "session.toml"), "--state-dir",
                 str(tmp_path / "s"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] is True, out["failures"]
    [session] = out["sessions"]
    assert session["stop_reason"] == "Other" and session["energy_wh"] >= 0  # ended by the residual current


def test_a_scenario_expecting_the_wrong_current_fails_and_says_what_it_saw(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[step]]\naction = "plug"\n[[step]]\naction = "expect"\noffered_a = 10\nwithin = 1\n')
    code = main(["--log-level", "WARNING", "simulate", "-c", str(ROOT / "config" / "examples" / "evse-din.toml"),
                 "--scenario", str(bad), "--state-dir", str(tmp_path / "s"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["failures"] == ["step 2: expected offering 10 A within 1 s, station is Preparing, "
                                             "offering 0 A"]
    no_board = tmp_path / "car.toml"
    no_board.write_text('[[step]]\naction = "car"\nasleep = true\n')
    code = main(["--log-level", "WARNING", "simulate", "--scenario", str(no_board), "--state-dir", str(tmp_path / "t"),
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and "needs an emulated charge controller" in out["failures"][0]


async def test_the_terminal_view_plays_the_car_on_the_pilot(tmp_path):
    async with demo(tmp_path, str(ROOT / "config" / "examples" / "evse-din.toml")) as (st, view, tasks):
        assert view.has_pilot and view.has_plug and "a asleep" in view.help()
        await press(st, view, "p", tasks)
        await press(st, view, "2", tasks)
        await state_is(st, "Charging", timeout=15)
        await until(lambda: st.world.controller.offered_a == 16, what="16 A offered")
        text = render(st, color=False, view=view)
        assert "pilot      state C, offered 16 A" in text and "the station offers 16 A" in text
        assert "contactor  CLOSED" in text  # the board's relay (no GPIO contactor in this config)
        await press(st, view, "a", tasks)  # the car falls asleep: B with current offered
        await state_is(st, "SuspendedEV")
        assert ", asleep" in render(st, color=False, view=view)
        await press(st, view, "a", tasks)
        await state_is(st, "Charging")
        await press(st, view, "h", tasks)
        assert st.world.car.phases == 1
        await press(st, view, "r", tasks)
        await state_is(st, "Faulted")
        await press(st, view, "r", tasks)
        await state_is(st, "Preparing")
    async with demo(tmp_path / "plain") as (st, view, tasks):
        assert not view.has_pilot and "a asleep" not in view.help()
        assert "charge controller" in await press(st, view, "v", tasks)


def test_a_scenario_waits_for_the_backend_and_says_what_it_saw(tmp_path, capsys):
    """`expect online = true` waits for the backend (the demo's embedded one); expecting it offline then
    fails and says what it saw."""
    scenario = tmp_path / "online.toml"
    scenario.write_text('settle_s = 0\n[[step]]\naction = "expect"\nonline = true\nwithin = 30\n'
                        '[[step]]\naction = "expect"\nonline = false\nwithin = 0.5\n')
    code = main(["--log-level", "WARNING", "simulate", "--scenario", str(scenario), "--state-dir",
                 str(tmp_path / "s"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["failures"] == ["step 2: expected backend offline within 0.5 s, station is Available, "
                                             "backend online"]
