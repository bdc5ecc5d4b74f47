"""The local status page over real HTTP: what it shows, who may see it, and that it changes nothing.

A whole station runs on emulated hardware; requests are raw HTTP/1.1 over
loopback (our own tiny client below, so that malformed requests can be sent
too). The browser's view is in test_status_page_browser.py.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import socket

import pytest

from station import pageauth
from station.cli import main
from tests.stations import CARD, CARD7, lcd, running_station, state_is, two_sessions_and_a_refusal, until
from tests.support.page import PAGE, PASSWORD, basic, http, status_json


async def test_off_by_default_and_no_port_opened(tmp_path):
    async with running_station(tmp_path) as st:
        assert st.status_page is None
        assert not st.config.status_page.enabled


async def test_json_shows_state_lcd_meter_session_backend(tmp_path):
    async with running_station(tmp_path, {**PAGE, "sim.load_w": 7400.0}) as st:
        port = st.status_page._server.port
        s = await status_json(port)
        assert s["state"] == "Available" and s["session"] is None and s["contactor"] == "open"
        assert s["backend"] == {"kind": "local", "online": True, "queued": 0, "held": 0, "emulated_link": "up"}
        await st.world.tap(CARD)
        await state_is(st, "Charging")
        await until(lambda: "kW" in lcd(st), what="power on the LCD")
        s = await status_json(port)
        assert s["state"] == "Charging" and s["contactor"] == "closed"
        assert s["lcd"] == [line.rstrip() for line in st.world.lcd_text()]
        assert s["meter"]["model"] == "SDM630" and s["meter"]["power_w"] == pytest.approx(7400, rel=0.01)
        assert s["session"]["id"] == 1 and s["session"]["meter_start_wh"] == 0
        # No password: the tag is masked, here and in the list of sessions.
        assert s["id_tags"] == "masked" and CARD not in json.dumps(s)
        assert s["session"]["id_tag"] == "…3B"
        assert [r["id"] for r in s["sessions"]] == [1] and s["sessions"][0]["state"] == "active"


async def test_backend_link_and_queue_as_they_are(tmp_path):
    async with running_station(tmp_path, PAGE) as st:
        port = st.status_page._server.port
        await st.world.backend_link(False)
        s = await status_json(port)
        assert s["backend"]["emulated_link"] == "down" and s["backend"]["online"] is False
        await st.world.tap(CARD)  # known card, offline: cached? never accepted online, so refused
        await state_is(st, "Available")
        await st.world.backend_link(True)
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await st.world.backend_link(False)
        await st.world.tap(CARD)  # stop offline: the STOP waits in the queue
        await state_is(st, "Available")
        s = await status_json(port)
        assert s["backend"]["queued"] == st.store.pending_messages() >= 1
        assert "OFFLINE" in (await http(port))[2].decode()
        await st.world.backend_link(True)
        assert await st.flush(10)
        s = await status_json(port)
        assert s["backend"]["queued"] == 0 and s["backend"]["online"] is True
        [row] = s["sessions"]
        assert row["delivered"] is True and row["stop_reason"] == "Local"


async def test_recent_faults(tmp_path):
    async with running_station(tmp_path, PAGE) as st:
        port = st.status_page._server.port
        st.world.meter.set_dead(True)
        await state_is(st, "Faulted", timeout=20)
        s = await status_json(port)
        assert s["state"] == "Faulted" and s["faults"][0]["source"] == "meter"
        assert s["recent_faults"][0]["source"] == "meter" and s["recent_faults"][0]["cleared_at"] is None
        st.world.meter.set_dead(False)
        await state_is(st, "Available", timeout=20)
        s = await status_json(port)
        assert s["faults"] == []
        [fault] = s["recent_faults"]
        assert fault["source"] == "meter" and fault["code"] == "PowerMeterFailure" and fault["cleared_at"]
        page = (await http(port))[2].decode()
        assert "Recent faults" in page and "not yet" not in page


async def test_html_page_is_escaped_and_refreshes(tmp_path):
    name = 'Garage <b>&"'
    async with running_station(tmp_path, {**PAGE, "station.name": name}) as st:
        code, headers, body = await http(st.status_page._server.port)
        page = body.decode()
        assert code == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert "Garage &lt;b&gt;&amp;&quot;" in page and "<b>&" not in page
        assert '<meta http-equiv="refresh" content="5">' in page
        assert 'id="state" class="badge Available"' in page
        assert "script" not in page.lower()
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"


def test_csv_download_with_password_shows_full_tags(tmp_path):
    two_sessions_and_a_refusal(tmp_path)

    async def fetch():
        async with running_station(tmp_path, {**PAGE, "status_page.password": PASSWORD}) as st:
            return await http(st.status_page._server.port, path="/sessions.csv", headers=basic("station", PASSWORD))

    code, headers, body = asyncio.run(fetch())
    assert code == 200 and headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"] == 'attachment; filename="station-1-sessions.csv"'
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    # Newest first; the refused tap (id 2) is no session.
    assert [(r["id"], r["id_tag"], r["energy_wh"], r["delivered"]) for r in rows] == [
        ("3", CARD7, "7", "true"), ("1", CARD, "42", "true")]


async def test_password_required_wrong_password_and_lockout(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, "station.statuspage")
    async with running_station(tmp_path, {**PAGE, "status_page.password": PASSWORD}) as st:
        port = st.status_page._server.port
        for path in ("/", "/api/status", "/sessions.csv", "/nothing"):
            code, headers, body = await http(port, path=path)
            assert code == 401 and headers["www-authenticate"].startswith('Basic realm="station station-1"')
            assert b"Available" not in body
        good = basic("station", PASSWORD)
        s = await status_json(port, good)
        assert s["id_tags"] == "full"
        assert (await http(port, headers=basic("admin", PASSWORD)))[0] == 401  # the user name counts too
        assert (await http(port, headers={"Authorization": "Basic !!!"}))[0] == 401
        for _ in range(4):
            assert (await http(port, headers=basic("station", "guess")))[0] == 401
        assert any("wrong user or password (127.0.0.1)" in r.getMessage() for r in caplog.records)
        # Five wrong ones within a minute: from now on this address's requests are held before their
        # password is looked at (pageauth.HOLD_S), and a wrong one is refused for a while; the right
        # one still gets in after the hold (test_status_page_guard.py: the cookie of an earlier sign-in).
        monkeypatch.setattr(pageauth, "HOLD_S", 0.05)
        st.status_page._guard.hold_s = pageauth.HOLD_S
        code, headers, _ = await http(port, headers=basic("station", "guess"))
        assert code == 429 and headers["retry-after"] == "60"
        assert (await http(port, headers=good))[0] == 200


async def test_read_only_every_other_method_is_refused_and_changes_nothing(tmp_path):
    async with running_station(tmp_path, {**PAGE, "sim.load_w": 0.0}) as st:
        port = st.status_page._server.port
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        before = (st.charger.state, st.world.contactor_closed, st.store.pending_messages())
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            for path in ("/", "/api/status", "/sessions.csv", "/api/stop"):
                code, headers, _ = await http(port, method, path, headers={"Content-Length": "0"})
                assert code == 405 and headers["allow"] == "GET, HEAD", (method, path)
        code, headers, body = await http(port, "HEAD", "/api/status")
        assert code == 200 and body == b"" and int(headers["content-length"]) > 0
        await asyncio.sleep(0.5)
        assert (st.charger.state, st.world.contactor_closed, st.store.pending_messages()) == before


async def test_bad_requests_and_foreign_host_names(tmp_path):
    async with running_station(tmp_path, PAGE) as st:
        port = st.status_page._server.port
        assert (await http(port, raw=b"GARBAGE\r\n\r\n"))[0] == 400
        assert (await http(port, raw=b"GET / HTTP/2.0\r\n\r\n"))[0] == 505
        assert (await http(port, raw=b"GET / HTTP/1.1\r\nX-" + b"a" * 9000 + b": 1\r\n\r\n"))[0] == 431
        assert (await http(port, raw=b"GET / HTTP/1.1\r\nbad header\r\n\r\n"))[0] == 400
        # DNS rebinding: a name that is not this machine's is refused; addresses and localhost are fine.
        assert (await http(port, headers={"Host": "evil.example"}))[0] == 400  # two Host headers
        code, _, _ = await http(port, raw=b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        assert code == 421
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", socket.gethostname()):
            assert (await http(port, raw=f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()))[0] == 200, host
        assert (await http(port, path="/nothing"))[0] == 404
        assert st.charger.state.value == "Available"


async def test_unreadable_password_file_keeps_the_page_off(tmp_path, caplog):
    caplog.set_level(logging.ERROR, "station.statuspage")
    async with running_station(tmp_path / "s", {**PAGE, "status_page.password_file": str(tmp_path / "none")}) as st:
        assert st.status_page.url is None and "cannot read" in st.status_page.disabled_reason
        assert any("status page off" in r.getMessage() for r in caplog.records)
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")  # the station charges regardless


async def test_password_file(tmp_path):
    secret = tmp_path / "page.pw"
    secret.write_text("from a file 123\nignored second line\n")
    async with running_station(tmp_path / "s", {**PAGE, "status_page.password_file": str(secret)}) as st:
        port = st.status_page._server.port
        assert (await http(port))[0] == 401
        assert (await http(port, headers=basic("station", "from a file 123")))[0] == 200


async def test_address_in_use_is_retried_and_the_station_charges(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("station.statuspage.RETRY_BIND_S", 0.2)
    caplog.set_level(logging.INFO, "station.statuspage")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    async with running_station(tmp_path, {**PAGE, "status_page.listen": f"127.0.0.1:{port}"}) as st:
        assert st.status_page.url is None
        assert sum("cannot listen on" in r.getMessage() for r in caplog.records) == 1
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        blocker.close()
        await until(lambda: st.status_page.url is not None, what="the page bound once the port is free")
        assert sum("cannot listen on" in r.getMessage() for r in caplog.records) == 1  # retries are quiet
        assert (await status_json(port))["state"] == "SuspendedEV"


def test_check_config_on_status_page_settings(tmp_path, capsys):
    cfg = tmp_path / "station.toml"
    cfg.write_text('[status_page]\nenabled = true\nlisten = "0.0.0.0:8080"\n'
                   '[backend.local.tags]\nD64FC93B = "Apartment 2"\n')
    assert main(["check-config", str(cfg)]) == 0
    assert "status_page.password_file: no password: anyone who reaches 0.0.0.0:8080" in capsys.readouterr().err
    cfg.write_text(f'[status_page]\nenabled = true\nlisten = "0.0.0.0:8080"\npassword_file = "{tmp_path}/missing"\n'
                   '[backend.local.tags]\nD64FC93B = "Apartment 2"\n')
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "status_page.password_file" in err and "never falls back" in err
    cfg.write_text('[status_page]\nlisten = "8080"\n')
    assert main(["check-config", str(cfg)]) == 2
    assert "status_page.listen: must be HOST:PORT" in capsys.readouterr().err
