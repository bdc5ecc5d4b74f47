"""OCPP-J 1.6 RPC over one websocket, on the `ocpp` library, with 1.6 error codes.

Theory of operation
-------------------
The `ocpp` library gives us the official 1.6 JSON schemas, the payload
classes, the error classes and the `@on`/`@after` routing decorators. Its
`ChargePoint.route_message`/`call` are replaced here because, as shipped,
they (FACTS.md §4):

* answer a schema error with `FormatViolation` (the 2.0 spelling; 1.6 says
  `FormationViolation`) or `ProtocolError`,
* swap NotImplemented/NotSupported (1.6: NotImplemented = action not known,
  NotSupported = known but not supported),
* do not check `format: date-time`, and queue stray CALLRESULTs so that a
  later call may pick up an answer that was never meant for it.

Frames, in and out::

    [2, "<id>", "<Action>", {payload}]      CALL
    [3, "<id>", {payload}]                  CALLRESULT
    [4, "<id>", "<code>", "<text>", {}]     CALLERROR

Incoming CALLs are handled one after another by a worker task, so the
receive loop keeps reading (answers to our own CALL get through even while
a handler awaits the station). `@after` hooks run as separate tasks, after
the answer was sent; that is where follow-up CALLs belong (awaiting a CALL
inside an `@on` handler would hold up every later incoming CALL).

Outgoing: one CALL in flight (a lock). Every CALL gets a fresh unique id; a
CALLRESULT/CALLERROR whose id is not the one in flight is logged and
dropped. Nothing here can end the receive loop but the connection closing.
"""

from __future__ import annotations

import asyncio
import decimal
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.messages import _DecimalEncoder
from ocpp.v16 import ChargePoint as _LibChargePoint
from ocpp.v16.enums import Action

from station import privacy
from station.errors import BackendError, BackendOffline

log = logging.getLogger(__name__)

CALL, CALLRESULT, CALLERROR = 2, 3, 4
_SCHEMA_DIR = Path(__import__("ocpp.v16", fromlist=["x"]).__file__).parent / "schemas"
_KNOWN_ACTIONS = frozenset(a.value for a in Action)
_CALL_ID = re.compile(r'^\s*\[\s*2\s*,\s*"((?:[^"\\]|\\.){1,36})"')
# RFC 3339 date-time as the official schemas mean it (a time zone is required).
# idTag / parentIdTag values inside a frame (personal data: masked in logs, station.privacy).
_TAG_FIELD = re.compile(r'("(?:idTag|parentIdTag)"\s*:\s*")((?:[^"\\]|\\.)*)(")')
_KEY_OBJECT = re.compile(r'\{[^{}]*"key"\s*:\s*"AuthorizationKey"[^{}]*\}', re.I)
_VALUE_FIELD = re.compile(r'("value"\s*:\s*)"(?:[^"\\]|\\.)*"')
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class LinkDown(BackendOffline):
    """The websocket is closed (or closed while a CALL was in flight)."""


class CallFailed(BackendError):
    """The central system did not process our CALL."""


class CallErrorReceived(CallFailed):
    def __init__(self, action: str, code: str, description: str, details: Any = None) -> None:
        self.action, self.code, self.description, self.details = action, code, description, details
        super().__init__(f"{action}: CALLERROR {code}: {description}")


class InvalidResponse(CallFailed):
    """A CALLRESULT that breaks the schema; `payload` is kept (e.g. no transactionId)."""

    def __init__(self, action: str, payload: Any, problem: str) -> None:
        self.action, self.payload, self.problem = action, payload, problem
        super().__init__(f"{action}: invalid CALLRESULT: {problem}")


class NoResponse(CallFailed):
    def __init__(self, action: str, timeout: float) -> None:
        self.action = action
        super().__init__(f"{action}: no answer within {timeout:.1f} s")


class RpcError(Exception):
    """Raised by a handler (or the router) to answer with a 1.6 CALLERROR."""

    def __init__(self, code: str, description: str = "", details: dict | None = None) -> None:
        self.code, self.description, self.details = code, description, details or {}
        super().__init__(f"{code}: {description}")


# ---------------------------------------------------------------- validation

def is_date_time(value: object) -> bool:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(is_date_time)
_validators: dict[str, jsonschema.Draft4Validator] = {}

# Which jsonschema failure becomes which OCPP 1.6 error code. A missing or
# mistyped field is FormationViolation (what EVerest's suite and OCTT expect);
# a well-formed field with a value out of range is PropertyConstraintViolation.
_ERROR_CODE = {
    "required": "FormationViolation",
    "type": "FormationViolation",
    "additionalProperties": "FormationViolation",
    "format": "FormationViolation",
    "enum": "PropertyConstraintViolation",
    "maxLength": "PropertyConstraintViolation",
    "minLength": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
    "pattern": "PropertyConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
    "maxItems": "OccurenceConstraintViolation",
}


