"""Hostile OCPP-J frames, fuzzed with hypothesis, against a running charge point over a real websocket.

A raw central system (websockets, no OCPP library in the way) registers the
charge point (OcppBackend with the real store and deliverer) and then sends
what hypothesis makes: random JSON, CALLs with unknown actions, supported
actions with a field dropped, mistyped, added or out of its enum, frames that
are not UTF-8, frames over the size limit, and answers to CALLs that were
never made. The properties:

* each input gets the answer OCPP 1.6 gives for it (the CALLERROR code, or
  silence where there is no message id to answer; a frame over the websocket
  limit closes the connection with 1009 and the station reconnects);
* after each input the charge point still answers a probe CALL (never hung);
* no handler or router ever failed internally (no log record with a traceback).

The examples are bounded (max_examples, deadline=None) so the file runs in well under 40 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import string
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.v16.enums import Action
from ocpp_double import StationDouble
from websockets.asyncio.server import serve

from station import config as config_mod
from station.backends.ocpp.backend import OcppBackend
from station.store import Store

KNOWN = {a.value for a in Action}
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
ANSWER_S = 5.0

# Supported central-system-to-charge-point actions with a valid payload, to mutate.
VALID: dict[str, dict[str, Any]] = {
    "Reset": {"type": "Soft"},
    "ChangeAvailability": {"connectorId": 1, "type": "Operative"},
    "UnlockConnector": {"connectorId": 1},
    "RemoteStopTransaction": {"transactionId": 1},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "300"},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 60},
    "TriggerMessage": {"requestedMessage": "Heartbeat"},
    "ExtendedTriggerMessage": {"requestedMessage": "Heartbeat"},
    "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
    "InstallCertificate": {"certificateType": "ManufacturerRootCertificate", "certificate": "x"},
    "GetLog": {"logType": "SecurityLog", "requestId": 1, "log": {"remoteLocation": "ftp://127.0.0.1:9/"}},
    "ReserveNow": {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "AB", "reservationId": 1},
    "SendLocalList": {"listVersion": 1, "updateType": "Full"},
}
ENUM_FIELDS = {"Reset": "type", "ChangeAvailability": "type", "TriggerMessage": "requestedMessage",
               "ExtendedTriggerMessage": "requestedMessage", "GetInstalledCertificateIds": "certificateType",
               "InstallCertificate": "certificateType", "GetLog": "logType", "SendLocalList": "updateType"}
# A value of another JSON type than the field has.
WRONG_TYPE = {str: [1, 2.5, True, None, [], {}], int: ["1", 1.5, None, [], {}, True], dict: ["x", 1, []]}


class RawCentralSystem:
    """Answers the charge point's CALLs minimally; records its answers to ours."""

    def __init__(self) -> None:
        self.answers: dict[str, list] = {}
        self.closes: list[int | None] = []
        self.boots = 0
        self.probes = 0  # answered probes: proof that the examples ran
        self.ws = None
        self.connected = asyncio.Event()
        self.server = None
        self.url = ""

    async def start(self) -> None:
        self.server = await serve(self._handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"], ping_interval=None,
                                  max_size=None, close_timeout=0.5)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/ocpp"

    async def _handler(self, ws) -> None:
        self.ws = ws
        self.connected.set()
        try:
            async for text in ws:
                msg = json.loads(text)
                if msg[0] == 2:
                    action = msg[2]
                    if action == "BootNotification":
                        self.boots += 1
                        result = {"status": "Accepted", "interval": 300, "currentTime": _now()}
                    elif action == "Heartbeat":
                        result = {"currentTime": _now()}
                    elif action == "Authorize":
                        result = {"idTagInfo": {"status": "Accepted"}}
                    else:
                        result = {}
                    await ws.send(json.dumps([3, msg[1], result]))
                else:
                    self.answers[msg[1]] = msg
        except Exception:
            pass
        finally:
            self.closes.append(ws.close_code)
            if self.ws is ws:
                self.connected.clear()

    async def send(self, frame: str | bytes) -> None:
        await asyncio.wait_for(self.connected.wait(), ANSWER_S)
        try:
            await self.ws.send(frame)
        except Exception:
            pass  # the charge point may close on us (a frame over its limit)

    async def answer(self, uid: str, timeout: float = ANSWER_S) -> list | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while uid not in self.answers:
            if loop.time() > deadline:
                return None
            await asyncio.sleep(0.005)
        return self.answers.pop(uid)

    async def probe(self) -> None:
        """The charge point still answers (reconnecting first if it had to)."""
        uid = "probe-" + uuid.uuid4().hex[:8]
        await self.send(json.dumps([2, uid, "GetLocalListVersion", {}]))
        answer = await self.answer(uid, timeout=10.0)
        assert answer is not None and answer[0] == 3 and isinstance(answer[2]["listVersion"], int), answer
        self.probes += 1


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Harness:
    """A charge point and the raw central system on their own event loop, driven by hypothesis."""

    def __init__(self, tmp_path) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp_path = tmp_path
        self.records: list[logging.LogRecord] = []
        self.handler = logging.Handler()
        self.handler.emit = self.records.append  # type: ignore[method-assign]
        logging.getLogger("station").addHandler(self.handler)

    def run(self, coro, timeout: float = 30.0):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def _start(self) -> None:
        self.cs = RawCentralSystem()
        await self.cs.start()
        cfg = config_mod.defaults({"station.state_dir": str(self.tmp_path), "backend.kind": "ocpp",
                                   "backend.ocpp.url": self.cs.url, "backend.ocpp.charge_point_id": "CP1"})
        self.store = Store.open(self.tmp_path)
        self.backend = OcppBackend(cfg, self.store, time_scale=0.02)
        self.backend.response_timeout = 2.0
        self.station = StationDouble(self.store, self.backend)
        await self.station.run()
        assert await self.backend.wait_ready(10), "charge point did not register"

    def __enter__(self) -> Harness:
        self.run(self._start())
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            await self.station.close()
            self.cs.server.close()
            await self.cs.server.wait_closed()
        try:
            self.run(stop())
        finally:
            self.store.close()
            self.loop.close()
            logging.getLogger("station").removeHandler(self.handler)
        failures = [r for r in self.records if r.exc_info]
        assert not failures, [f"{r.name}: {r.getMessage()}" for r in failures]

    def exchange(self, frame: str | bytes, uid: str | None, expect: set[str] | None, silent: bool = False) -> list | None:
        """Send one frame; check its answer (a CALLERROR code in `expect`, or nothing if `silent`); probe."""
        async def go() -> list | None:
            await self.cs.send(frame)
            answer = None
            if uid is not None and not silent:
                answer = await self.cs.answer(uid)
                assert answer is not None, f"no answer to {frame[:200]!r}"
                if expect is not None:
                    assert answer[0] == 4 and answer[2] in expect, (frame[:300], answer)
            # Frames are handled in order: any answer to `frame` comes before the probe's.
            await self.cs.probe()
            if silent:
                assert uid not in self.cs.answers, f"answered a frame that has no CALL to answer: {self.cs.answers[uid]}"
            return answer
        return self.run(go())


