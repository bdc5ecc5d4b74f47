"""Tag and station enumeration at the MCSP reference server (issue 23, item 4).

The guesser is a raw TCP client of the test's own that writes requests as docs/mcsp.md §2 spells them
(not the station's codec); the server is the real one on 127.0.0.1. A real station on the same server
is the whole simulated station, so what a station does with the server's answer is the real client's.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from station.servers.mcsp import McspServer
from station.servers.mcsp import refusals as refusals_mod
from station.servers.mcsp.refusals import RefusalBudget
from tests.stations import CARD, TAGS, running_station, state_is, until

SECRET = "s3cret-s3cret-s3cret-1"
STATIONS = {"Tankstelle1": SECRET, "Tankstelle2": "another-secret-0123"}


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: McspServer) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", server.port))

    async def ask(self, action: str, **headers: str) -> dict[str, str]:
        """One request, its reply as {"status": OK|ERROR, header: value}."""
        lines = [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.writer.write((f"MMETERING/1.0 {action}\r\nContent-Length: {len(lines)}\r\n"
                           + "".join(line + "\r\n" for line in lines)).encode())
        await self.writer.drain()
        reply = {"status": (await asyncio.wait_for(self.reader.readline(), 10)).decode().split()[1]}
        while (line := (await asyncio.wait_for(self.reader.readline(), 10)).decode().strip()):
            name, _, value = line.partition(": ")
            reply[name] = value
        return reply

    def close(self) -> None:
        self.writer.close()


def guesses(n: int) -> list[str]:
    return [f"{0xA0000000 + i:08X}" for i in range(n)]


async def test_one_407_for_an_unknown_station_and_a_wrong_or_missing_secret():
    server = McspServer(tags=TAGS, stations=STATIONS)
    await server.start()
    try:
        answers = []
        for action, headers in (("HEARTBEAT", {"Name": "Nobody", "Auth": SECRET}), ("HEARTBEAT", {"Name": "Tankstelle1"}),
                                ("HEARTBEAT", {"Name": "Tankstelle1", "Auth": "wrong"}),
                                ("START", {"Name": "Nobody", "Key": CARD})):
            c = await RawClient.open(server)  # an unproven connection is closed after 3 refusals
            answer = await c.ask(action, **headers)
            c.close()
            answer.pop("Time", None)
            answers.append(answer)
        assert answers == [{"status": "ERROR", "Message": "Station not authenticated", "Code": "407"}] * 4
    finally:
        await server.close()


async def test_a_station_guessing_keys_gets_503_after_10_refusals_and_learns_nothing(caplog):
    caplog.set_level(logging.WARNING)
    server = McspServer(tags=TAGS, stations=STATIONS)
    await server.start()
    try:
        c = await RawClient.open(server)
        keys = guesses(300)
        keys[200] = CARD  # a key that exists, among the guesses
        codes = [(await c.ask("START", Name="Tankstelle1", Key=k, Auth=SECRET)).get("Code", "OK") for k in keys]
        during = [r for r in caplog.records if r.levelno >= logging.WARNING]
        # another station of the building is not held up by the guesser
        other = await RawClient.open(server)
        assert (await other.ask("START", Name="Tankstelle2", Key=CARD, Auth=STATIONS["Tankstelle2"]))["status"] == "OK"
        c.close()
        other.close()
    finally:
        await server.close()  # flushes the minute's summary
    per = refusals_mod.PER_STATION
    assert codes == ["401"] * per + ["503"] * (len(keys) - per)  # the existing key got 503 too
    assert len(during) <= 1, [r.getMessage() for r in during]  # the first refusal, at once
    summary = [r.getMessage() for r in caplog.records if "refusals, last" in r.getMessage()]
    assert len(summary) == 1 and "Tankstelle1" in summary[0] and f"{len(keys) - 1} more" in summary[0], summary


async def test_made_up_station_names_hit_the_overall_budget():
    """Without a [stations] table a name is anyone's: the overall budget bounds a guesser who rotates them."""
    server = McspServer(tags=TAGS)
    await server.start()
    try:
        c = await RawClient.open(server)
        codes = [(await c.ask("START", Name=f"made-up-{n}", Key=k)).get("Code", "OK")
                 for n, k in enumerate(guesses(150))]
        c.close()
    finally:
        await server.close()
    assert codes == ["401"] * refusals_mod.OVERALL + ["503"] * (150 - refusals_mod.OVERALL)


