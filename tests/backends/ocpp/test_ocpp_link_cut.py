"""The simulator's cut of the backend link (scenario step `backend up = false`, key `b`) reaches
the OCPP websocket too: the connection drops at once, and the station boots again once the link
is back."""

from __future__ import annotations

from tests.stations import until


async def test_a_cut_drops_the_websocket_until_the_link_is_back(csms, sim):
    boots = len(csms.calls("BootNotification"))
    await sim.world.backend_link(False)
    await until(lambda: not sim.charger.online, 10, "the station offline")
    await sim.world.backend_link(True)
    await sim.online(30)
    assert len(csms.calls("BootNotification")) == boots + 1  # a new connection, registered again
