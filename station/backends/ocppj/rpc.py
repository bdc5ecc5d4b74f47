"""OCPP-J RPC over one websocket: frames, routing to handlers, one CALL in flight, schema checks both ways.

Theory of operation
-------------------
Frames, in and out::

    [2, "<id>", "<Action>", {payload}]      CALL
    [3, "<id>", {payload}]                  CALLRESULT
    [4, "<id>", "<code>", "<text>", {}]     CALLERROR

`Peer` is the same class for every OCPP version: a `Dialect` (schema.py)
gives the actions, the schemas and the CALLERROR codes. It uses the `ocpp`
package only through its public API: the `@on`/`@after` decorators and
`create_route_map` of `ocpp.routing`, and the schema files. Everything else
is ours, because the library's `ChargePoint` does not do what OCPP-J 1.6
says: it answers schema errors with 2.0 codes, swaps NotImplemented and
NotSupported, does not check date-times, and queues stray answers so that a
later CALL may take an answer that was never meant for it.

Handlers are plain objects with `@on(action)` methods (and `@after(action)`
hooks); they get the payload's top-level fields as snake_case keyword
arguments (nested objects stay as on the wire, camelCase) and return the
answer as a camelCase dict. Incoming CALLs are handled one after another by a
worker task, so the receive loop keeps reading (answers to our own CALL get
through while a handler awaits the station). `@after` hooks run as separate
tasks once the answer is sent; that is where follow-up CALLs belong.

Outgoing: one CALL in flight (a lock). Every CALL gets a fresh unique id; a
CALLRESULT/CALLERROR whose id is not the one in flight is logged and
dropped, except a *late answer*: a caller that passes `on_late` to
`request` is handed the answer to its CALL if it arrives after the CALL gave
up (NoResponse, a cancellation), on the same connection, as a `Late`
(validated like any answer). That is how a StartTransaction answered after
the response timeout still yields its transactionId (the central system
opened that transaction). The last LATE_KEEP such CALLs are remembered.
`on_send` runs just before the frame goes out (a journal-before-send mark).
Nothing here ends the receive loop but the connection closing.

Nesting is bounded: a frame whose arrays and objects nest deeper than
MAX_DEPTH (far beyond any OCPP message) is refused before anything walks it
recursively (the schema check, the handlers): the formation code of the
dialect for a CALL (FormationViolation in 1.6, FormatViolation in 2.0.1),
dropped otherwise. json.loads itself gives up past the interpreter's
recursion limit (100,000 levels in a 200 KB frame); that RecursionError is
caught and answered the same way.
Tasks are started through the `spawn` function the owner passes (the
station's supervisor) and are cancelled when the connection ends.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from ocpp.routing import create_route_map

from station.errors import BackendError, BackendOffline

from .schema import Dialect

log = logging.getLogger(__name__)

CALL, CALLRESULT, CALLERROR = 2, 3, 4
MAX_DEPTH = 32  # levels of arrays and objects in a frame (the frame itself is one); OCPP needs fewer than 10
LATE_KEEP = 32  # CALLs that gave up, remembered for a late answer
_CALL_ID = re.compile(r'^\s*\[\s*2\s*,\s*"((?:[^"\\]|\\.){1,36})"')
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class Connection(Protocol):
    """What a peer needs of a websocket (websockets' connections have it)."""

    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self) -> None: ...


class LinkDown(BackendOffline):
    """The websocket is closed (or closed while a CALL was in flight)."""


class CallFailed(BackendError):
    """The other side did not process our CALL."""


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


@dataclass(frozen=True)
class Late:
    """The answer to a CALL that had already given up (see `Peer.request`'s `on_late`)."""

    action: str
    payload: Any  # the CALLRESULT's payload; None for a CALLERROR
    error: str | None = None  # the CALLERROR's code
    problem: str | None = None  # why the CALLRESULT's payload breaks the schema, if it does