async def test_a_real_station_under_its_guessed_name_loses_no_session(tmp_path, caplog):
    """The worst case: a guesser with this station's own secret used up its budget. The real station's tap
    gets 503, which every station treats as "not now" (offline policy; START kept and offered again), and
    the session reaches the server once the budget has recovered (a window of 3 s here, a minute in use)."""
    caplog.set_level(logging.INFO, "station.backends.mcsp.client")
    server = McspServer(tags=TAGS, stations=STATIONS)
    server.refusals = RefusalBudget(window_s=3.0)
    await server.start()
    config = {"backend.kind": "mcsp", "station.name": "Tankstelle1", "backend.mcsp.url": server.url,
              "backend.mcsp.secret": SECRET, "backend.mcsp.timeout_s": 3.0, "backend.offline_policy": "cached"}
    try:
        async with running_station(tmp_path, config) as st:
            assert await st.backend.wait_ready(10)
            await st.world.tap(CARD)  # an ordinary session first: the card is in the cache
            await state_is(st, "SuspendedEV")
            await st.world.tap(CARD)
            await state_is(st, "Available")
            assert await st.flush(10)
            guesser = await RawClient.open(server)
            for k in guesses(refusals_mod.PER_STATION + 1):
                await guesser.ask("START", Name="Tankstelle1", Key=k, Auth=SECRET)
            guesser.close()
            await st.world.tap(CARD)
            await state_is(st, "SuspendedEV")  # the offline policy let the cached card charge
            st.world.consume(321)
            await st.world.tap(CARD)
            await state_is(st, "Available")
            await until(lambda: len([s for s in server.sessions() if s.state == "closed"]) == 2, 30,
                        "the second session delivered once the budget recovered")
        assert server.sessions()[-1].energy_wh == 321 and server.sessions()[-1].tag == CARD
        assert any("ERROR 503" in r.getMessage() for r in caplog.records)  # the tap did get the 503
    finally:
        await server.close()


# ---------------------------------------------------------------- the rule alone, time injected

def test_the_budget_slides_with_the_window_and_forgets_old_names():
    b = RefusalBudget()
    for t in range(10):
        assert b.over("A", float(t)) is None
        b.refused("A", float(t))
    assert "this station" in b.over("A", 30.0) and b.over("B", 30.0) is None
    assert b.over("A", 60.5) is None  # the first refusal is a minute old
    for n in range(refusals_mod.STATIONS_MAX + 50):
        b.refused(f"name-{n}", 100.0)
    assert len(b._by_station) == refusals_mod.STATIONS_MAX
    assert "within a minute" in b.over("fresh", 120.0) and b.over("fresh", 161.0) is None


@pytest.mark.parametrize("code", ["401", "403"])
def test_refusals_of_both_kinds_count(code):
    tags = {CARD: "Apartment 2"}
    from station.servers.mcsp.tags import TagEntry

    server = McspServer(tags={CARD: TagEntry("Apartment 2", frozenset({"Elsewhere"})) if code == "403" else tags[CARD]})
    from station.backends.mcsp import codec

    other = "0BADCAFE"
    for _ in range(refusals_mod.PER_STATION):
        r = server.handle(codec.request("START", name="S", key=CARD if code == "403" else other))
        assert str(r.code) == code
    assert server.handle(codec.request("START", name="S", key=CARD)).code == 503