def validator(action: str, response: bool) -> jsonschema.Draft4Validator:
    name = action + ("Response" if response else "")
    v = _validators.get(name)
    if v is None:
        # Decimal floats: the schedules use multipleOf 0.1, which binary floats fail.
        schema = json.loads((_SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8-sig"),
                            parse_float=decimal.Decimal)
        v = _validators[name] = jsonschema.Draft4Validator(schema, format_checker=_FORMATS)
    return v


def check(action: str, payload: Any, response: bool) -> tuple[str, str] | None:
    """Validate a payload against the official 1.6 schema: None, or (1.6 error code, problem)."""
    if not isinstance(payload, dict):
        return "FormationViolation", "payload is not a JSON object"
    data = json.loads(json.dumps(payload, cls=_DecimalEncoder), parse_float=decimal.Decimal)
    error = jsonschema.exceptions.best_match(validator(action, response).iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    return _ERROR_CODE.get(error.validator, "FormationViolation"), f"{where}: {error.message}"[:200]


def mask_frame(text: str) -> str:
    """A frame as it may appear in a log or a diagnostics file: id tags masked unless station.log_tags,
    and the value of a ChangeConfiguration AuthorizationKey always redacted (A01.FR.12)."""
    if "authorizationkey" in text.lower():
        text = _KEY_OBJECT.sub(lambda m: _VALUE_FIELD.sub(r'\1"<redacted>"', m[0]), text)
    if privacy.log_tags():
        return text
    return _TAG_FIELD.sub(lambda m: m[1] + privacy.tag(m[2]) + m[3], text)


def _plain(value: Any) -> Any:
    """Decimal-free JSON data."""
    return json.loads(json.dumps(value, cls=_DecimalEncoder))


# ---------------------------------------------------------------- the peer

class Peer(_LibChargePoint):
    """One OCPP-J connection. Subclasses declare `@on`/`@after` handlers.

    `connection` is a websockets connection (anything with `send`, `recv`,
    `close` and async iteration will do).
    """

    def __init__(self, charge_point_id: str, connection: Any, response_timeout: float = 30.0) -> None:
        super().__init__(charge_point_id, connection, response_timeout)
        self._pending: tuple[str, str, asyncio.Future] | None = None
        self._incoming: asyncio.Queue = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self.closed = False
        #: While True (BootNotification Rejected) incoming CALLs are not answered.
        self.ignore_calls = False
        #: Hook for tests and logs: called with ("in"|"out", frame text).
        self.on_frame: Callable[[str, str], None] | None = None
        #: Called with a short description when a frame is not valid OCPP (security event InvalidMessages).
        self.on_invalid: Callable[[str], None] | None = None

    # -- receiving ------------------------------------------------------------
    async def start(self) -> None:
        """Receive until the connection closes. Never raises for a bad frame."""
        worker = asyncio.create_task(self._serve_calls())
        try:
            while True:
                try:
                    frame = await self._connection.recv()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # ConnectionClosed and friends
                    log.info("%s: connection ended: %s", self.id, exc)
                    return
                try:
                    await self.route_message(frame)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: frame dropped after an internal error", self.id)
        finally:
            self.closed = True
            worker.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self._pending is not None and not self._pending[2].done():
                self._pending[2].set_exception(LinkDown("connection closed while waiting for an answer"))

    async def route_message(self, raw_msg: str | bytes) -> None:
        if self.on_frame is not None:
            self.on_frame("in", raw_msg if isinstance(raw_msg, str) else repr(raw_msg))
        if isinstance(raw_msg, (bytes, bytearray, memoryview)):
            try:
                raw_msg = bytes(raw_msg).decode("utf-8")
            except UnicodeDecodeError:
                await self._unparseable(bytes(raw_msg).decode("latin-1"), "frame is not UTF-8")
                return
        try:
            msg = json.loads(raw_msg)
        except ValueError:
            await self._unparseable(raw_msg, "frame is not JSON")
            return
        if not isinstance(msg, list) or not msg or not isinstance(msg[0], int) or isinstance(msg[0], bool):
            log.warning("%s: ignoring a frame that is not an OCPP-J message: %.200s", self.id, mask_frame(raw_msg))
            self._invalid("a frame that is not an OCPP-J message")
            return
        kind = msg[0]
        uid = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else None
        if kind == CALL:
            if uid is None:
                log.warning("%s: ignoring a CALL without a message id: %.200s", self.id, mask_frame(raw_msg))
                self._invalid("a CALL without a message id")
            elif len(msg) != 4 or not isinstance(msg[2], str):
                await self._send_error(uid, "FormationViolation", "a CALL has 4 elements: 2, id, action, payload")
            elif self.ignore_calls:
                log.info("%s: BootNotification rejected: not answering %s", self.id, msg[2])
            else:
                self._incoming.put_nowait((uid, msg[2], msg[3]))
        elif kind in (CALLRESULT, CALLERROR):
            self._answer(kind, uid, msg, raw_msg)
        elif uid is not None:
            await self._send_error(uid, "GenericError", f"unknown message type {kind}")
        else:
            log.warning("%s: ignoring a frame of unknown type: %.200s", self.id, mask_frame(raw_msg))
            self._invalid("a frame of unknown message type")

    def _invalid(self, what: str) -> None:
        if self.on_invalid is not None:
            try:
                self.on_invalid(what)
            except Exception:
                log.exception("%s: on_invalid hook failed", self.id)

    async def _unparseable(self, text: str, problem: str) -> None:
        # OCPP-J leaves this open: answer when the id can still be read, else drop.
        self._invalid(problem)
        found = _CALL_ID.match(text)
        if found and not self.ignore_calls:
            await self._send_error(found.group(1), "GenericError", problem)
        else:
            log.warning("%s: ignoring a frame: %s: %.200r", self.id, problem, mask_frame(text))

    def _answer(self, kind: int, uid: str | None, msg: list, raw: str) -> None:
        pending = self._pending
        if pending is None or uid != pending[0] or pending[2].done():
            log.warning("%s: ignoring an answer to no CALL in flight: %.200s", self.id, mask_frame(raw))
            return
        pending[2].set_result((kind, msg))

    async def _serve_calls(self) -> None:
        while True:
            uid, action, payload = await self._incoming.get()
            try:
                await self._handle(uid, action, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: answering %s failed", self.id, action)

    async def _handle(self, uid: str, action: str, payload: Any) -> None:
        handlers = self.route_map.get(action)
        if handlers is None or "_on_action" not in handlers:
            if action in _KNOWN_ACTIONS:
                await self._send_error(uid, "NotSupported", f"{action} is not supported by this charge point")
            else:
                await self._send_error(uid, "NotImplemented", f"{action} is not a known action")
            return
        problem = check(action, payload, response=False)
        if problem is not None:
            self._invalid(f"{action}: {problem[0]}")
            await self._send_error(uid, problem[0], problem[1])
            return
        kwargs = camel_to_snake_case(payload)
        try:
            result = handlers["_on_action"](**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except RpcError as exc:
            await self._send_error(uid, exc.code, exc.description, exc.details)
            return
        except Exception as exc:
            log.exception("%s: handler for %s failed", self.id, action)
            await self._send_error(uid, "InternalError", f"{type(exc).__name__}")
            return
        if isinstance(result, dict):
            answer = result
        else:
            answer = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
        problem = check(action, answer, response=True)
        if problem is not None:  # our bug; never put an invalid answer on the wire
            log.error("%s: our answer to %s is invalid (%s): %s", self.id, action, problem[1],
                      mask_frame(json.dumps(answer, cls=_DecimalEncoder)))
            await self._send_error(uid, "InternalError", "the charge point built an invalid answer")
            return
        await self._send(json.dumps([CALLRESULT, uid, answer], separators=(",", ":"), cls=_DecimalEncoder))
        after = handlers.get("_after_action")
        if after is not None:
            try:
                res = after(**kwargs)
                if inspect.isawaitable(res):
                    self.spawn(res)
            except Exception:
                log.exception("%s: after-hook of %s failed", self.id, action)

    async def _send_error(self, uid: str, code: str, description: str, details: dict | None = None) -> None:
        await self._send(json.dumps([CALLERROR, uid, code, description[:255], details or {}], separators=(",", ":")))

    async def _send(self, message: str) -> None:
        if self.on_frame is not None:
            self.on_frame("out", message)
        log.debug("%s: send %s", self.id, mask_frame(message))
        try:
            await self._connection.send(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise LinkDown(f"send failed: {exc}") from exc

    def spawn(self, coro: Awaitable) -> asyncio.Task:
        """Run a coroutine bound to this connection (cancelled when it closes)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s: background task failed: %r", self.id, t.exception())

        task.add_done_callback(done)
        return task

    # -- sending --------------------------------------------------------------
    async def request(self, action: str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one CALL and return the CALLRESULT payload (camelCase dict).

        Raises LinkDown, NoResponse, CallErrorReceived or InvalidResponse.
        """
        problem = check(action, payload, response=False)
        if problem is not None:
            raise ValueError(f"refusing to send an invalid {action}: {problem[1]}")
        timeout = self._response_timeout if timeout is None else timeout
        async with self._call_lock:
            if self.closed:
                raise LinkDown("not connected")
            uid = str(self._unique_id_generator())
            future = asyncio.get_running_loop().create_future()
            self._pending = (uid, action, future)
            try:
                await self._send(json.dumps([CALL, uid, action, payload], separators=(",", ":"), cls=_DecimalEncoder))
                try:
                    async with asyncio.timeout(timeout):  # not wait_for: see chargepoint._wait
                        kind, msg = await future
                except TimeoutError:
                    raise NoResponse(action, timeout) from None
            finally:
                self._pending = None
        if kind == CALLERROR:
            code = msg[2] if len(msg) > 2 else "GenericError"
            text = msg[3] if len(msg) > 3 else ""
            raise CallErrorReceived(action, str(code), str(text), msg[4] if len(msg) > 4 else None)
        answer = msg[2] if len(msg) > 2 else None
        problem = check(action, answer, response=True)
        if problem is not None:
            raise InvalidResponse(action, answer, problem[1])
        return _plain(answer)

    async def call(self, payload, suppress=True, unique_id=None, skip_schema_validation=False):  # noqa: D102
        raise RuntimeError("use Peer.request(action, payload)")
