"""The link to the central system: connect, register, heartbeat; requests and best-effort notifications.

Theory of operation
-------------------
One critical task (`Link.run`, supervised with a deadline) keeps the link:
connect (websockets, offering the subprotocols of `backend.ocpp.versions` in
order of preference, no environment proxy, keepalive pings every
WebSocketPingInterval, pong and closing handshake within half an interval
each, so a dead link is noticed within two intervals), register,
heartbeat; on any loss wait an exponential backoff with jitter
(station.backoff) and start over. Every wait in it is bounded by BEAT_S, so
it reports progress to the supervisor while connected and idle too.

The central system's choice of subprotocol decides the version for that
connection (OCPP-J 1.6 §3.1.2, OCPP 2.0.1 Part 4 §3.1.2: the server answers
with one of the offered subprotocols): the backend makes that version the
active one, and the connection speaks its dialect, its BootNotification and
its handlers. Everything else here is the same for 1.6 and 2.0.1.

Registration is BootNotification first and nothing else until it is Accepted
(Pending: answer the central system, boot again after `interval`; Rejected:
answer nothing, boot again after `interval`; CALLERROR or no answer: boot
again after BOOT_RETRY_S). The clock is set from BootNotification and
Heartbeat. After Accepted the backend is told (`registered`):
statuses, queued messages and security events flow.

`request()` sends a CALL once registered; `notify()` is the one best-effort
way to send a notification (status, firmware, diagnostics, log, meter values
outside a transaction): it never raises, it logs why a message was not sent.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from station import privacy
from station.backends.link import SWITCH
from station.backends.ocppj.rpc import CallErrorReceived, CallFailed, Late, LinkDown, Peer
from station.backoff import Backoff
from station.errors import BackendOffline

from .ws import ClientConnection, connect

if TYPE_CHECKING:
    from .host import LinkOwner, Version

log = logging.getLogger(__name__)

BOOT_RETRY_S = 30.0  # after a CALLERROR or no answer to BootNotification
DEFAULT_WAIT_S = 60.0  # Pending/Rejected with interval 0
BEAT_S = 20.0  # the link loop reports progress at least this often
DEADLINE_S = 120.0  # ... and is declared dead after this long without (a connect may take 30 s)
EVENTS_RETRY_S = 60.0  # security events not delivered: try again after this long

# idTag / parentIdTag (1.6) and idToken (2.0.1) values inside a frame (personal data: masked in logs,
# station.privacy). A 2.0.1 idToken is an object whose own "idToken" field holds the string.
_TAG_FIELD = re.compile(r'("(?:idTag|parentIdTag|idToken)"\s*:\s*")((?:[^"\\]|\\.)*)(")')
_KEY_OBJECT = re.compile(r'\{[^{}]*"key"\s*:\s*"AuthorizationKey"[^{}]*\}', re.I)
_VALUE_FIELD = re.compile(r'("value"\s*:\s*)"(?:[^"\\]|\\.)*"')
_ATTRIBUTE_VALUE = re.compile(r'("attributeValue"\s*:\s*)"(?:[^"\\]|\\.)*"')


def mask_frame(text: str) -> str:
    """A frame as it may appear in a log or a diagnostics file: id tags masked unless station.log_tags,
    and the value of a ChangeConfiguration AuthorizationKey (1.6, A01.FR.12) or a SetVariables
    BasicAuthPassword (2.0.1, A01.FR.12: every attributeValue of such a frame) always redacted."""
    lower = text.lower()
    if "authorizationkey" in lower:
        text = _KEY_OBJECT.sub(lambda m: _VALUE_FIELD.sub(r'\1"<redacted>"', m[0]), text)
    if "basicauthpassword" in lower:
        text = _ATTRIBUTE_VALUE.sub(r'\1"<redacted>"', text)
    if privacy.log_tags():
        return text
    return _TAG_FIELD.sub(lambda m: m[1] + privacy.tag(m[2]) + m[3], text)


async def sleep_or_event(event: asyncio.Event | None, seconds: float | None) -> bool:
    """Sleep `seconds` (None: until the event) or until `event` is set; True if the event woke us."""
    if event is None:
        await asyncio.sleep(seconds or 0)
        return False
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
    # that arrives in the same loop iteration as the event, and the task lives on.
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
        return True
    except TimeoutError:
        return False


class Link:
    NAME = "ocpp-link"

    def __init__(self, backend: LinkOwner) -> None:
        self.b = backend
        self.version: Version | None = None  # the version of the current connection
        self.peer: Peer | None = None
        self.registration: str | None = None  # Accepted | Pending | Rejected while connected
        self.connections = 0  # successful websocket handshakes (for logs and tests)
        self.frames: deque[str] = deque(maxlen=500)  # recent frames, for diagnostics and tests
        self.ready = asyncio.Event()  # registered (BootNotification Accepted)
        self._boot_now = asyncio.Event()
        self._heartbeat_wake = asyncio.Event()
        self._events_wake = asyncio.Event()
        self._reported_invalid: Peer | None = None

    @property
    def accepted(self) -> bool:
        return self.registration == "Accepted"

    # ================================================================ the loop
    def _beat(self) -> None:
        self.b.control.beat(self.NAME)

    async def _sleep(self, seconds: float) -> None:
        """A backoff sleep that still beats."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            self._beat()
            await asyncio.sleep(min(left, BEAT_S))

    def _connect_kwargs(self) -> tuple[str, dict[str, Any]]:
        """(url, websockets.connect keyword arguments) for the active security profile."""
        # A ping every interval; its pong must come within half an interval, and a dead
        # link's closing handshake may take another half: lost within two intervals. The
        # interval is the active version's setting (the one of the last connection).
        ping = self.b.scaled(self.b.active.ping_interval()) or None
        kwargs: dict[str, Any] = dict(subprotocols=self.b.subprotocols, proxy=None, ping_interval=ping,
                                      ping_timeout=ping / 2 if ping else None,
                                      close_timeout=ping / 2 if ping else self.b.scaled(10.0),
                                      open_timeout=max(1.0, min(30.0, self.b.response_timeout)),
                                      user_agent_header=f"station/{self.b.model}")
        url, headers, ctx = self.b.security.connection(self.b.url)
        if headers:
            kwargs["additional_headers"] = headers
        if ctx is not None:
            kwargs["ssl"] = ctx
        return url, kwargs

    async def run(self) -> None:
        backoff = Backoff(initial=self.b.scaled(1.0) or 0.01, cap=max(self.b.scaled(60.0), 0.05))
        while True:
            self._beat()
            url = self.b.url
            try:
                url, kwargs = self._connect_kwargs()
                SWITCH.check(url)  # the simulator's cut (station.backends.link)
                ws = await connect(url, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._delay(backoff)
                self.b.security.connect_failed(exc, url, delay)
                await self._sleep(delay)
                continue
            self.connections += 1
            if ws.subprotocol is None:
                log.warning("central system did not confirm a subprotocol (offered %s)", ", ".join(self.b.subprotocols))
            accepted = await self._connected(ws, self.b.version_for(ws.subprotocol))
            if accepted:
                backoff.reset()
            else:
                self.b.security.session_ended_unregistered()
            delay = self._delay(backoff)
            log.info("connection to the central system lost; reconnecting in %.1f s", delay)
            await self._sleep(delay)

    def _delay(self, backoff: Backoff) -> float:
        """The wait before the next attempt: the active version's rule (OCPP 2.0.1 Part 4 §5.3, from its
        device model), else the station's backoff."""
        own = self.b.active.reconnect_delay(backoff.failures)
        if own is None:
            return backoff.next()
        backoff.failures += 1
        return own

    async def _connected(self, ws: ClientConnection, version: Version) -> bool:
        """Serve one connection, in `version`, until it ends; True if it was registered."""
        self.version = version
        peer = Peer(ws, version.dialect, version.handlers, name=self.b.charge_point_id, spawn=self.b.spawn,
                    response_timeout=self.b.response_timeout, mask=mask_frame)
        peer.on_frame = lambda d, f: self.frames.append(f"{self.b.stamp()} {d} {mask_frame(f[:2000])}")
        peer.on_invalid = self._invalid_message
        self.peer = peer
        receiver = self.b.spawn(peer.start(), "ocpp-receive")
        session = self.b.spawn(self._registered(peer, version), "ocpp-session")
        unwatch = SWITCH.watch(lambda up: None if up else ws.transport.abort())
        try:
            while not (receiver.done() or session.done()):
                self._beat()
                await asyncio.wait({receiver, session}, timeout=BEAT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            unwatch()
            for task in (session, receiver):
                task.cancel()
            await asyncio.gather(session, receiver, return_exceptions=True)
            try:
                async with asyncio.timeout(2.0):
                    await ws.close()
            except Exception:
                pass
            accepted = self.accepted
            self.peer = None
            self.registration = None
            self.ready.clear()
            self.b.link_lost()
        return accepted

    def _invalid_message(self, what: str) -> None:
        # One InvalidMessages event per connection: a flood of junk must not flood the queue.
        peer = self.peer
        if peer is not None and self._reported_invalid is not peer:
            self._reported_invalid = peer
            self.b.security.event("InvalidMessages", what[:200])

    # ================================================================ registration
    async def _registered(self, peer: Peer, version: Version) -> None:
        """BootNotification until Accepted, then heartbeats until the link ends."""
        while True:
            self._boot_now.clear()
            sent = self.b.clock.monotonic()
            try:
                conf = await peer.request("BootNotification", version.boot_payload(), timeout=self.b.response_timeout)
            except CallFailed as exc:
                log.warning("BootNotification failed (%s); retrying", exc)
                await sleep_or_event(self._boot_now, self.b.scaled(BOOT_RETRY_S))
                continue
            self.b.set_time(conf.get("currentTime"), self.b.clock.monotonic() - sent)
            status, interval = conf["status"], conf["interval"]
            self.registration = status
            if status == "Accepted":
                peer.ignore_calls, peer.refuse_calls = False, None
                self.b.security.registered()
                if interval > 0:
                    version.boot_accepted(interval)
                break
            log.info("BootNotification %s; next try in %d s", status, interval)
            rejected = status == "Rejected"
            peer.ignore_calls = rejected and version.refuse_when_rejected is None
            peer.refuse_calls = version.refuse_when_rejected if rejected else None
            await sleep_or_event(self._boot_now if status == "Pending" else None,
                                 self.b.scaled(interval or DEFAULT_WAIT_S))
        self.ready.set()
        peer.spawn(self._deliver_security_events(version), "ocpp-security-events")
        await self.b.registered(version)
        while True:
            self._heartbeat_wake.clear()
            interval = version.heartbeat_interval() or 86400  # at least one a day
            if not await sleep_or_event(self._heartbeat_wake, self.b.scaled(interval)):
                await self.heartbeat()

    async def trigger_boot(self) -> None:
        """TriggerMessage BootNotification: boot again now (while Pending), or send one more."""
        version = self.version
        if not self.accepted or version is None:
            self._boot_now.set()
            return
        sent = self.b.clock.monotonic()
        conf = await self.notify("BootNotification", version.boot_payload(), allow_pending=False)
        if conf is not None:
            self.b.set_time(conf.get("currentTime"), self.b.clock.monotonic() - sent)

    def heartbeat_changed(self) -> None:
        self._heartbeat_wake.set()

    async def heartbeat(self) -> None:
        sent = self.b.clock.monotonic()
        conf = await self.notify("Heartbeat", {}, allow_pending=False)
        if conf is not None:
            self.b.set_time(conf.get("currentTime"), self.b.clock.monotonic() - sent)

    def security_event_queued(self) -> None:
        self._events_wake.set()

    async def _deliver_security_events(self, version: Version) -> None:
        """SecurityEventNotification for every queued event, in order, confirmed one by one."""
        events = self.b.security.events
        while True:
            self._events_wake.clear()
            for item in events.pending():
                payload = version.security_event(item["type"], self.b.resolve(item["timestamp"]), item.get("techInfo"))
                try:
                    await self.request("SecurityEventNotification", payload)
                except CallErrorReceived as exc:
                    if exc.code not in ("NotImplemented", "NotSupported"):
                        log.info("SecurityEventNotification %s not processed (%s); trying again later",
                                 item["type"], exc)
                        break
                    log.info("the central system does not take SecurityEventNotification (%s): %s stays in the "
                             "security log only", exc.code, item["type"])
                except (CallFailed, BackendOffline) as exc:
                    log.info("SecurityEventNotification %s not sent (%s); trying again later", item["type"], exc)
                    break
                events.delivered(item)
            await sleep_or_event(self._events_wake, self.b.scaled(EVENTS_RETRY_S))

    # ================================================================ sending
    async def request(self, action: str, payload: dict[str, Any], *, allow_pending: bool = False,
                      timeout: float | None = None, on_send: Callable[[], None] | None = None,
                      on_late: Callable[[Late], None] | None = None) -> dict[str, Any]:
        """Send a CALL once registered (BootNotification Accepted; Pending only if triggered).
        `on_send` and `on_late`: see Peer.request (a journal mark before the send; a late answer)."""
        peer = self.peer
        allowed = ("Accepted", "Pending") if allow_pending else ("Accepted",)
        if peer is None or peer.closed or self.registration not in allowed:
            raise LinkDown("not registered with the central system")
        return await peer.request(action, payload, timeout=timeout or self.b.response_timeout,
                                  on_send=on_send, on_late=on_late)

    async def notify(self, action: str, payload: dict[str, Any], *,
                     allow_pending: bool = True) -> dict[str, Any] | None:
        """Best effort: the answer, or None (and a log line saying why) when it was not processed."""
        try:
            return await self.request(action, payload, allow_pending=allow_pending)
        except (CallFailed, BackendOffline) as exc:
            what = f"{action} {payload['status']}" if isinstance(payload.get("status"), str) else action
            log.info("%s not sent: %s", what, exc)
            return None

    async def reconnect(self) -> None:
        """Close the connection: the loop connects again (with new security settings)."""
        peer = self.peer
        if peer is not None:
            await peer.connection.close()

    def server_certificate(self) -> bytes | None:
        """The DER certificate the central system showed on this TLS connection (None without TLS)."""
        peer = self.peer
        # websockets keeps the asyncio transport; the TLS details are the transport's extra info.
        transport = getattr(peer.connection, "transport", None) if peer is not None else None
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return None
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        return der
