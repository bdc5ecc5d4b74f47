"""The OCPP-J peer is not tied to 1.6: with the 2.0.1 dialect it speaks OCPP 2.0.1 over a real websocket.

The other side is a bare websockets server sending hand-written 2.0.1 frames,
so what is checked is the peer's framing, routing, schema choice and error
codes for that version: a handled request is answered, an off-schema one
gets the 2.0.1 code, a 2.0.1 action without a handler is NotSupported, a
1.6-only action is NotImplemented, and an outgoing CALL is validated against
the 2.0.1 request schema and its answer returned.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ocpp.routing import on
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from station.backends.ocppj.rpc import Peer
from station.backends.ocppj.schema import OCPP201
from station.supervisor import Supervisor

CALLS = [
    [2, "a", "GetLocalListVersion", {}],
    [2, "b", "Reset", {"type": "Lukewarm"}],  # not in ResetEnumType
    [2, "c", "Reset", {"type": "Immediate", "extra": 1}],
    [2, "d", "SetVariables", {"setVariableData": [{"attributeValue": "1", "component": {"name": "X"},
                                                    "variable": {"name": "Y"}}]}],
    [2, "e", "ChangeConfiguration", {"key": "k", "value": "v"}],  # 1.6 only
]


class Handlers201:
    def __init__(self) -> None:
        self.resets: list[str] = []

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **_: Any) -> dict[str, Any]:
        return {"versionNumber": 7}

    @on("Reset")
    def on_reset(self, type: str, **_: Any) -> dict[str, Any]:
        self.resets.append(type)
        return {"status": "Accepted"}


async def test_a_201_peer_is_the_same_class_with_the_201_dialect():
    answers: dict[str, list] = {}
    got_all = asyncio.Event()

    async def csms(ws) -> None:
        for frame in CALLS:
            await ws.send(json.dumps(frame))
        async for text in ws:
            msg = json.loads(text)
            if msg[0] == 2:
                await ws.send(json.dumps([3, msg[1], {"currentTime": "2026-01-01T00:00:00Z"}]))
            else:
                answers[msg[1]] = msg
                if len(answers) == len(CALLS):
                    got_all.set()

    server = await serve(csms, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"])
    port = server.sockets[0].getsockname()[1]
    supervisor = Supervisor()
    handlers = Handlers201()
    try:
        async with connect(f"ws://127.0.0.1:{port}/CS1", subprotocols=[OCPP201.subprotocol]) as ws:
            assert ws.subprotocol == "ocpp2.0.1"
            peer = Peer(ws, OCPP201, [handlers], name="CS1", spawn=supervisor.spawn)
            receiving = supervisor.spawn(peer.start(), "receive")
            assert await peer.request("Heartbeat", {}) == {"currentTime": "2026-01-01T00:00:00Z"}
            try:
                await peer.request("Heartbeat", {"unexpected": True})
                raise AssertionError("an off-schema request was sent")
            except ValueError:
                pass
            async with asyncio.timeout(10):
                await got_all.wait()
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
    finally:
        server.close()
        await server.wait_closed()
        await supervisor.close()
    assert answers["a"] == [3, "a", {"versionNumber": 7}]
    assert answers["b"][:3] == [4, "b", "PropertyConstraintViolation"]
    assert answers["c"][:3] == [4, "c", "FormatViolation"]  # the 2.0.1 spelling
    assert answers["d"][:3] == [4, "d", "NotSupported"]
    assert answers["e"][:3] == [4, "e", "NotImplemented"]
    assert handlers.resets == []  # nothing off-schema reached a handler