@pytest.fixture
def harness(tmp_path):
    with Harness(tmp_path) as h:
        yield h


ids = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=36)
json_scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=30)
json_values = st.recursive(json_scalars,
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
                           max_leaves=12)


def test_fuzz_random_json(harness):
    """Any JSON at all: a CALL-shaped frame gets an answer with its id; anything else is ignored."""
    @FUZZ
    @given(value=json_values | st.tuples(st.just(2), ids, st.sampled_from(sorted(VALID)) | st.text(max_size=20),
                                         json_values).map(list))
    def prop(value: Any) -> None:
        is_call = isinstance(value, list) and len(value) >= 2 and value[0] == 2 and type(value[0]) is int \
            and isinstance(value[1], str) and 1 <= len(value[1])
        uid = "r-" + uuid.uuid4().hex[:10]
        if is_call:
            value = [2, uid] + value[2:]
        frame = json.dumps(value)
        answer = harness.exchange(frame, uid if is_call else None, None)
        if is_call:
            assert answer[0] in (3, 4)
            if answer[0] == 4:
                assert answer[2] in {"FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
                                     "NotImplemented", "NotSupported", "GenericError", "TypeConstraintViolation"}
                if len(value) != 4 or not isinstance(value[2], str):
                    assert answer[2] == "FormationViolation"
                elif value[2] not in KNOWN:
                    assert answer[2] == "NotImplemented"
    prop()
    assert harness.cs.probes >= 20, harness.cs.probes


