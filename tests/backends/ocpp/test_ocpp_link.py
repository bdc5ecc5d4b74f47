"""The link: connect, register, heartbeat, clock, status, reconnect."""

from __future__ import annotations

import asyncio

from ocpp.v16 import call

from station.core.model import ConnectorStatus


async def test_connects_with_subprotocol_and_id_in_path(csms, rig):
    assert csms.paths[0] == "/ocpp/CP1"
    assert csms.subprotocols[0] == "ocpp1.6"
    assert csms.received[0].action == "BootNotification"
    boot = csms.received[0].payload
    assert boot["chargePointVendor"] == "station" and boot["chargePointModel"] == "station-pi"


async def test_status_for_connector_0_and_1_after_boot(csms, rig):
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 0)
    statuses = {p["connectorId"]: p for p in csms.calls("StatusNotification")}
    assert statuses[0]["status"] == "Available" and statuses[1]["status"] == "Available"
    assert statuses[1]["errorCode"] == "NoError"
    assert not statuses[1]["timestamp"].startswith("1970")


async def test_clock_is_set_from_boot_notification(csms, rig):
    assert any(c[0] == "set_clock" for c in rig.station.calls)


async def test_heartbeat_at_heartbeat_interval(csms, rig_factory):
    csms.heartbeat_interval = 5  # x TIME_SCALE = 0.1 s
    r = await rig_factory(csms.url)
    await r.online()
    await csms.wait_for("Heartbeat")
    clock_sets = len([c for c in r.station.calls if c[0] == "set_clock"])
    await csms.wait_for("Heartbeat", after=len(csms.received))
    for _ in range(200):  # the answer's currentTime sets the clock
        if len([c for c in r.station.calls if c[0] == "set_clock"]) > clock_sets:
            break
        await asyncio.sleep(0.01)
    assert len([c for c in r.station.calls if c[0] == "set_clock"]) > clock_sets
    assert r.backend.versions["1.6"].keys.get("HeartbeatInterval") == "5"


async def test_reconnects_after_the_link_drops_and_boots_again(csms, rig):
    boots = len(csms.calls("BootNotification"))
    await csms.drop()
    await csms.wait_for("BootNotification", after=len(csms.received))
    await rig.online()
    assert len(csms.calls("BootNotification")) == boots + 1
    assert rig.backend.connections == 2
    # statuses are resent after the new boot
    n = len(csms.received)
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, after=n - 3)


async def test_reconnects_when_central_system_is_down_at_first(csms, rig_factory):
    url = csms.url
    await csms.close()
    r = await rig_factory(url)
    await asyncio.sleep(0.3)
    assert not r.backend.online
    # bring a central system up on the same port
    from websockets.asyncio.server import serve
    port = int(url.split(":")[2].split("/")[0])
    csms._server = await serve(csms._handler, "127.0.0.1", port, subprotocols=["ocpp1.6"], ping_interval=None,
                                   close_timeout=0.5)
    await r.online(timeout=15)
    assert csms.paths[-1] == "/ocpp/CP1"


async def test_dead_link_noticed_by_ping(csms, rig_factory):
    """A link that silently stops carrying data is noticed within two ping intervals."""
    from ocpp_csms import Proxy

    port = int(csms.url.split(":")[2].split("/")[0])
    proxy = await Proxy(port).start()
    r = await rig_factory(f"ws://127.0.0.1:{proxy.port}/ocpp", {"WebSocketPingInterval": 10})  # 0.2 s scaled
    await r.online()
    proxy.silent = True
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while r.backend.online and loop.time() - t0 < 10:  # noqa: ASYNC110 - polling the station, bounded
        await asyncio.sleep(0.01)
    assert not r.backend.online
    await proxy.close()


async def test_status_change_is_sent(csms, rig):
    n = len(csms.received)
    rig.station.set_state(ConnectorStatus.PREPARING)
    p = await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing", after=n)
    assert p["connectorId"] == 1


async def test_get_configuration_all_keys(csms, rig):
    result = await csms.call(call.GetConfiguration())
    keys = {k["key"]: k for k in result.configuration_key}
    assert keys["HeartbeatInterval"]["readonly"] is False
    assert keys["NumberOfConnectors"]["value"] == "1"
    assert keys["SupportedFeatureProfiles"]["readonly"] is True


async def test_basic_auth_header_for_security_profile_1(csms, rig_factory):
    import base64

    key = "0123456789abcdef0123"
    r = await rig_factory(csms.url, extra={"backend.ocpp.security_profile": 1,
                                           "backend.ocpp.authorization_key": key})
    await r.online()
    assert csms.auth_headers[-1] == "Basic " + base64.b64encode(f"CP1:{key}".encode()).decode()
    assert csms.auth_headers == [csms.auth_headers[-1]]


async def test_no_auth_header_without_a_key(csms, rig):
    assert csms.auth_headers == [None]


async def test_minimum_status_duration_hides_short_states(csms, rig_factory):
    r = await rig_factory(csms.url, {"MinimumStatusDuration": 25})  # 0.5 s scaled
    await r.online()
    await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    n = len(csms.received)
    r.station.set_state(ConnectorStatus.PREPARING)
    await asyncio.sleep(0.05)
    r.station.set_state(ConnectorStatus.AVAILABLE)
    r.station.set_state(ConnectorStatus.CHARGING)
    await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging", after=n)
    sent = [p["status"] for p in csms.calls("StatusNotification")[-3:] if p["connectorId"] == 1]
    assert "Preparing" not in [r.payload["status"] for r in csms.received[n:] if r.action == "StatusNotification"]
    assert sent[-1] == "Charging"


async def test_link_loop_is_supervised_and_beats_connected_or_not(csms, rig_factory, monkeypatch):
    """The link loop runs under the station's supervisor as a critical loop with a deadline, and its
    waits are bounded so it reports progress while connected and idle and while backing off."""
    from station.backends.ocpp import backend as chargepoint
    from station.backends.ocpp import link

    monkeypatch.setattr(link, "BEAT_S", 0.05)
    monkeypatch.setattr(chargepoint, "DEADLINE_S", 0.6)
    r = await rig_factory(csms.url, {"MeterValueSampleInterval": 0})
    await r.online()
    supervisor = r.station.supervisor
    assert "ocpp-link" in supervisor.loops()
    for _ in range(20):  # 1 s connected and idle: well past the deadline without beats
        await asyncio.sleep(0.05)
        assert supervisor.check() is None, supervisor.check()
    await csms.down()
    for _ in range(20):  # disconnected, reconnecting with backoff
        await asyncio.sleep(0.05)
        assert supervisor.check() is None, supervisor.check()
    assert not r.backend.online
    await csms.up()
    await r.online()
    assert supervisor.loops()["ocpp-link"] < 0.6