class RpcError(Exception):
    """Raised by a handler to answer with a CALLERROR."""

    def __init__(self, code: str, description: str = "", details: dict[str, Any] | None = None) -> None:
        self.code, self.description, self.details = code, description, details or {}
        super().__init__(f"{code}: {description}")


def nested_deeper_than(value: object, limit: int) -> bool:
    """True if arrays and objects nest more than `limit` levels deep. Iterative: no recursion to exhaust."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def snake(name: str) -> str:
    """camelCase -> snake_case, as the handlers' keyword arguments are named."""
    return _CAMEL.sub(r"\1_\2", name).lower()


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=_json_default)


class Peer:
    """One OCPP-J connection: `start()` receives until it closes; `request()` sends a CALL."""

    def __init__(self, connection: Connection, dialect: Dialect, handlers: Iterable[object], *, name: str,
                 spawn: Spawn, response_timeout: float = 30.0, mask: Callable[[str], str] = str) -> None:
        self.connection = connection
        self.dialect = dialect
        self.name = name
        self.response_timeout = response_timeout
        self._spawn = spawn
        self._mask = mask
        self.routes: dict[str, dict[str, Any]] = {}
        for handler in handlers:
            for action, route in create_route_map(handler).items():
                self.routes.setdefault(str(action), {}).update(route)
        self._lock = asyncio.Lock()
        self._pending: tuple[str, asyncio.Future[tuple[int, list[Any]]]] | None = None
        self._late: OrderedDict[str, tuple[str, Callable[[Late], None]]] = OrderedDict()
        self._incoming: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        #: While True (BootNotification Rejected) incoming CALLs are not answered (OCPP 1.6).
        self.ignore_calls = False
        #: While set (BootNotification Rejected, OCPP 2.0.1 B03.FR.08) incoming CALLs are answered with this
        #: CALLERROR code instead of being handled.
        self.refuse_calls: str | None = None
        #: Hook for logs and tests: called with ("in"|"out", frame text).
        self.on_frame: Callable[[str, str], None] | None = None
        #: Called with a short description when a frame is not valid OCPP (security event InvalidMessages).
        self.on_invalid: Callable[[str], None] | None = None

    # -- tasks ------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a coroutine bound to this connection (cancelled when it closes)."""
        task = self._spawn(coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- receiving ------------------------------------------------------------
    async def start(self) -> None:
        """Receive until the connection closes. Never raises for a bad frame."""
        self.spawn(self._serve_calls(), "ocpp-calls")
        try:
            while True:
                try:
                    frame = await self.connection.recv()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # ConnectionClosed and friends
                    log.info("%s: connection ended: %s", self.name, exc)
                    return
                try:
                    await self.route(frame)
                except asyncio.CancelledError:
                    raise
                except LinkDown:
                    return
                except Exception:
                    log.exception("%s: frame dropped after an internal error", self.name)
        finally:
            self.closed = True
            for task in list(self._tasks):
                task.cancel()
            if self._pending is not None and not self._pending[1].done():
                self._pending[1].set_exception(LinkDown("connection closed while waiting for an answer"))

    async def route(self, raw: str | bytes) -> None:
        if self.on_frame is not None:
            self.on_frame("in", raw if isinstance(raw, str) else repr(raw))
        if isinstance(raw, bytes):
            data = raw
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError:
                await self._unparseable(data.decode("latin-1"), "frame is not UTF-8")
                return
        too_deep = f"frame nested deeper than {MAX_DEPTH} levels"
        try:
            msg = json.loads(raw)
        except RecursionError:
            await self._unparseable(raw, too_deep, self.dialect.formation)
            return
        except ValueError:
            await self._unparseable(raw, "frame is not JSON")
            return
        if nested_deeper_than(msg, MAX_DEPTH):
            await self._unparseable(raw, too_deep, self.dialect.formation)
            return
        if not isinstance(msg, list) or not msg or not isinstance(msg[0], int) or isinstance(msg[0], bool):
            log.warning("%s: ignoring a frame that is not an OCPP-J message: %.200s", self.name, self._mask(raw))
            self._invalid("a frame that is not an OCPP-J message")
            return
        kind = msg[0]
        uid = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else None
        if kind == CALL:
            if uid is None:
                log.warning("%s: ignoring a CALL without a message id: %.200s", self.name, self._mask(raw))
                self._invalid("a CALL without a message id")
            elif len(msg) != 4 or not isinstance(msg[2], str):
                await self._send_error(uid, self.dialect.formation, "a CALL has 4 elements: 2, id, action, payload")
            elif self.ignore_calls:
                log.info("%s: BootNotification rejected: not answering %s", self.name, msg[2])
            elif self.refuse_calls is not None:
                log.info("%s: BootNotification rejected: refusing %s", self.name, msg[2])
                await self._send_error(uid, self.refuse_calls, "the charging station is not accepted by the CSMS")
            else:
                self._incoming.put_nowait((uid, msg[2], msg[3]))
        elif kind in (CALLRESULT, CALLERROR):
            self._answer(uid, msg, raw)
        elif uid is not None:
            await self._send_error(uid, "GenericError", f"unknown message type {kind}")
        else:
            log.warning("%s: ignoring a frame of unknown type: %.200s", self.name, self._mask(raw))
            self._invalid("a frame of unknown message type")

    def _invalid(self, what: str) -> None:
        if self.on_invalid is not None:
            try:
                self.on_invalid(what)
            except Exception:
                log.exception("%s: on_invalid hook failed", self.name)

    async def _unparseable(self, text: str, problem: str, code: str = "GenericError") -> None:
        # OCPP-J leaves this open: answer when the id can still be read, else drop.
        self._invalid(problem)
        found = _CALL_ID.match(text)
        if found and not self.ignore_calls:
            await self._send_error(found.group(1), code, problem)
        else:
            log.warning("%s: ignoring a frame: %s: %.200r", self.name, problem, self._mask(text))

    def _answer(self, uid: str | None, msg: list[Any], raw: str) -> None:
        pending = self._pending
        if pending is None or uid != pending[0] or pending[1].done():
            late = self._late.pop(uid, None) if uid is not None else None
            if late is not None:
                self._late_answer(late[0], late[1], msg, raw)
                return
            log.warning("%s: ignoring an answer to no CALL in flight: %.200s", self.name, self._mask(raw))
            return
        pending[1].set_result((msg[0], msg))

    def _late_answer(self, action: str, handler: Callable[[Late], None], msg: list[Any], raw: str) -> None:
        log.warning("%s: a late answer to %s (after it gave up): %.200s", self.name, action, self._mask(raw))
        if msg[0] == CALLERROR:
            late = Late(action, None, error=str(msg[2]) if len(msg) > 2 else "GenericError")
        else:
            answer = msg[2] if len(msg) > 2 else None
            problem = self.dialect.check(action, answer, response=True)
            late = Late(action, answer, problem=problem[1] if problem is not None else None)
        try:
            handler(late)
        except Exception:
            log.exception("%s: handling a late answer to %s failed", self.name, action)

    async def _serve_calls(self) -> None:
        while True:
            uid, action, payload = await self._incoming.get()
            try:
                await self._handle(uid, action, payload)
            except asyncio.CancelledError:
                raise
            except LinkDown as exc:
                log.info("%s: %s not answered: %s", self.name, action, exc)
            except Exception:
                log.exception("%s: answering %s failed", self.name, action)

    async def _handle(self, uid: str, action: str, payload: Any) -> None:
        route = self.routes.get(action)
        if route is None or "_on_action" not in route:
            if action in self.dialect.actions:
                await self._send_error(uid, "NotSupported", f"{action} is not supported by this charge point")
            else:
                await self._send_error(uid, "NotImplemented", f"{action} is not a known action")
            return
        problem = self.dialect.check(action, payload, response=False)
        if problem is not None:
            self._invalid(f"{action}: {problem[0]}")
            await self._send_error(uid, problem[0], problem[1])
            return
        kwargs = {snake(k): v for k, v in payload.items()}
        try:
            answer = route["_on_action"](**kwargs)
            if inspect.isawaitable(answer):
                answer = await answer
        except RpcError as exc:
            await self._send_error(uid, exc.code, exc.description, exc.details)
            return
        except Exception as exc:
            log.exception("%s: handler for %s failed", self.name, action)
            await self._send_error(uid, "InternalError", type(exc).__name__)
            return
        problem = self.dialect.check(action, answer, response=True)
        if problem is not None:  # our bug; never put an invalid answer on the wire
            log.error("%s: our answer to %s is invalid (%s): %s", self.name, action, problem[1],
                      self._mask(dumps(answer)))
            await self._send_error(uid, "InternalError", "the charge point built an invalid answer")
            return
        await self._send(dumps([CALLRESULT, uid, answer]))
        after = route.get("_after_action")
        if after is not None:
            try:
                hook = after(**kwargs)
                if inspect.isawaitable(hook):
                    self.spawn(_awaited(hook), f"ocpp-after-{action}")
            except Exception:
                log.exception("%s: after-hook of %s failed", self.name, action)

    async def _send_error(self, uid: str, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        await self._send(dumps([CALLERROR, uid, code, description[:255], details or {}]))

    async def _send(self, message: str) -> None:
        if self.on_frame is not None:
            self.on_frame("out", message)
        log.debug("%s: send %s", self.name, self._mask(message))
        try:
            await self.connection.send(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise LinkDown(f"send failed: {exc}") from exc

    # -- sending --------------------------------------------------------------
    async def request(self, action: str, payload: dict[str, Any], timeout: float | None = None, *,
                      on_send: Callable[[], None] | None = None,
                      on_late: Callable[[Late], None] | None = None) -> dict[str, Any]:
        """Send one CALL and return the CALLRESULT payload (camelCase dict).

        Raises LinkDown, NoResponse, CallErrorReceived or InvalidResponse. `on_send()` runs just
        before the frame goes out; `on_late(Late)` gets the answer if it arrives after this
        call gave up (a timeout or a cancellation once sent), on this connection.
        """
        problem = self.dialect.check(action, payload, response=False)
        if problem is not None:
            raise ValueError(f"refusing to send an invalid {action}: {problem[1]}")
        timeout = self.response_timeout if timeout is None else timeout
        async with self._lock:
            if self.closed:
                raise LinkDown("not connected")
            uid = str(uuid.uuid4())
            future: asyncio.Future[tuple[int, list[Any]]] = asyncio.get_running_loop().create_future()
            self._pending = (uid, future)
            sent = False
            try:
                if on_send is not None:
                    on_send()
                sent = True  # from here the frame may be out, even if the send below fails
                await self._send(dumps([CALL, uid, action, payload]))
                try:
                    async with asyncio.timeout(timeout):
                        kind, msg = await future
                except TimeoutError:
                    raise NoResponse(action, timeout) from None
            except (NoResponse, asyncio.CancelledError):
                if sent and on_late is not None and not self.closed:
                    self._late[uid] = (action, on_late)
                    while len(self._late) > LATE_KEEP:
                        self._late.popitem(last=False)
                raise
            finally:
                self._pending = None
        if kind == CALLERROR:
            code = msg[2] if len(msg) > 2 else "GenericError"
            text = msg[3] if len(msg) > 3 else ""
            raise CallErrorReceived(action, str(code), str(text), msg[4] if len(msg) > 4 else None)
        answer = msg[2] if len(msg) > 2 else None
        problem = self.dialect.check(action, answer, response=True)
        if problem is not None:
            raise InvalidResponse(action, answer, problem[1])
        assert isinstance(answer, dict)
        return answer


async def _awaited(awaitable: Any) -> None:
    await awaitable