def test_fuzz_unknown_actions(harness):
    @FUZZ
    @given(action=st.text(min_size=1, max_size=40).filter(lambda a: a not in KNOWN), payload=json_values)
    def prop(action: str, payload: Any) -> None:
        uid = "u-" + uuid.uuid4().hex[:10]
        harness.exchange(json.dumps([2, uid, action, payload]), uid, {"NotImplemented"})
    prop()
    assert harness.cs.probes >= 20, harness.cs.probes


@st.composite
def mutated(draw) -> tuple[dict, str, str]:
    action = draw(st.sampled_from(sorted(VALID)))
    payload = json.loads(json.dumps(VALID[action]))
    how = draw(st.sampled_from(["drop", "type", "extra", "enum"]))
    if how == "enum" and action not in ENUM_FIELDS:
        how = "extra"
    if how == "drop":
        field = draw(st.sampled_from(sorted(payload))) if payload else None
        if field is None:
            how = "extra"
        else:
            del payload[field]
            return action, payload, "FormationViolation"
    if how == "type":
        field = draw(st.sampled_from(sorted(payload))) if payload else None
        if field is None:
            how = "extra"
        else:
            payload[field] = draw(st.sampled_from(WRONG_TYPE[type(payload[field])]))
            return action, payload, "TypeConstraintViolation"
    if how == "enum":
        field = ENUM_FIELDS[action]
        payload[field] = draw(st.text(string.ascii_letters, min_size=1, max_size=30)) + "Nope"
        return action, payload, "PropertyConstraintViolation"
    key = draw(st.text(string.ascii_letters, min_size=1, max_size=12)) + "Extra"
    payload[key] = draw(json_values)
    return action, payload, "FormationViolation"


def test_fuzz_wrong_types_missing_and_extra_fields(harness):
    """The 1.6 code for each schema violation: FormationViolation for a missing or unknown field,
    TypeConstraintViolation for a mistyped one (OCPP-J 1.6 §4.2.3), PropertyConstraintViolation for a value
    outside its enum."""
    @FUZZ
    @given(case=mutated())
    def prop(case) -> None:
        action, payload, code = case
        uid = "m-" + uuid.uuid4().hex[:10]
        harness.exchange(json.dumps([2, uid, action, payload]), uid, {code})
    prop()
    assert harness.cs.probes >= 20, harness.cs.probes


def test_fuzz_non_utf8_frames(harness):
    @FUZZ
    @given(junk=st.binary(min_size=1, max_size=40).filter(lambda b: _not_utf8(b)), readable=st.booleans())
    def prop(junk: bytes, readable: bool) -> None:
        uid = "b-" + uuid.uuid4().hex[:10]
        if readable:  # the id can still be read: GenericError
            harness.exchange(b'[2,"' + uid.encode() + b'","Reset",{"type":"' + junk + b'"}]', uid, {"GenericError"})
        else:
            harness.exchange(b"\xff" + junk, uid, None, silent=True)
    prop()
    assert harness.cs.probes >= 20, harness.cs.probes


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def test_fuzz_replies_to_calls_never_made(harness):
    @FUZZ
    @given(kind=st.sampled_from([3, 4]), uid=ids, payload=json_values,
           code=st.sampled_from(["GenericError", "InternalError", "x"]))
    def prop(kind: int, uid: str, payload: Any, code: str) -> None:
        frame = [3, uid, payload] if kind == 3 else [4, uid, code, "stray", {}]
        harness.exchange(json.dumps(frame), uid, None, silent=True)
    prop()
    assert harness.cs.probes >= 20, harness.cs.probes


def test_huge_frames(harness):
    """Under the 1 MiB websocket limit a huge field gets its schema answer; over it, the connection is closed
    (1009, message too big) and the charge point reconnects and boots again."""
    over = []

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(size=st.integers(200_000, 1_000_000) | st.integers(1_100_000, 3_000_000))
    def prop(size: int) -> None:
        uid = "h-" + uuid.uuid4().hex[:10]
        frame = json.dumps([2, uid, "Reset", {"type": "S" * size}])
        boots = harness.cs.boots
        if len(frame) < 2**20:
            harness.exchange(frame, uid, {"PropertyConstraintViolation"})
        else:
            async def over_limit() -> None:
                await harness.cs.send(frame)
                while harness.cs.boots == boots:  # noqa: ASYNC110 - closed (1009), reconnected, booted again
                    await asyncio.sleep(0.01)
                await harness.cs.probe()
            harness.run(over_limit())
            assert 1009 in harness.cs.closes
            over.append(size)
    prop()
    assert harness.cs.probes >= 5 and over, (harness.cs.probes, over)
