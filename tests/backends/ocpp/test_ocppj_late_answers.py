"""The OCPP-J peer hands a late answer to its caller (issue 22).

The other side is a bare websockets server that answers our CALLs when the test says, with
hand-written frames: after the response timeout (same message id), with a CALLERROR, with
another message id, off-schema. Only an answer with the message id of a CALL that gave up, on
the same connection, reaches `on_late`, validated like any answer; `on_send` runs before the
frame leaves.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from station.backends.ocppj.rpc import LATE_KEEP, CallErrorReceived, Late, NoResponse, Peer
from station.backends.ocppj.schema import OCPP16
from station.supervisor import Supervisor

START = {"connectorId": 1, "idTag": "D64FC93B", "meterStart": 100, "timestamp": "2026-12-07T10:00:00.000Z"}


class Server:
    def __init__(self) -> None:
        self.calls: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.ws: Any = None

    async def handler(self, ws) -> None:
        self.ws = ws
        async for text in ws:
            self.calls.put_nowait(json.loads(text))

    async def answer(self, frame: list[Any]) -> None:
        await self.ws.send(json.dumps(frame))


@pytest.fixture
async def pair():
    server = Server()
    async with serve(server.handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as srv:
        port = srv.sockets[0].getsockname()[1]
        sup = Supervisor()
        async with connect(f"ws://127.0.0.1:{port}/CP1", subprotocols=["ocpp1.6"]) as ws:
            peer = Peer(ws, OCPP16, [], name="CP1", spawn=lambda c, n: sup.spawn(c, n), response_timeout=0.3)
            receiver = asyncio.get_running_loop().create_task(peer.start())
            yield peer, server
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
        sup.stopping()
        await sup.close()


async def _until(cond, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end
        await asyncio.sleep(0.01)


async def test_a_late_answer_with_the_same_id_reaches_on_late(pair):
    peer, server = pair
    late: list[Late] = []
    sent: list[int] = []
    with pytest.raises(NoResponse):
        await peer.request("StartTransaction", START, on_send=lambda: sent.append(1), on_late=late.append)
    call = await server.calls.get()
    assert sent == [1] and call[2] == "StartTransaction"
    await server.answer([3, call[1] + "-other", {"transactionId": 9, "idTagInfo": {"status": "Accepted"}}])
    await server.answer([3, call[1], {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}])
    await _until(lambda: late)
    assert late == [Late("StartTransaction", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}})]
    await server.answer([3, call[1], {"transactionId": 8, "idTagInfo": {"status": "Accepted"}}])  # once only
    await asyncio.sleep(0.1)
    assert len(late) == 1
    # the connection goes on: the next CALL gets its own answer
    task = asyncio.ensure_future(peer.request("Heartbeat", {}, timeout=5))
    call = await server.calls.get()
    await server.answer([3, call[1], {"currentTime": "2026-12-07T10:00:01.000Z"}])
    assert (await task)["currentTime"].startswith("2026")


async def test_late_callerror_and_off_schema_answers_are_told_as_such(pair):
    peer, server = pair
    late: list[Late] = []
    for _ in range(2):
        with pytest.raises(NoResponse):
            await peer.request("StartTransaction", START, on_late=late.append)
    first, second = await server.calls.get(), await server.calls.get()
    await server.answer([4, first[1], "InternalError", "busy", {}])
    await server.answer([3, second[1], {"transactionId": "7", "idTagInfo": {"status": "Accepted"}}])
    await _until(lambda: len(late) == 2)
    assert late[0].error == "InternalError" and late[0].payload is None
    assert late[1].payload["transactionId"] == "7" and "transactionId" in (late[1].problem or "")


async def test_only_calls_that_asked_for_it_and_only_the_last_few_are_kept(pair):
    peer, server = pair
    with pytest.raises(NoResponse):
        await peer.request("Heartbeat", {})  # no on_late: its late answer is dropped as before
    call = await server.calls.get()
    late: list[Late] = []
    for _ in range(LATE_KEEP + 1):
        with pytest.raises(NoResponse):
            await peer.request("StartTransaction", START, on_late=late.append)
    oldest = await server.calls.get()
    for _ in range(LATE_KEEP):
        await server.calls.get()
    await server.answer([3, call[1], {"currentTime": "2026-12-07T10:00:01.000Z"}])
    await server.answer([3, oldest[1], {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}])
    await asyncio.sleep(0.2)
    assert late == []  # forgotten: bounded memory


async def test_an_answer_in_time_is_not_a_late_one(pair):
    peer, server = pair
    late: list[Late] = []
    task = asyncio.ensure_future(peer.request("StartTransaction", START, timeout=5, on_late=late.append))
    call = await server.calls.get()
    await server.answer([4, call[1], "InternalError", "no", {}])
    with pytest.raises(CallErrorReceived):
        await task
    await server.answer([3, call[1], {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}])
    await asyncio.sleep(0.1)
    assert late == []
