"""A central system for the tests and the benchmarks, built on the `ocpp` library, on real websockets.

It answers like a well-behaved CSMS by default, and each action's answer can
be replaced (`respond[action] = fn(payload) -> dict | SILENT | CallError`) to
play a misbehaving one: no transactionId, never an answer, CALLERRORs. Every
CALL the charge point sends is recorded (action, camelCase payload) in
arrival order, and every raw frame in `frames`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as LibChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import serve

SILENT = object()


@dataclass
class CallError:
    code: str = "InternalError"
    description: str = "test central system refuses"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Received:
    action: str
    payload: dict
    unique_id: str
    at: float = field(default_factory=time.monotonic)


class CSPeer(LibChargePoint):
    def __init__(self, cs: CentralSystem, cp_id: str, ws: Any) -> None:
        super().__init__(cp_id, ws, response_timeout=10)
        self.cs = cs

    async def route_message(self, raw_msg):
        self.cs.frames.append(("in", raw_msg))
        try:
            msg = json.loads(raw_msg)
        except ValueError:
            msg = None
        if isinstance(msg, list) and len(msg) == 4 and msg[0] == 2:
            self.cs.received.append(Received(msg[2], msg[3], msg[1]))
            responder = self.cs.respond.get(msg[2])
            if responder is not None:
                answer = responder(msg[3])
                if answer is SILENT:
                    return
                if isinstance(answer, CallError):
                    await self._send(json.dumps([4, msg[1], answer.code, answer.description, {}]))
                    return
                if answer is not None:
                    await self._send(json.dumps([3, msg[1], answer]))
                    return
        await super().route_message(raw_msg)

    async def _send(self, message):
        self.cs.frames.append(("out", message))
        await super()._send(message)

    @on(Action.boot_notification)
    def on_boot_notification(self, **_):
        status, interval = self.cs.next_boot()
        return call_result.BootNotification(current_time=now_iso(), interval=interval, status=status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **_):
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.status_notification)
    def on_status_notification(self, **_):
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag, **_):
        return call_result.Authorize(id_tag_info=self.cs.tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, id_tag, **_):
        self.cs.last_tx += 1
        return call_result.StartTransaction(transaction_id=self.cs.last_tx, id_tag_info=self.cs.tag_info(id_tag))

    @on(Action.stop_transaction)
    def on_stop_transaction(self, **_):
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter_values(self, **_):
        return call_result.MeterValues()

    @on(Action.firmware_status_notification)
    def on_firmware_status(self, **_):
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status(self, **_):
        return call_result.DiagnosticsStatusNotification()

    @on(Action.data_transfer)
    def on_data_transfer(self, **_):
        return call_result.DataTransfer(status="Accepted")

    # --- the security whitepaper's messages
    @on(Action.security_event_notification)
    def on_security_event(self, **_):
        return call_result.SecurityEventNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status(self, **_):
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.log_status_notification)
    def on_log_status(self, **_):
        return call_result.LogStatusNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, **_):
        return call_result.SignCertificate(status="Accepted")


class CentralSystem:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.frames: list[tuple[str, str]] = []
        self.respond: dict[str, Callable[[dict], Any]] = {}
        self.boots: list[tuple[str, int]] = []  # (status, interval) answered first, in order
        self.heartbeat_interval = 300
        self.tags: dict[str, dict] = {}  # idTag -> idTagInfo (default Accepted)
        self.last_tx = 100
        self.peer: CSPeer | None = None
        self.paths: list[str] = []
        self.auth_headers: list[str | None] = []
        self.subprotocols: list[str | None] = []
        self.connected = asyncio.Event()
        self._server = None
        self._connections: list[Any] = []
        self.url = ""

    # -- behaviour -------------------------------------------------------------
    def next_boot(self) -> tuple[str, int]:
        if self.boots:
            return self.boots.pop(0)
        return "Accepted", self.heartbeat_interval

    def tag_info(self, id_tag: str) -> dict:
        return dict(self.tags.get(id_tag, {"status": "Accepted"}))

    # -- serving -----------------------------------------------------------------
    async def start(self) -> CentralSystem:
        self._server = await serve(self._handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"], ping_interval=None,
                                   close_timeout=0.5)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/ocpp"
        return self

    async def down(self) -> None:
        """The central system becomes unreachable: connections cut, handshakes refused."""
        self._server.close()
        await self._server.wait_closed()
        self._connections.clear()

    async def up(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", self.port, subprotocols=["ocpp1.6"],
                                   ping_interval=None, close_timeout=0.5)

    async def _handler(self, ws) -> None:
        self.paths.append(ws.request.path)
        self.auth_headers.append(ws.request.headers.get("Authorization"))
        self.subprotocols.append(ws.subprotocol)
        self._connections.append(ws)
        peer = CSPeer(self, ws.request.path.rsplit("/", 1)[-1], ws)
        self.peer = peer
        self.connected.set()
        try:
            await peer.start()
        except Exception:
            pass
        finally:
            if self.peer is peer:
                self.peer = None
                self.connected.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                async with asyncio.timeout(10):
                    await self._server.wait_closed()
            except TimeoutError:
                for t in asyncio.all_tasks():
                    t.print_stack()
                raise

    async def drop(self) -> None:
        """Cut every connection (the charge point will reconnect)."""
        for ws in list(self._connections):
            await ws.close()
        self._connections.clear()

    # -- driving -------------------------------------------------------------------
    async def call(self, payload, timeout: float = 10.0):
        """Send a command to the charge point; returns the library's result object (raises on CALLERROR)."""
        peer = await self.wait_peer(timeout)
        return await peer.call(payload, suppress=False)

    async def send_raw(self, text: str | bytes) -> None:
        peer = await self.wait_peer()
        self.frames.append(("out", text if isinstance(text, str) else repr(text)))
        await peer._connection.send(text)

    async def wait_peer(self, timeout: float = 10.0) -> CSPeer:
        async with asyncio.timeout(timeout):
            await self.connected.wait()
        assert self.peer is not None
        return self.peer

    def calls(self, action: str) -> list[dict]:
        return [r.payload for r in self.received if r.action == action]

    async def wait_for(self, action: str, pred: Callable[[dict], bool] = lambda p: True, timeout: float = 10.0,
                       after: int = 0) -> dict:
        """The first `action` CALL (from index `after` of `received`) that satisfies `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            for r in self.received[after:]:
                if r.action == action and pred(r.payload):
                    return r.payload
            if time.monotonic() > deadline:
                seen = [(r.action, r.payload) for r in self.received[after:]][-15:]
                raise AssertionError(f"no {action} within {timeout} s; last seen: {seen}")
            await asyncio.sleep(0.01)

    async def wait_answer(self, unique_id: str, timeout: float = 5.0) -> list:
        """The charge point's CALLRESULT/CALLERROR frame for our CALL `unique_id`."""
        deadline = time.monotonic() + timeout
        while True:
            for direction, frame in self.frames:
                if direction != "in":
                    continue
                try:
                    msg = json.loads(frame)
                except ValueError:
                    continue
                if isinstance(msg, list) and len(msg) >= 3 and msg[0] in (3, 4) and msg[1] == unique_id:
                    return msg
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to {unique_id} within {timeout} s")
            await asyncio.sleep(0.01)

    def status_of(self, connector_id: int) -> str | None:
        found = [p["status"] for p in self.calls("StatusNotification") if p["connectorId"] == connector_id]
        return found[-1] if found else None


class Proxy:
    """A TCP relay between charge point and central system that can go silent (a dead link)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.silent = False
        self._server = None
        self.port = 0

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    if not self.silent:  # a dead link swallows everything
                        dst.write(data)
                        await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                if not self.silent:
                    dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
