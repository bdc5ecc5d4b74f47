"""The billing export cannot carry a spreadsheet formula (OWASP "CSV Injection"), whatever a backend sent.

The id tag (OCPP RemoteStartTransaction, tests/backends/ocpp/test_ocpp_csv_export.py) and the backend's session
id (an MCSP server's Session-Id, here) are text a backend chooses, and the operator opens the export in a
spreadsheet. Each cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return must reach the
CSV bytes with a leading `'`; numbers stay numbers. The MCSP server here is a few lines of the test's own
that speaks the wire format of docs/mcsp.md and answers every START with a hostile Session-Id.
"""

from __future__ import annotations

import asyncio
import csv
import io

import pytest

from station import sessionlist
from station.cli import main
from tests.stations import CARD, running_station, state_is
from tests.support.page import PAGE, PASSWORD, basic, http

# Each way a cell can start a formula (OWASP), as free text from a backend.
FORMULAS = ['=HYPERLINK("http://x","y")', "+1+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+9)*cmd|'/C calc'",
            "\t=1+1", "\r=1+1"]


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("formula", FORMULAS)
def test_every_formula_start_is_neutralised_and_numbers_stay_numbers(formula):
    row = {"id": 7, "id_tag": formula, "meter_start_wh": 1000, "meter_stop_wh": 1500, "energy_wh": 500,
           "started_at": "2026-11-05T14:03:00Z", "stopped_at": "2026-11-05T15:03:00Z", "stop_reason": "Local",
           "backend_session_id": formula, "delivered": True, "estimated": False, "state": "stopped"}
    text = sessionlist.to_csv([row])
    [cell] = parse(text)
    assert cell["id_tag"] == "'" + formula and cell["backend_session_id"] == "'" + formula
    # numeric columns are bare numbers in the bytes, not quoted text
    assert "\r\n7,'" in text or '\r\n7,"\'' in text
    assert (cell["id"], cell["meter_start_wh"], cell["energy_wh"]) == ("7", "1000", "500")
    assert cell["delivered"] == "true" and cell["started_at"] == "2026-11-05T14:03:00Z"


def test_ordinary_cells_are_left_alone():
    row = {"id": 1, "id_tag": "D64FC93B", "backend_session_id": "23", "meter_start_wh": 0, "energy_wh": 0,
           "stop_reason": "EVDisconnected", "state": "stopped", "delivered": False}
    [cell] = parse(sessionlist.to_csv([row]))
    assert (cell["id_tag"], cell["backend_session_id"], cell["meter_start_wh"]) == ("D64FC93B", "23", "0")


async def hostile_mcsp_server(ids: list[str]) -> asyncio.Server:
    """START -> OK with the next hostile Session-Id; END and HEARTBEAT -> OK (docs/mcsp.md §2)."""
    pending = iter(ids)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                start = line.decode().strip()
                if not start.startswith("MMETERING/1.0 "):
                    continue
                count = int((await reader.readline()).decode().split(":", 1)[1])
                headers = dict(h.decode().strip().split(": ", 1) for h in [await reader.readline() for _ in range(count)])
                reply = ["MMETERING/1.0 OK"]
                if start.endswith("START"):
                    reply.append(f"Session-Id: {next(pending)}")
                elif start.endswith("END"):
                    reply.append(f"Session-Id: {headers['Session-Id']}")
                if "Session-Key" in headers:
                    reply.append(f"Session-Key: {headers['Session-Key']}")
                writer.write(("\r\n".join(reply) + "\r\n\r\n").encode())
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_hostile_mcsp_session_id_reaches_the_csv_as_text(tmp_path, capsys):
    ids = ['=HYPERLINK("http://x","y")', "+1+1", "-1+1", "@SUM(1)"]  # MCSP text: printable, no spaces
    server = await hostile_mcsp_server(ids)
    port = server.sockets[0].getsockname()[1]
    config = {**PAGE, "status_page.password": PASSWORD, "backend.kind": "mcsp", "sim.load_w": 0.0,
              "backend.mcsp.url": f"tcp://127.0.0.1:{port}", "backend.mcsp.timeout_s": 3.0}
    try:
        async with running_station(tmp_path, config) as st:
            assert await st.backend.wait_ready(10)
            for _ in ids:
                await st.world.tap(CARD)
                await state_is(st, "SuspendedEV")
                st.world.consume(100)
                await st.world.tap(CARD)
                await state_is(st, "Available")
            assert await st.flush(10)
            code, _, body = await http(st.status_page._server.port, path="/sessions.csv",
                                       headers=basic("station", PASSWORD))
    finally:
        server.close()
        await server.wait_closed()
    assert code == 200
    page = {r["id"]: r for r in parse(body.decode())}
    assert main(["sessions", "--state-dir", str(tmp_path), "--csv"]) == 0
    cli = {r["id"]: r for r in parse(capsys.readouterr().out)}
    for rows in (page, cli):
        assert sorted(r["backend_session_id"] for r in rows.values()) == sorted("'" + i for i in ids)
        assert all(r["energy_wh"] == "100" and r["id_tag"] == CARD for r in rows.values())
    assert b'\'=HYPERLINK(""http://x"",""y"")' in body and b',=' not in body and b',"=' not in body
