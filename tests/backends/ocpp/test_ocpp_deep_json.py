"""Deeply nested JSON from the central system gets a CALLERROR, over a real websocket (issue 23, item 5).

100,000 levels of arrays or objects fit in a 200 KB frame (under the 1 MiB limit) and made json.loads
raise RecursionError, which dropped the frame with a traceback and no answer. 900 levels parse; they
are refused by the depth limit before anything walks them recursively (before the limit the schema
check happened to stop at the top and answered TypeConstraintViolation; the limit makes the answer
not depend on how far a check walks). Both get the dialect's formation code: FormationViolation in
1.6 (the `ocpp` library's central system, scripts/harness/ocpp_csms.py), FormatViolation in 2.0.1 (a bare
websockets server, as in test_ocppj_peer.py). The charge point answers the next CALL, and nothing is
logged with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from ocpp.v16 import call
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from station.backends.ocppj.rpc import MAX_DEPTH, NoResponse, Peer, nested_deeper_than
from station.backends.ocppj.schema import OCPP201
from station.supervisor import Supervisor

DEEP = 100_000


def arrays(levels: int) -> str:
    return "[" * levels + "]" * levels


def objects(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize("payload", [arrays(DEEP), objects(DEEP), '{"type":' + objects(900) + "}"],
                         ids=["100000 arrays", "100000 objects", "900 objects in a field"])
async def test_a_deep_frame_gets_formation_violation_in_16(csms, rig, caplog, payload):
    caplog.set_level(logging.INFO)
    uid = "deep-1"
    await csms.send_raw(f'[2,"{uid}","Reset",{payload}]')
    answer = await csms.wait_answer(uid, timeout=10)
    assert answer[0] == 4 and answer[2] == "FormationViolation", answer[:4]
    result = await csms.call(call.GetLocalListVersion())  # still answering
    assert isinstance(result.list_version, int)
    assert not any(c[0] == "reset" for c in rig.station.calls)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


async def test_a_deep_frame_gets_format_violation_in_201(caplog):
    caplog.set_level(logging.INFO)
    answers: dict[str, list] = {}
    answered = asyncio.Event()

    async def csms(ws) -> None:
        await ws.send(f'[2,"deep-2","Reset",{arrays(DEEP)}]')
        await ws.send(f'[2,"deep-3","Reset",{{"type":{objects(900)}}}]')
        async for text in ws:
            msg = json.loads(text)
            if msg[0] == 2:  # our Heartbeat: answered with a deep CALLRESULT, which must be dropped
                await ws.send(f'[3,"{msg[1]}",{objects(DEEP)}]')
            else:
                answers[msg[1]] = msg
                if len(answers) == 2:
                    answered.set()

    server = await serve(csms, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"], max_size=None)
    supervisor = Supervisor()
    try:
        async with connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/CS1",
                           subprotocols=[OCPP201.subprotocol], max_size=2**20) as ws:
            peer = Peer(ws, OCPP201, [], name="CS1", spawn=supervisor.spawn)
            receiving = supervisor.spawn(peer.start(), "receive")
            async with asyncio.timeout(10):
                await answered.wait()
            with pytest.raises(NoResponse):
                await peer.request("Heartbeat", {}, timeout=1.0)
            receiving.cancel()
    finally:
        server.close()
        await server.wait_closed()
    assert [answers[u][2] for u in ("deep-2", "deep-3")] == ["FormatViolation", "FormatViolation"]
    assert not [r for r in caplog.records if r.exc_info]


def test_the_depth_check_is_iterative_and_exact():
    assert not nested_deeper_than([2, "id", "Reset", {"type": "Soft"}], 2)
    assert nested_deeper_than([2, "id", "Reset", {"type": ["Soft"]}], 2)
    deep: list = []
    node = deep
    for _ in range(DEEP):  # built without recursion, deeper than any recursive walk could go
        node.append([])
        node = node[0]
    assert nested_deeper_than(deep, MAX_DEPTH) and not nested_deeper_than(deep, DEEP + 1)
