"""An OCPP idTag chosen by the central system (RemoteStartTransaction) reaches the billing export as text.

A whole simulated station; the central system is the `ocpp` library (scripts/harness/ocpp_csms.py). For each
way a cell can start a spreadsheet formula (OWASP: `=`, `+`, `-`, `@`, tab, carriage return) a session is
started remotely with that idTag and stopped; then the CSV of `station sessions --csv` and of the status
page's /sessions.csv must show each tag behind a leading `'`, and the energy as a plain number.
"""

from __future__ import annotations

import csv
import io

from ocpp.v16 import call
from ocpp_flows import wait_status

from station.cli import main
from tests.support.page import PASSWORD, basic, http

# Each way a cell can start a formula, within an idTag's 20 characters (CiString20Type).
FORMULAS = ['=HYPERLINK("x","y")', "+1+cmd|'/C calc'!A0", "-2+cmd|'/C calc'!A0", "@SUM(1+9)*cmd|'/C'",
            "\t=1+1", "\r=1+1"]


async def test_a_hostile_id_tag_reaches_the_csv_as_text(csms, sim_factory, tmp_path, capsys):
    s = await sim_factory(csms.url, {"MeterValueSampleInterval": 0}, **{
        "status_page.enabled": True, "status_page.listen": "127.0.0.1:0", "status_page.password": PASSWORD})
    await s.online()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    for tag in FORMULAS:
        assert len(tag) <= 20  # CiString20Type
        n = len(csms.received)
        s.world.plug()
        await wait_status(csms, "Preparing", after=n)
        assert (await csms.call(call.RemoteStartTransaction(id_tag=tag, connector_id=1))).status == "Accepted"
        start = await csms.wait_for("StartTransaction", after=n)
        assert start["idTag"] == tag
        await wait_status(csms, "Charging", after=n)
        assert (await csms.call(call.RemoteStopTransaction(transaction_id=csms.last_tx))).status == "Accepted"
        await csms.wait_for("StopTransaction", after=n)
        s.world.plug(False)
        await wait_status(csms, "Available", after=n)
    await s.idle()
    code, _, body = await http(s.station.status_page._server.port, path="/sessions.csv",
                               headers=basic("station", PASSWORD))
    assert code == 200
    assert main(["sessions", "--state-dir", str(tmp_path), "--csv"]) == 0
    for text in (body.decode(), capsys.readouterr().out):
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert sorted(r["id_tag"] for r in rows) == sorted("'" + tag for tag in FORMULAS)
        assert all(int(r["energy_wh"]) >= 0 and r["energy_wh"].isdigit() for r in rows)
