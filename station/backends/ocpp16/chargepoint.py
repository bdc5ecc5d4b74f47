"""The OCPP 1.6-J charge point: the `ocpp` backend.

Theory of operation
-------------------
One task keeps the link (`_link_loop`): connect (websockets, subprotocol
ocpp1.6, no environment proxy, keepalive pings every WebSocketPingInterval,
pong and closing handshake within half an interval each, so a dead link is
noticed within two intervals),
register, heartbeat; on any loss wait an exponential backoff with jitter
(station.backoff) and start over. Registration is BootNotification first
and nothing else until it is Accepted (Pending: answer the central system,
boot again after `interval`; Rejected: answer nothing, boot again after
`interval`; CALLERROR or no answer: boot again after BOOT_RETRY_S). The
clock is set from BootNotification and Heartbeat. After Accepted the link
is "online": connector 0 and 1 statuses are sent and queued transaction
messages flow.

Transaction messages come from the core's durable outbox through
`deliver()`, one at a time, in order (so a StopTransaction waits for its
StartTransaction and never carries a made-up transactionId). A CALL the
central system does not process (CALLERROR, no answer, an answer that
breaks the schema such as StartTransaction without transactionId) is tried
TransactionMessageAttempts times, waiting TransactionMessageRetryInterval x
the number of earlier tries; then a StartTransaction is kept (BackendOffline:
the deliverer offers it again later, the session is never lost) while a
StopTransaction or MeterValues moves on (rejected for good, reason kept on
the session). Meter values are sampled here (MeterValueSampleInterval from
the transaction start, ClockAlignedDataInterval aligned to midnight) and
queued in the same outbox so they are durable and ordered.

Authorization is decided here, including offline (local list, cache,
LocalPreAuthorize, LocalAuthorizeOffline, AllowOfflineTxForUnknownId), so
`authorize()` never raises BackendOffline.

Incoming commands are thin handlers (`_Handlers`) that validate, ask the
station (StationControl) and answer; follow-up CALLs go from `@after`
hooks or tasks.

All protocol intervals are multiplied by `time_scale` (1.0 in the field;
tests shrink it so a heartbeat of "10 s" takes a fraction of a second).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, ChargePointErrorCode
from websockets.asyncio.client import connect

from station import privacy
from station.backoff import Backoff
from station.clock import MONO_PREFIX, Clock, iso, parse_iso
from station.core.model import (
    AuthResult,
    AuthStatus,
    ConnectorStatus,
    DeliveryResult,
    MessageKind,
    OutboxItem,
    Session,
    StatusReport,
)
from station.core.ports import Backend, StationControl
from station.errors import BackendOffline

from . import files, metering
from .authz import AuthCache, LocalList, effective_status
from .confkeys import ConfigurationKeys
from .rpc import CallErrorReceived, CallFailed, InvalidResponse, LinkDown, Peer, RpcError, mask_frame
from .sec_handlers import SecurityHandlers, SecurityJobs
from .security import Security
from .smart import Profiles

log = logging.getLogger(__name__)

BOOT_RETRY_S = 30.0  # after a CALLERROR or no answer to BootNotification
DEFAULT_WAIT_S = 60.0  # Pending/Rejected with interval 0
SETTING_TIME_S = 60.0  # a clock correction larger than this is a SettingSystemTime security event
TX_MAP_KEY = "ocpp.transactions"  # session key -> transactionId (idempotent START)
STOPPED_KEY = "ocpp.stopped"  # session keys whose StopTransaction was answered
START_SENDS = "ocpp_start_sends"  # session extra: StartTransactions sent for it (journaled before each send)
START_TIMESTAMP = "ocpp_start_timestamp"  # session extra: the timestamp they carried
FIRMWARE_KEY = "ocpp.firmware_status"  # a FirmwareStatusNotification still to send after restart
_ERROR_CODES = {e.value for e in ChargePointErrorCode}
_STOP_REASONS = {"EmergencyStop", "EVDisconnected", "HardReset", "Local", "Other", "PowerLoss", "Reboot",
                 "Remote", "SoftReset", "UnlockCommand", "DeAuthorized"}


class _Exhausted(Exception):
    pass


class OcppBackend(SecurityJobs, Backend):
    kind = "ocpp"
    wants_meter_values = False  # sampled here, by the OCPP configuration keys

    def __init__(self, config: Any, store: Any, *, time_scale: float = 1.0) -> None:
        super().__init__()
        o = config.backend.ocpp
        self.config = config
        self.store = store
        self.charge_point_id = o.charge_point_id or config.station.name
        self.url = o.url.rstrip("/") + "/" + self.charge_point_id
        self.vendor, self.model = o.vendor, o.model
        self.time_scale = time_scale
        self.response_timeout = 30.0
        self.clock = Clock()
        self.keys = ConfigurationKeys(store, self.measurands)
        self.keys.on_change = self._key_changed
        self.local_list = LocalList(store)
        self.cache = AuthCache(store)
        self.profiles = Profiles(store, self.keys)
        self.peer: _Handlers | None = None
        self.registration: str | None = None  # Accepted | Pending | Rejected while connected
        self.connections = 0  # successful websocket handshakes (for logs and tests)
        self.pip_command: list[str] | None = None  # None: `python -m pip install --upgrade` into sys.prefix
        self.log_dirs = [Path(config.station.state_dir) / "logs", Path("/var/log/station")]
        self.work_dir = Path(config.station.state_dir) / "ocpp"
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        self.frames: deque[str] = deque(maxlen=500)  # recent frames, for GetDiagnostics and tests
        self._tasks: list[asyncio.Task] = []
        self._jobs: set[asyncio.Task] = set()
        self._boot_now = asyncio.Event()
        self._heartbeat_wake = asyncio.Event()
        self._meter_wake = asyncio.Event()
        self._limit_wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._last_status: dict[int, StatusReport] = {}
        self._status_timers: dict[int, asyncio.Task] = {}
        self._limit_sent: object = object()  # last value given to set_power_limit
        self._deauthorized: tuple[int, int] | None = None  # (session id, energy cap Wh) after invalid StartTx
        self._firmware_job: asyncio.Task | None = None
        # OCPP 1.6 security whitepaper: profiles, credentials, certificates, security events.
        self.security = Security(config, store, self.charge_point_id, self.work_dir, lambda: self.clock.stamp())
        self._events_wake = asyncio.Event()
        self.security.on_event = self._events_wake.set
        self._init_security_jobs()

    # ================================================================ lifecycle
    def measurands(self) -> frozenset[str]:
        source = self.station.meter_measurands() if self.station is not None else ()
        return metering.ocpp_measurands(source)

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    async def start(self, station: StationControl) -> None:
        await super().start(station)
        self.clock = station.clock  # one clock for the journal and the wire
        self._tune_station()
        self.security.event("StartupOfTheDevice", f"station {self.model} started")
        self._tasks = [asyncio.create_task(c, name=f"ocpp-{n}") for n, c in (
            ("link", self._link_loop()), ("meter", self._meter_loop()), ("limit", self._limit_loop()))]

    async def close(self) -> None:
        for task in self._tasks + list(self._jobs):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._jobs, return_exceptions=True)
        self._tasks = []
        self._set_online(False)

    async def wait_ready(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            pass
        return self.online

    def _tune_station(self) -> None:
        if self.station is None:
            return
        try:
            self.station.tune(connection_timeout_s=self.scaled(self.keys.int("ConnectionTimeOut")),
                              stop_on_ev_disconnect=self.keys.bool("StopTransactionOnEVSideDisconnect"))
        except Exception as exc:  # a station without these settings still works
            log.debug("tune: %s", exc)

    def _key_changed(self, name: str, value: str) -> None:
        if name in ("ConnectionTimeOut", "StopTransactionOnEVSideDisconnect"):
            self._tune_station()
        elif name == "HeartbeatInterval":
            self._heartbeat_wake.set()
        elif name in ("MeterValueSampleInterval", "ClockAlignedDataInterval"):
            self._meter_wake.set()
        elif name == "AuthorizationCacheEnabled" and value == "false":
            pass  # the cache is kept but not consulted

    def _spawn(self, coro) -> asyncio.Task:
        """A job that outlives a connection (firmware, diagnostics, remote start)."""
        task = asyncio.ensure_future(coro)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return task

    # ================================================================ time
    def now(self) -> datetime:
        return self.clock.now() or datetime.now(UTC)

    def stamp(self) -> str:
        return iso(self.now())

    def _resolve(self, stamp: str | None) -> str:
        """An ISO time for the wire: resolve monotonic stamps, never send 1970."""
        if stamp and stamp.startswith(MONO_PREFIX):
            stamp = self.clock.resolve(stamp)
        if not stamp:
            return self.stamp()
        try:
            return iso(parse_iso(stamp))
        except ValueError:
            return self.stamp()

    def _set_time(self, current_time: str | None) -> None:
        if not current_time:
            return
        try:
            moved = abs((parse_iso(current_time) - self.now()).total_seconds())
        except ValueError:
            moved = 0.0
        if moved > SETTING_TIME_S:
            self.security.event("SettingSystemTime", f"clock moved by {moved:.0f} s to the central system's time")
        try:
            if self.station is not None and self.station.clock is self.clock:
                self.station.set_clock(current_time)  # sets the shared clock too
            else:
                self.clock.set(current_time)
                if self.station is not None:
                    self.station.set_clock(current_time)
        except ValueError as exc:
            log.warning("central system time not used: %s", exc)

    # ================================================================ the link
    def _connect_kwargs(self) -> tuple[str, dict[str, Any]]:
        """(url, websockets.connect keyword arguments) for the active security profile."""
        # A ping every interval; its pong must come within half an interval, and a dead
        # link's closing handshake may take another half: lost within two intervals.
        ping = self.scaled(self.keys.int("WebSocketPingInterval")) or None
        kwargs: dict[str, Any] = dict(subprotocols=["ocpp1.6"], proxy=None, ping_interval=ping,
                                      ping_timeout=ping / 2 if ping else None,
                                      close_timeout=ping / 2 if ping else self.scaled(10.0),
                                      open_timeout=max(1.0, min(30.0, self.response_timeout)),
                                      user_agent_header=f"station/{self.model}")
        url, headers, ctx = self.security.connection(self.url)
        if headers:
            kwargs["additional_headers"] = headers
        if ctx is not None:
            kwargs["ssl"] = ctx
        return url, kwargs

    async def _link_loop(self) -> None:
        backoff = Backoff(initial=self.scaled(1.0) or 0.01, cap=max(self.scaled(60.0), 0.05))
        while True:
            url = self.url
            try:
                url, kwargs = self._connect_kwargs()
                ws = await connect(url, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                self.security.connect_failed(exc, url, delay)
                await asyncio.sleep(delay)
                continue
            self.connections += 1
            if ws.subprotocol != "ocpp1.6":
                log.warning("central system did not confirm subprotocol ocpp1.6 (got %r)", ws.subprotocol)
            peer = _Handlers(self, ws)
            peer.on_frame = lambda d, f: self.frames.append(f"{self.stamp()} {d} {mask_frame(f[:2000])}")
            peer.on_invalid = self._invalid_message
            self.peer = peer
            receiver = asyncio.create_task(peer.start(), name="ocpp-receive")
            session = asyncio.create_task(self._registered(peer), name="ocpp-session")
            try:
                await asyncio.wait({receiver, session}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (session, receiver):
                    task.cancel()
                await asyncio.gather(session, receiver, return_exceptions=True)
                try:
                    async with asyncio.timeout(2.0):
                        await ws.close()
                except Exception:
                    pass
                accepted = self.registration == "Accepted"
                self.peer = None
                self.registration = None
                self._ready.clear()
                self._set_online(False)
            if session.done() and not session.cancelled() and session.exception() is not None:
                log.error("OCPP session failed: %r", session.exception())
            if accepted:
                backoff.reset()
            else:
                self.security.session_ended_unregistered()
            delay = backoff.next()
            log.info("connection to the central system lost; reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    def _boot_payload(self) -> dict[str, Any]:
        from station import __version__ as version  # noqa: PLC0415

        payload = {"chargePointVendor": self.vendor[:20], "chargePointModel": self.model[:20],
                   "firmwareVersion": str(version)[:50]}
        if self.station is not None and self.station.meter_model:
            payload["meterType"] = self.station.meter_model[:25]
        return payload

    async def _registered(self, peer: _Handlers) -> None:
        """BootNotification until Accepted, then heartbeats until the link ends."""
        while True:
            self._boot_now.clear()
            try:
                conf = await peer.request("BootNotification", self._boot_payload(), timeout=self.response_timeout)
            except CallFailed as exc:
                log.warning("BootNotification failed (%s); retrying", exc)
                await self._wait(self._boot_now, self.scaled(BOOT_RETRY_S))
                continue
            self._set_time(conf.get("currentTime"))
            status, interval = conf["status"], conf["interval"]
            self.registration = status
            if status == "Accepted":
                peer.ignore_calls = False
                self.security.registered()
                if interval > 0 and str(interval) != self.keys.get("HeartbeatInterval"):
                    self.keys.change("HeartbeatInterval", str(interval))
                break
            log.info("BootNotification %s; next try in %d s", status, interval)
            peer.ignore_calls = status == "Rejected"
            await self._wait(self._boot_now if status == "Pending" else None,
                             self.scaled(interval or DEFAULT_WAIT_S))
        self._set_online(True)
        self._ready.set()
        peer.spawn(self._deliver_security_events())
        self._wake_outbox()
        await self._send_all_status()
        await self._send_pending_firmware_status()
        await self.send_pending_signed_status()
        while True:
            self._heartbeat_wake.clear()
            interval = self.keys.int("HeartbeatInterval") or 86400  # at least one a day
            if not await self._wait(self._heartbeat_wake, self.scaled(interval)):
                await self.heartbeat()

    def _invalid_message(self, what: str) -> None:
        # One InvalidMessages event per connection: a flood of junk must not flood the queue.
        peer = self.peer
        if peer is not None and not getattr(peer, "reported_invalid", False):
            peer.reported_invalid = True
            self.security.event("InvalidMessages", what[:200])

    async def _deliver_security_events(self) -> None:
        """SecurityEventNotification for every queued event, in order, confirmed one by one."""
        while True:
            self._events_wake.clear()
            for item in self.security.pending_events():
                payload = {"type": item["type"], "timestamp": self._resolve(item["timestamp"])}
                if item.get("techInfo"):
                    payload["techInfo"] = item["techInfo"]
                try:
                    await self.request("SecurityEventNotification", payload)
                except CallErrorReceived as exc:
                    if exc.code not in ("NotImplemented", "NotSupported"):
                        log.info("SecurityEventNotification %s not processed (%s); trying again later", item["type"], exc)
                        break
                    log.info("the central system does not take SecurityEventNotification (%s): %s stays in the "
                             "security log only", exc.code, item["type"])
                except (CallFailed, BackendOffline) as exc:
                    log.info("SecurityEventNotification %s not sent (%s); trying again later", item["type"], exc)
                    break
                self.security.event_delivered(item)
            await self._wait(self._events_wake, self.scaled(60.0))

    async def heartbeat(self) -> None:
        try:
            conf = await self.request("Heartbeat", {})
        except CallFailed as exc:
            log.warning("Heartbeat failed: %s", exc)
            return
        self._set_time(conf.get("currentTime"))

    @staticmethod
    async def _wait(event: asyncio.Event | None, seconds: float | None) -> bool:
        """Sleep `seconds` or until `event` is set; True if the event woke us."""
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

    async def request(self, action: str, payload: dict[str, Any], *, allow_pending: bool = False,
                      timeout: float | None = None) -> dict[str, Any]:
        """Send a CALL once registered (BootNotification Accepted; Pending only if triggered)."""
        peer = self.peer
        allowed = ("Accepted", "Pending") if allow_pending else ("Accepted",)
        if peer is None or peer.closed or self.registration not in allowed:
            raise LinkDown("not registered with the central system")
        return await peer.request(action, payload, timeout=timeout or self.response_timeout)

    def _wake_outbox(self) -> None:
        if self.station is not None:
            self.station.wake_delivery()

    # ================================================================ status
    def _report_payload(self, report: StatusReport) -> dict[str, Any]:
        code = report.error_code if report.error_code in _ERROR_CODES else "OtherError"
        payload: dict[str, Any] = {"connectorId": report.connector_id, "errorCode": code,
                                   "status": report.status.value, "timestamp": self._resolve(report.timestamp)}
        vendor = report.vendor_error_code or (report.error_code if code != report.error_code else None)
        if report.info:
            payload["info"] = report.info[:50]
        if vendor:
            payload["vendorErrorCode"] = vendor[:50]
        return payload

    def _station_reports(self) -> list[StatusReport]:
        if self.station is None:
            return []
        report = self.station.status()
        # Connector 0 is the charge point as a whole: Available, Unavailable or Faulted.
        if report.status in (ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED):
            zero = StatusReport(0, report.status, report.error_code, report.info, report.vendor_error_code,
                                report.timestamp)
        else:
            zero = StatusReport(0, ConnectorStatus.AVAILABLE, "NoError", None, None, report.timestamp)
        return [zero, report]

    async def _send_all_status(self) -> None:
        for report in self._station_reports():
            await self._send_status_now(report)

    async def _send_status_now(self, report: StatusReport) -> None:
        try:
            await self.request("StatusNotification", self._report_payload(report), allow_pending=True)
            self._last_status[report.connector_id] = report
        except (CallFailed, BackendOffline) as exc:
            log.debug("StatusNotification not sent: %s", exc)

    async def send_status(self, report: StatusReport) -> None:
        # A state change may start or end a transaction: the meter loop looks now, so a short
        # transaction is not missed between its 0.5 s turns (a TxProfile ends with it).
        self._meter_wake.set()
        if self.registration != "Accepted":
            return  # the current state is sent after the next BootNotification
        hold = self.keys.int("MinimumStatusDuration")
        if hold <= 0:
            await self._send_status_change(report)
            return
        # Only a status that stayed for MinimumStatusDuration is reported.
        pending = self._status_timers.pop(report.connector_id, None)
        if pending is not None:
            pending.cancel()
        self._status_timers[report.connector_id] = self._spawn(self._send_status_later(report, self.scaled(hold)))

    async def _send_status_later(self, report: StatusReport, delay: float) -> None:
        await asyncio.sleep(delay)
        self._status_timers.pop(report.connector_id, None)
        if self.registration == "Accepted":
            await self._send_status_change(report)

    async def _send_status_change(self, report: StatusReport) -> None:
        previous = self._last_status.get(report.connector_id)
        await self._send_status_now(report)
        # the station as a whole follows Unavailable/Faulted of its only connector
        zero_before = previous.status if previous else None
        if report.connector_id != 0 and (report.status in (ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED)
                                         or zero_before in (ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED)):
            await self._send_status_now(self._station_reports()[0])

    # ================================================================ authorization
    def _lookup(self, id_tag: str) -> dict[str, Any] | None:
        if self.keys.bool("LocalAuthListEnabled"):
            entry = self.local_list.get(id_tag)
            if entry is not None:
                return entry
        if self.keys.bool("AuthorizationCacheEnabled"):
            return self.cache.get(id_tag)
        return None

    def _learn(self, id_tag: str, info: dict[str, Any]) -> None:
        """Cache an IdTagInfo from the central system (never for a tag on the local list)."""
        if not self.keys.bool("AuthorizationCacheEnabled"):
            return
        if self.keys.bool("LocalAuthListEnabled") and self.local_list.get(id_tag) is not None:
            return
        self.cache.put(id_tag, info)

    def _result(self, info: dict[str, Any], offline: bool, status: str | None = None) -> AuthResult:
        status = status or effective_status(info, self.now())
        return AuthResult(AuthStatus(status), message=None if status == "Accepted" else status,
                          parent_id=info.get("parentIdTag"), expires_at=info.get("expiryDate"), offline=offline)

    async def authorize(self, id_tag: str, session: Session | None = None) -> AuthResult:
        known = self._lookup(id_tag)
        if self.online and known is not None and self.keys.bool("LocalPreAuthorize") \
                and effective_status(known, self.now()) == "Accepted":
            return self._result(known, offline=False)
        if self.online:
            try:
                conf = await self.request("Authorize", {"idTag": id_tag[:20]})
            except (CallFailed, BackendOffline) as exc:
                log.info("Authorize failed (%s): deciding offline", exc)
            else:
                info = conf["idTagInfo"]
                self._learn(id_tag, info)
                return self._result(info, offline=False)
        if known is not None and self.keys.bool("LocalAuthorizeOffline"):
            return self._result(known, offline=True)
        if self.keys.bool("AllowOfflineTxForUnknownId"):
            return AuthResult(AuthStatus.ACCEPTED, parent_id=None, offline=True)
        return AuthResult(AuthStatus.INVALID, message="offline", offline=True)

    async def parent_of(self, id_tag: str) -> str | None:
        """The parentIdTag of a tag (the core asks when another card wants to stop a session)."""
        result = await self.authorize(id_tag)
        return result.parent_id if result.accepted else None

    # ================================================================ transactions
    def _tx_map(self) -> dict[str, int]:
        return dict(self.store.get_json(TX_MAP_KEY, {}) or {})

    def transaction_id(self, session: Session) -> int | None:
        if session.backend_session_id not in (None, ""):
            try:
                return int(session.backend_session_id)
            except ValueError:
                pass
        value = self._tx_map().get(session.key)
        return int(value) if value is not None else None

    def _remember(self, key: str, list_key: str, value: Any) -> None:
        """Small bounded idempotency records in the store."""
        data = self.store.get_json(list_key, {}) or {}
        data[key] = value
        while len(data) > 100:
            data.pop(next(iter(data)))
        self.store.put_json(list_key, data)

    async def _transaction_call(self, action: str, payload: dict[str, Any],
                                before_send: Callable[[], None] | None = None) -> dict[str, Any]:
        """TransactionMessageAttempts tries, TransactionMessageRetryInterval x tries apart;
        `before_send()` runs before each try."""
        attempts = self.keys.int("TransactionMessageAttempts")
        for n in range(attempts):
            if before_send is not None:
                before_send()
            try:
                return await self.request(action, payload)
            except InvalidResponse as exc:
                if action == "StartTransaction" and isinstance(exc.payload, dict) \
                        and isinstance(exc.payload.get("transactionId"), int) and not isinstance(exc.payload.get("transactionId"), bool):
                    log.warning("StartTransaction answer is off-schema (%s); using its transactionId", exc.problem)
                    return exc.payload
                log.warning("%s (try %d of %d)", exc, n + 1, attempts)
            except LinkDown:
                raise
            except CallFailed as exc:
                log.warning("%s (try %d of %d)", exc, n + 1, attempts)
            if n + 1 < attempts:
                await asyncio.sleep(self.scaled(self.keys.int("TransactionMessageRetryInterval") * (n + 1)))
        raise _Exhausted(f"{action} not processed after {attempts} tries")

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if self.registration != "Accepted":
            raise BackendOffline("not registered with the central system")
        if item.kind is MessageKind.START:
            return await self._deliver_start(session)
        if item.kind is MessageKind.STOP:
            return await self._deliver_stop(item, session)
        return await self._deliver_meter_values(item, session)

    async def _deliver_start(self, session: Session) -> DeliveryResult:
        known = self.transaction_id(session)
        if known is not None:  # delivered before a crash: do not start it twice
            return DeliveryResult(backend_session_id=str(known))
        payload: dict[str, Any] = {"connectorId": session.connector_id, "idTag": session.id_tag[:20],
                                   "meterStart": int(session.meter_start_wh),
                                   "timestamp": self._resolve(session.started_at)}
        if session.reservation_id is not None:
            payload["reservationId"] = session.reservation_id
        # OCPP 1.6 has no idempotency key: a StartTransaction whose answer was lost (a power cut,
        # a dropped link) may have opened a transaction whose id we never learn. Each send is
        # journaled first, so such a session is known; it is sent again with the same values
        # (the only way it gets billed; a central system can recognise the repeat by them),
        # and the possible orphan is named in the log for the operator (docs/durability.md).
        sends = int(session.extra.get(START_SENDS, 0))
        if sends:
            # The same timestamp too where the first one had to be made up (a start stamped before
            # the clock was known, in an earlier boot).
            payload["timestamp"] = session.extra.get(START_TIMESTAMP) or payload["timestamp"]
            log.warning("StartTransaction of session %d was sent %d time(s) before without an answer: the central "
                        "system may hold an extra transaction for idTag %s, meterStart %d Wh, timestamp %s that "
                        "will never be stopped; sending the same values again", session.id, sends,
                        privacy.tag(session.id_tag), payload["meterStart"], payload["timestamp"])

        def journal_send() -> None:
            nonlocal sends
            sends += 1
            self.store.set_extra(session.id, **{START_SENDS: sends, START_TIMESTAMP: payload["timestamp"]})

        try:
            conf = await self._transaction_call("StartTransaction", payload, before_send=journal_send)
        except _Exhausted as exc:
            # Never lose the session: keep the START at the head of the queue.
            raise BackendOffline(f"{exc}; kept for a later try") from None
        tx_id = int(conf["transactionId"])
        self._remember(session.key, TX_MAP_KEY, tx_id)
        log.info("StartTransaction of session %d: transactionId %d", session.id, tx_id)
        info = conf.get("idTagInfo") if isinstance(conf.get("idTagInfo"), dict) else {"status": "Accepted"}
        self._learn(session.id_tag, info)
        status = info.get("status", "Accepted")
        result = DeliveryResult(backend_session_id=str(tx_id))
        if status != "Accepted":
            result = DeliveryResult(backend_session_id=str(tx_id), id_tag_status=AuthStatus(status))
            self._deauthorize(session, status)
        return result

    def _deauthorize(self, session: Session, status: str) -> None:
        current = self.station.current_session() if self.station is not None else None
        if current is None or current.id != session.id:
            return  # already over
        log.warning("central system answered StartTransaction of session %d with %s", session.id, status)
        if self.station is not None:
            self.station.notice(f"card {status}")
        if self.keys.bool("StopTransactionOnInvalidId"):
            self._spawn(self.station.stop_session("DeAuthorized"))
        else:
            # Keep the transaction but stop delivering energy (beyond MaxEnergyOnInvalidId).
            reading = self.station.last_reading()
            base = reading.energy_wh if reading is not None else session.meter_start_wh
            self._deauthorized = (session.id, base + self.keys.int("MaxEnergyOnInvalidId"))
            self._limit_wake.set()

    def _transaction_data(self, session: Session, stopped_at: str) -> list[dict[str, Any]]:
        if metering.ENERGY not in self.keys.list("StopTxnSampledData") or session.meter_stop_wh is None:
            return []
        return [metering.energy_value(session.meter_start_wh, self._resolve(session.started_at), "Transaction.Begin"),
                metering.energy_value(session.meter_stop_wh, stopped_at, "Transaction.End")]

    async def _deliver_stop(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if session.key in (self.store.get_json(STOPPED_KEY, {}) or {}):
            return DeliveryResult()
        tx_id = self.transaction_id(session)
        if tx_id is None:
            return DeliveryResult(rejected="no transactionId: StartTransaction was never accepted")
        reason = item.payload.get("reason") or session.stop_reason or "Local"
        if reason not in _STOP_REASONS:
            reason = "Other"
        stopped_at = self._resolve(session.stopped_at)
        payload: dict[str, Any] = {"transactionId": tx_id, "meterStop": int(session.meter_stop_wh or session.meter_start_wh),
                                   "timestamp": stopped_at, "reason": reason}
        stop_tag = item.payload.get("id_tag") or (session.id_tag if reason == "Local" else None)
        if stop_tag:
            payload["idTag"] = stop_tag[:20]
        data = self._transaction_data(session, stopped_at)
        if data:
            payload["transactionData"] = data
        try:
            conf = await self._transaction_call("StopTransaction", payload)
        except _Exhausted as exc:
            return DeliveryResult(backend_session_id=str(tx_id), rejected=str(exc))
        self._remember(session.key, STOPPED_KEY, tx_id)
        if isinstance(conf.get("idTagInfo"), dict) and stop_tag:
            self._learn(stop_tag, conf["idTagInfo"])
        return DeliveryResult(backend_session_id=str(tx_id))

    async def _deliver_meter_values(self, item: OutboxItem, session: Session) -> DeliveryResult:
        tx_id = self.transaction_id(session)
        values = []
        for mv in item.payload.get("meterValue", []):
            stamp = mv.get("timestamp", "")
            if stamp.startswith(MONO_PREFIX) and self.clock.resolve(stamp) is None:
                continue  # taken in an earlier boot before the clock was known: no usable time
            values.append({**mv, "timestamp": self._resolve(stamp)})
        if not values:
            return DeliveryResult(rejected="meter values without a usable time")
        payload: dict[str, Any] = {"connectorId": item.payload.get("connectorId", session.connector_id),
                                   "meterValue": values}
        if tx_id is not None:
            payload["transactionId"] = tx_id
        try:
            await self._transaction_call("MeterValues", payload)
        except _Exhausted as exc:
            return DeliveryResult(rejected=str(exc))
        return DeliveryResult()

    # ================================================================ meter values
    def _meter_value(self, reading: Any, key: str, context: str, stamp: str) -> dict[str, Any] | None:
        wanted = [m for m in self.keys.list(key) if m in self.measurands()]
        values = metering.sampled_values(reading, wanted, context)
        return {"timestamp": stamp, "sampledValue": values} if values else None

    def _queue_meter_value(self, session: Session, mv: dict[str, Any]) -> None:
        try:
            self.store.enqueue(MessageKind.METER_VALUES, session.id,
                               {"connectorId": session.connector_id, "meterValue": [mv]})
        except Exception as exc:  # StorageError: a lost sample is not worth a crash
            log.error("meter value not queued: %s", exc)
            return
        self._wake_outbox()

    def _active_session(self) -> Session | None:
        s = self.station.current_session() if self.station is not None else None
        return s if s is not None and s.state == "active" else None

    async def _meter_loop(self) -> None:
        """Sampled (from the transaction start) and clock-aligned (from midnight) meter values."""
        session_id: int | None = None
        started = 0.0
        next_sample: float | None = None
        next_aligned: datetime | None = None
        while True:
            session = self._active_session()
            mono = time.monotonic()
            if (session.id if session else None) != session_id:
                if session_id is not None:
                    self._transaction_ended()
                session_id = session.id if session else None
                started, next_sample = mono, None
            sample_s = self.scaled(self.keys.int("MeterValueSampleInterval"))
            if session is None or sample_s <= 0:
                next_sample = None
            elif next_sample is None:
                next_sample = metering.next_sampled(started, mono, sample_s)
            aligned_s = self.scaled(self.keys.int("ClockAlignedDataInterval"))
            now = self.now()
            if aligned_s <= 0:
                next_aligned = None
            elif next_aligned is None:
                next_aligned = metering.next_aligned(now, aligned_s)
            if next_sample is not None and mono >= next_sample:
                next_sample = metering.next_sampled(started, mono, sample_s)
                reading = self.station.last_reading()
                if reading is not None and session is not None:
                    mv = self._meter_value(reading, "MeterValuesSampledData", "Sample.Periodic", self.clock.stamp())
                    if mv:
                        self._queue_meter_value(session, mv)
            if next_aligned is not None and now >= next_aligned:
                stamp, next_aligned = iso(next_aligned), metering.next_aligned(now, aligned_s)
                reading = self.station.last_reading() if self.station is not None else None
                if reading is not None:
                    mv = self._meter_value(reading, "MeterValuesAlignedData", "Sample.Clock", stamp)
                    if mv and session is not None:
                        self._queue_meter_value(session, mv)
                    elif mv and self.registration == "Accepted":
                        self._spawn(self._send_meter_values({"connectorId": self._connector_id(), "meterValue": [mv]}))
            waits = [0.5]
            if next_sample is not None:
                waits.append(next_sample - time.monotonic())
            if next_aligned is not None:
                waits.append((next_aligned - self.now()).total_seconds())
            self._meter_wake.clear()
            if await self._wait(self._meter_wake, max(0.0, min(waits))):
                next_sample = next_aligned = None  # an interval changed: recompute

    async def _send_meter_values(self, payload: dict[str, Any]) -> None:
        try:
            await self.request("MeterValues", payload, allow_pending=True)
        except (CallFailed, BackendOffline) as exc:
            log.debug("MeterValues not sent: %s", exc)

    def _connector_id(self) -> int:
        return int(self.config.station.connector_id)

    def _transaction_ended(self) -> None:
        self.profiles.end_transaction()
        self._deauthorized = None
        self._limit_wake.set()

    # ================================================================ power limit
    def _current_limit(self) -> float | None:
        session = self._active_session()
        if self._deauthorized is not None and session is not None and session.id == self._deauthorized[0]:
            reading = self.station.last_reading()
            if reading is None or reading.energy_wh >= self._deauthorized[1]:
                return 0.0
        tx_id = self.transaction_id(session) if session is not None else None
        tx_start = None
        if session is not None and session.started_at and not session.started_at.startswith(MONO_PREFIX):
            tx_start = parse_iso(session.started_at)
        value = self.profiles.limit_at(self.now(), self._connector_id(), tx_start, tx_id)
        return None if value is None else value[0]

    async def _limit_loop(self) -> None:
        while True:
            try:
                limit = self._current_limit()
                if limit != self._limit_sent and self.station is not None:
                    self._limit_sent = limit
                    log.info("power limit now %s", "none" if limit is None else f"{limit:.0f} W")
                    self.station.set_power_limit(limit)
            except Exception:
                log.exception("evaluating the charging profiles failed")
            self._limit_wake.clear()
            await self._wait(self._limit_wake, 1.0)

    # ================================================================ firmware and diagnostics
    async def _firmware_notice(self, status: str) -> None:
        self.firmware_status = status
        try:
            await self.request("FirmwareStatusNotification", {"status": status}, allow_pending=True)
        except (CallFailed, BackendOffline) as exc:
            log.info("FirmwareStatusNotification %s not sent: %s", status, exc)
            if status in ("Installed", "InstallationFailed", "DownloadFailed"):
                self.store.put_json(FIRMWARE_KEY, status)

    async def _send_pending_firmware_status(self) -> None:
        status = self.store.get_json(FIRMWARE_KEY, None)
        if status:
            self.store.put_json(FIRMWARE_KEY, None)
            await self._firmware_notice(status)

    async def update_firmware(self, location: str, retrieve_date: str, retries: int | None,
                              retry_interval: int | None) -> None:
        delay = (parse_iso(retrieve_date) - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(self.scaled(delay) if self.time_scale != 1.0 else delay)
        tries = max(1, retries if retries is not None else 3)
        pause = self.scaled(retry_interval if retry_interval is not None else 60)
        path = await files.download_retrying(location, self.work_dir / "firmware",
                                             ca_file=self.config.backend.ocpp.ca_file, tries=tries, pause=pause,
                                             before_try=lambda: self._firmware_notice("Downloading"))
        if path is None:
            await self._firmware_notice("DownloadFailed")
            self.firmware_status = "Idle"
            return
        await self._firmware_notice("Downloaded")
        # Wait for a running transaction to end: installing restarts the station.
        while self._active_session() is not None:
            await asyncio.sleep(1.0)
        await self._firmware_notice("Installing")
        ok, output = (False, "not a Python package file")
        if files.is_package(path):
            ok, output = await files.install(path, self.pip_command)
        if not ok:
            log.error("firmware installation failed: %s", output)
            await self._firmware_notice("InstallationFailed")
            self.firmware_status = "Idle"
            return
        self.security.event("FirmwareUpdated", f"{path.name} installed")
        await self._firmware_notice("Installed")
        self.firmware_status = "Idle"
        if self.station is not None:
            await self.station.reset(False)  # the service manager restarts us on the new release

    async def _diagnostics_notice(self, status: str) -> None:
        self.diagnostics_status = status
        try:
            await self.request("DiagnosticsStatusNotification", {"status": status}, allow_pending=True)
        except (CallFailed, BackendOffline) as exc:
            log.info("DiagnosticsStatusNotification %s not sent: %s", status, exc)

    def diagnostics_extra(self) -> dict[str, str]:
        """What the backend adds to a diagnostics archive: recent frames (id tags masked unless
        station.log_tags) and the configuration keys (never the AuthorizationKey)."""
        keys = self.keys.report(None)[0] + [self.security.report(n) for n in sorted(self.security.KEY_NAMES)]
        return {"ocpp-frames.txt": "\n".join(self.frames) + "\n",
                "ocpp-configuration.txt": "\n".join(f"{k['key']}={k.get('value', '(write-only)')}" for k in keys) + "\n"}

    async def upload_diagnostics(self, name: str, location: str, retries: int | None, retry_interval: int | None,
                                 since: str | None, until: str | None) -> None:
        archive = await files.build_archive(self.work_dir / "diagnostics" / name, self.log_dirs, since=since,
                                            until=until, extra=self.diagnostics_extra())
        tries = max(1, retries if retries is not None else 3)
        pause = self.scaled(retry_interval if retry_interval is not None else 60)
        await self._diagnostics_notice("Uploading")
        for n in range(tries):
            try:
                await files.upload(location, archive, ca_file=self.config.backend.ocpp.ca_file)
            except Exception as exc:
                log.warning("diagnostics upload %d of %d failed: %s", n + 1, tries, exc)
                if n + 1 < tries:
                    await asyncio.sleep(pause)
                continue
            await self._diagnostics_notice("Uploaded")
            break
        else:
            await self._diagnostics_notice("UploadFailed")
        self.diagnostics_status = "Idle"
        try:
            archive.unlink()
        except OSError:
            pass


class _Handlers(SecurityHandlers, Peer):
    """Central system -> charge point: validate, ask the station, answer."""

    def __init__(self, backend: OcppBackend, connection: Any) -> None:
        super().__init__(backend.charge_point_id, connection, backend.response_timeout)
        self.b = backend

    @property
    def station(self) -> StationControl:
        assert self.b.station is not None
        return self.b.station

    def _connector_ok(self, connector_id: int | None, allow_zero: bool = True) -> bool:
        valid = {self.b._connector_id(), 0} if allow_zero else {self.b._connector_id()}
        return connector_id is None or connector_id in valid

    # ---------------------------------------------------------------- Core
    @on(Action.change_availability)
    async def on_change_availability(self, connector_id: int, type: str, **_: Any):
        if not self._connector_ok(connector_id):
            return call_result.ChangeAvailability(status="Rejected")
        return call_result.ChangeAvailability(status=await self.station.set_available(type == "Operative"))

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any):
        security_key = self.b.security.canonical(key)
        if security_key is not None:
            return call_result.ChangeConfiguration(status=self.b.security.change(security_key, value))
        return call_result.ChangeConfiguration(status=self.b.keys.change(key, value))

    @after(Action.change_configuration)
    async def after_change_configuration(self, key: str, value: str, **_: Any):
        await self.reconnect_if_requested()

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any):
        sec = self.b.security
        known, unknown = self.b.keys.report(key)
        if not key:
            known += [sec.report(name) for name in sorted(sec.KEY_NAMES)]
        else:
            still = []
            for name in unknown:
                canon = sec.canonical(name)
                if canon is None:
                    still.append(name)
                else:
                    known.append(sec.report(canon))
            unknown = still
        return {"configurationKey": known, **({"unknownKey": unknown} if unknown else {})}

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any):
        self.b.cache.clear()
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any):
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, connector_id: int | None = None, charging_profile: dict | None = None,
                              **_: Any):
        if connector_id is not None and connector_id != self.b._connector_id():
            return call_result.RemoteStartTransaction(status="Rejected")
        if charging_profile is not None:
            from ocpp.charge_point import snake_to_camel_case
            profile = snake_to_camel_case(charging_profile)
            if profile.get("chargingProfilePurpose") != "TxProfile":
                return call_result.RemoteStartTransaction(status="Rejected")
            self._start_profile = profile
        else:
            self._start_profile = None
        if self.b.keys.bool("AuthorizeRemoteTxRequests"):
            status = self.station.status().status
            busy = self.station.current_session() is not None
            ok = not busy and status in (ConnectorStatus.AVAILABLE, ConnectorStatus.PREPARING, ConnectorStatus.RESERVED)
            return call_result.RemoteStartTransaction(status="Accepted" if ok else "Rejected")
        ok = await self.station.remote_start(id_tag, connector_id)
        if ok:
            self._install_start_profile()
        return call_result.RemoteStartTransaction(status="Accepted" if ok else "Rejected")

    def _install_start_profile(self) -> None:
        profile = getattr(self, "_start_profile", None)
        if profile is not None:
            self.b.profiles.end_transaction()
            self.b.profiles.installed.append({"connectorId": self.b._connector_id(), "profile": profile})
            self.b.profiles._save()
            self.b._limit_wake.set()

    @after(Action.remote_start_transaction)
    async def after_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any):
        if not self.b.keys.bool("AuthorizeRemoteTxRequests"):
            return
        result = await self.b.authorize(id_tag)
        if not result.accepted:
            self.station.notice(f"remote start refused: {result.status.value}")
            return
        if await self.station.remote_start(id_tag, connector_id):
            self._install_start_profile()

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **_: Any):
        ok = await self.station.remote_stop(str(transaction_id))
        if not ok:
            # The station may not know the transactionId yet (it is recorded when the
            # StartTransaction answer comes back); this backend does.
            session = self.b._active_session()
            if session is not None and self.b.transaction_id(session) == transaction_id:
                self.b._spawn(self.station.stop_session("Remote"))
                ok = True
        return call_result.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any):
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    async def after_reset(self, type: str, **_: Any):
        self.b.security.event("ResetOrReboot", f"{type} reset requested by the central system")
        await self.station.reset(type == "Hard")

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, connector_id: int, **_: Any):
        if connector_id != self.b._connector_id():
            return call_result.UnlockConnector(status="NotSupported")
        return call_result.UnlockConnector(status=await self.station.unlock())

    # ---------------------------------------------------------------- Local auth list
    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any):
        return call_result.GetLocalListVersion(list_version=self.b.local_list.version)

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str, local_authorization_list: list | None = None,
                           **_: Any):
        from ocpp.charge_point import snake_to_camel_case
        items = snake_to_camel_case(local_authorization_list or [])
        status = self.b.local_list.update(list_version, update_type, items, self.b.keys.int("SendLocalListMaxLength"),
                                          self.b.keys.int("LocalAuthListMaxLength"))
        return call_result.SendLocalList(status=status)

    # ---------------------------------------------------------------- Remote trigger
    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any):
        if connector_id is not None and not self._connector_ok(connector_id):
            return call_result.TriggerMessage(status="Rejected")
        return call_result.TriggerMessage(status="Accepted")

    @after(Action.trigger_message)
    async def after_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any):
        b = self.b
        if connector_id is not None and not self._connector_ok(connector_id):
            return
        if requested_message == "BootNotification":
            if b.registration == "Accepted":
                try:
                    conf = await b.request("BootNotification", b._boot_payload())
                    b._set_time(conf.get("currentTime"))
                except (CallFailed, BackendOffline) as exc:
                    log.info("triggered BootNotification failed: %s", exc)
            else:
                b._boot_now.set()
        elif requested_message == "Heartbeat":
            await b.heartbeat()
        elif requested_message == "StatusNotification":
            for report in b._station_reports():
                if connector_id is None or report.connector_id == connector_id:
                    await b._send_status_now(report)
        elif requested_message == "MeterValues":
            reading = self.station.last_reading()
            for _ in range(30):  # just after start-up the meter may not have answered yet
                if reading is not None:
                    break
                await asyncio.sleep(0.1)
                reading = self.station.last_reading()
            if reading is None:
                log.warning("TriggerMessage MeterValues: no meter reading to send")
                return
            mv = b._meter_value(reading, "MeterValuesSampledData", "Trigger", b.stamp())
            if mv is None:
                return
            payload: dict[str, Any] = {"connectorId": connector_id if connector_id else b._connector_id(),
                                       "meterValue": [mv]}
            session = b._active_session()
            tx_id = b.transaction_id(session) if session is not None else None
            if tx_id is not None:
                payload["transactionId"] = tx_id
            await b._send_meter_values(payload)
        elif requested_message == "FirmwareStatusNotification":
            status = b.firmware_status if b.firmware_status in ("Downloading", "Downloaded", "Installing") else "Idle"
            await b._firmware_notice(status)
        elif requested_message == "DiagnosticsStatusNotification":
            await b._diagnostics_notice("Uploading" if b.diagnostics_status == "Uploading" else "Idle")

    # ---------------------------------------------------------------- Reservation
    @on(Action.reserve_now)
    async def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                             parent_id_tag: str | None = None, **_: Any):
        if connector_id == 0 and not self.b.keys.bool("ReserveConnectorZeroSupported"):
            return call_result.ReserveNow(status="Rejected")
        if not self._connector_ok(connector_id):
            return call_result.ReserveNow(status="Rejected")
        if parent_id_tag is None:
            known = self.b._lookup(id_tag)
            parent_id_tag = known.get("parentIdTag") if known else None
        status = await self.station.reserve(reservation_id, id_tag, parent_id_tag, expiry_date)
        return call_result.ReserveNow(status=status)

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int, **_: Any):
        ok = await self.station.cancel_reservation(reservation_id)
        return call_result.CancelReservation(status="Accepted" if ok else "Rejected")

    # ---------------------------------------------------------------- Smart charging
    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict, **_: Any):
        from ocpp.charge_point import snake_to_camel_case
        session = self.b._active_session()
        tx_id = self.b.transaction_id(session) if session is not None else None
        status = self.b.profiles.set(connector_id, snake_to_camel_case(cs_charging_profiles), tx_id)
        self.b._limit_wake.set()
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None, **_: Any):
        status = self.b.profiles.clear(id, connector_id, charging_profile_purpose, stack_level)
        self.b._limit_wake.set()
        return call_result.ClearChargingProfile(status=status)

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None,
                                  **_: Any):
        if not self._connector_ok(connector_id):
            return {"status": "Rejected"}
        b = self.b
        session = b._active_session()
        tx_id = b.transaction_id(session) if session is not None else None
        tx_start = None
        if session is not None and session.started_at and not session.started_at.startswith(MONO_PREFIX):
            tx_start = parse_iso(session.started_at)
        now = b.now()
        schedule = b.profiles.composite(connector_id or b._connector_id(), duration, charging_rate_unit, now,
                                        tx_start, tx_id)
        answer: dict[str, Any] = {"status": "Accepted", "connectorId": connector_id,
                                  "scheduleStart": iso(now.replace(microsecond=0))}
        if schedule is not None:
            answer["chargingSchedule"] = schedule
        return answer

    # ---------------------------------------------------------------- Firmware management
    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, retries: int | None = None,
                           retry_interval: int | None = None, **_: Any):
        b = self.b
        if b.security.profile >= 1:
            # L01.FR.20: with the security extension in use only signed firmware is taken.
            raise RpcError("NotSupported", "unsigned firmware is not accepted: use SignedUpdateFirmware")
        if b._firmware_job is not None and not b._firmware_job.done():
            b._firmware_job.cancel()
        b._firmware_job = b._spawn(b.update_firmware(location, retrieve_date, retries, retry_interval))
        return call_result.UpdateFirmware()

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, retries: int | None = None, retry_interval: int | None = None,
                           start_time: str | None = None, stop_time: str | None = None, **_: Any):
        b = self.b
        name = f"diagnostics-{b.charge_point_id}-{b.now().strftime('%Y%m%dT%H%M%SZ')}.tar.gz"[:255]
        b._spawn(b.upload_diagnostics(name, location, retries, retry_interval, start_time, stop_time))
        return call_result.GetDiagnostics(file_name=name)


def create(config: Any, store: Any) -> OcppBackend:
    return OcppBackend(config, store)

