"""The status page under attack: guessing from many addresses, a guesser sharing the owner's address,
slow connections, and the log kept to a line a minute (issue 23, item 3).

A whole station on emulated hardware serves the page; the attackers are raw HTTP clients over real
sockets from many loopback addresses (Linux routes all of 127.0.0.0/8 to lo, so a client can bind to
127.1.2.3 and the page sees that address). The policy on its own, with time injected, is at the end.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from station import pageauth
from station.pageauth import PasswordGuard
from tests.stations import running_station, until
from tests.support.page import PAGE, PASSWORD, basic

GOOD = basic("station", PASSWORD)
CONFIG = {**PAGE, "status_page.password": PASSWORD}


async def get(port: int, source: str = "127.0.0.1", headers: dict[str, str] | None = None,
              ) -> tuple[int, dict[str, str]]:
    """One request from `source`; (status, headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    lines = ["GET /api/status HTTP/1.1", f"Host: 127.0.0.1:{port}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    got = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
    return int(head[0].split()[1]), got


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "station.statuspage" and r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def short_hold(monkeypatch):
    """A request held while a budget is spent waits 30 s in the field; here a moment (the order of
    events, not the length of the wait, is what the tests check)."""
    monkeypatch.setattr(pageauth, "HOLD_S", 0.05)


async def test_the_owners_device_gets_in_while_a_guesser_at_its_address_is_locked_out(tmp_path):
    """NAT, a reverse proxy, an ssh -L tunnel: the guesser and the owner are both 127.0.0.1."""
    async with running_station(tmp_path, CONFIG) as st:
        port = st.status_page._server.port
        code, headers = await get(port, headers=GOOD)  # the owner signed in once, before the attack
        assert code == 200
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        device = {"Cookie": "lang=en; " + cookie.split(";")[0], **GOOD}
        answers = [(await get(port, headers=basic("station", f"guess{n}")))[0] for n in range(12)]
        assert answers == [401] * pageauth.PER_ADDRESS + [429] * (12 - pageauth.PER_ADDRESS)
        for _ in range(3):  # the guessing goes on, and the owner's device still gets in
            assert (await get(port, headers=basic("station", "guess")))[0] == 429
            assert (await get(port, headers=device))[0] == 200
        # the cookie is no password (a made-up cookie lifts nothing: the policy test below)
        assert (await get(port, headers={**device, **basic("station", "guess")}))[0] == 401
        # a device that never signed in gets in too: its request is held, then its password checked
        code, headers = await get(port, headers=GOOD)
        assert code == 200 and "set-cookie" in headers
        # while a wrong one held as long is answered 429 (counted): the hold bounds guessing, not the owner
        code, headers = await get(port, headers=basic("station", "guess-after-hold"))
        assert code == 429 and 1 <= int(headers["retry-after"]) <= 60


async def test_401_addresses_with_5_guesses_each_get_429s_and_a_few_log_lines(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, "station.statuspage")
    monkeypatch.setattr(pageauth, "HOLD_S", 0.001)  # 2004 requests one after another, within the tally's minute
    sources = [f"127.1.{n // 200}.{n % 200 + 1}" for n in range(401)]
    async with running_station(tmp_path, CONFIG) as st:
        port = st.status_page._server.port
        codes: list[int] = []
        for guess in range(5):
            for source in sources:
                codes.append((await get(port, source, basic("station", f"{source}-{guess}")))[0])
        assert codes.count(401) == pageauth.OVERALL and codes.count(429) == len(codes) - pageauth.OVERALL
        during = warnings(caplog)
        # the owner's device that signed in before is not locked out by the overall budget either
        assert st.status_page._guard is not None
        device = {"Cookie": f"{pageauth.COOKIE}={st.status_page._guard.cookie_value}", **GOOD}
        assert (await get(port, "127.9.9.9", device))[0] == 200
    assert len(during) <= 2, during  # the first at once, the rest summed up a minute later
    summary = warnings(caplog)[-1]
    assert f"{len(codes) - 1} more" in summary and "429" in summary


async def test_50_slow_connections_from_one_host_leave_a_normal_client_served(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "station.statuspage")
    async with running_station(tmp_path, PAGE) as st:
        port = st.status_page._server.port
        opened = 0

        async def slow_forever() -> None:
            nonlocal opened
            while True:  # a connection that sends half a request head and stalls, reopened when closed
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
                    opened += 1
                    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    await reader.read()
                    writer.close()
                except OSError:
                    await asyncio.sleep(0.01)

        attackers = [asyncio.create_task(slow_forever()) for _ in range(50)]
        try:
            await until(lambda: opened >= 50, 30, "50 slow connections opened")
            served = [(await get(port, "127.0.0.3"))[0] for _ in range(35)]
            held = [s for s in st.status_page._server.admission.slots() if s.peer == "127.0.0.2"]
        finally:
            for task in attackers:
                task.cancel()
            await asyncio.gather(*attackers, return_exceptions=True)
        assert served == [200] * 35
        assert len(held) <= 4
    assert len(warnings(caplog)) <= 3  # not a line per closed connection


async def test_slow_connections_from_many_hosts_cannot_fill_the_table(tmp_path):
    async with running_station(tmp_path, PAGE) as st:
        port = st.status_page._server.port
        held = []
        for n in range(40):  # 40 addresses, one stalled connection each: more than the 16 places
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.2.0.{n + 1}", 0))
            writer.write(b"GET / HTTP/1.1\r\n")
            await writer.drain()
            held.append(writer)
        try:
            assert [(await get(port, "127.0.0.4"))[0] for _ in range(10)] == [200] * 10
        finally:
            for writer in held:
                writer.close()


# ---------------------------------------------------------------- the policy alone, time injected

def test_budgets_expire_after_the_window_and_bound_memory():
    guard = PasswordGuard("station", PASSWORD)
    wrong = "Basic " + __import__("base64").b64encode(b"station:nope").decode()
    right = GOOD["Authorization"]
    for t in range(5):
        assert guard.check(wrong, "", "10.0.0.1", float(t)).status == 401
    # the address is locked: a request is held first (hold_s), then its password decides
    held = guard.check(right, "", "10.0.0.1", 10.0)
    assert held == pageauth.Verdict(0, hold_s=pageauth.HOLD_S) and held.hold_s > 0
    assert guard.check(right, "", "10.0.0.1", 40.0, held=True).status == 200  # the right one always gets in
    locked = guard.check(wrong, "", "10.0.0.1", 40.0, held=True)
    assert locked.status == 429 and locked.reason == pageauth.LOCKED_ADDRESS and locked.retry_after == 21  # 60 - (40 - 1)
    assert guard.check(right, "", "10.0.0.2", 10.0).status == 200  # another address is not locked
    assert guard.check(right, "", "10.0.0.1", 90.5).status == 200  # the failures are a minute old
    assert guard.check("", "", "10.0.0.1", 91.0) == pageauth.Verdict(401)  # no credentials: counts as nothing
    for n in range(3000):
        guard.check(wrong, "", f"10.1.{n // 250}.{n % 250}", 100.0 + n / 1000)
    assert len(guard._by_address) <= pageauth.ADDRESSES and len(guard._all) == pageauth.OVERALL
    assert guard.check(right, "", "10.9.9.9", 103.0).hold_s > 0  # the overall budget is spent
    assert guard.check(wrong, "", "10.9.9.9", 103.0, held=True).reason == pageauth.LOCKED_OVERALL
    assert guard.check(right, f"x=1; {pageauth.COOKIE}={guard.cookie_value}", "10.9.9.9", 103.0).status == 200
    assert guard.check(right, f"{pageauth.COOKIE}={'0' * 32}", "10.9.9.9", 103.0).hold_s > 0  # a made-up one is held
    assert guard.check(right, "", "10.9.9.9", 200.0).status == 200


@pytest.mark.parametrize("password", ["other password", PASSWORD + "x"])
def test_the_cookie_dies_with_the_password(password):
    assert PasswordGuard("station", password).cookie_value != PasswordGuard("station", PASSWORD).cookie_value
