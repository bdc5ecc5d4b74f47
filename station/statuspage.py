"""The local status page: the station seen from a phone on the same network.

Theory of operation
-------------------
Off by default (`status_page.enabled`). When on, the daemon serves, on
`status_page.listen` only:

    /               one HTML page, rendered on the server, that reloads itself every 5 s
    /api/status     the same facts as JSON (the page is rendered from this very dict)
    /sessions.csv   the last 1000 sessions as CSV (`station sessions --csv` has them all)

State, LCD text, LEDs, contactor, meter, the running session, the backend
link and its queue (and, in the simulator, the emulated link as well), the
last sessions and the faults the journal holds. "Needs attention" lists the
sessions the backend did not take (messages held undelivered, with the
reason and the command that sends them again) and the transactions the
backend may hold open that the station cannot stop (masked idTag,
meterStart, timestamp); the loops the supervisor had to restart are named
with their reason.

Read-only, entirely: no request changes anything in the station, with or
without a password (v1 has no action at all; GET and HEAD are the only
methods answered). With `status_page.password_file` (or `password`) every
request needs HTTP Basic (`status_page.user`), compared in constant time;
failures are bounded per address and overall, without locking out a device
that signed in before (pageauth.py), and counted into one log line a minute
(tally.Tally). Without
a password the page is open to whoever reaches the address and shows id
tags masked (a tag is enough to clone a card, docs/security.md); with a
password they are shown in full. A password file that cannot be read keeps
the page off (it never falls back to no password).

Cost: nothing runs between requests (no polling; a timer only to log the
minute's summary after refusals); a request reads the charger's state in
memory and the journal through its read-only view (station/journalview.py:
a connection of its own, opened `mode=ro`), in a worker thread, so neither
blocks the charger.
If the address cannot be bound (the network is not up yet after a power
cut, the port is taken), that is logged once at ERROR and retried every 30 s;
the station charges regardless.

Browsers are kept from misusing it: a strict Content-Security-Policy (no
script at all, the one inline style by hash), no framing, no referrer, no
caching, and requests for a host name that is not this machine's are
refused (421), which defeats DNS rebinding from a web page in the LAN.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import logging
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from station import __version__, billing, privacy, sessionlist
from station.config import split_listen
from station.configcheck import read_password
from station.errors import StationError
from station.httpd import HttpServer, Request, Response, text
from station.journalview import FaultRecord, JournalView
from station.pageauth import PasswordGuard
from station.store import DB_NAME
from station.tally import Tally

log = logging.getLogger(__name__)

REFRESH_S = 5
LAST_SESSIONS = 10
CSV_SESSIONS = 1000
LAST_FAULTS = 10
LAST_ATTENTION = 20
RETRY_BIND_S = 30.0
TALLY_PERIOD_S = 60.0  # wrong passwords, lockouts and closed connections: one log line this often

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:12px;background:#f4f5f7;color:#1d2430;max-width:720px}
h1{font-size:1.2em;margin:0 0 8px}
.badge{display:inline-block;padding:6px 14px;border-radius:16px;color:#fff;font-weight:bold;font-size:1.3em}
.Available{background:#1e8e3e}.Charging{background:#1a73e8}.SuspendedEV,.SuspendedEVSE{background:#0b8a8a}
.Preparing,.Finishing,.Reserved{background:#e37400}.Unavailable{background:#5f6368}.Faulted{background:#d93025}
pre.lcd{background:#2b4d1f;color:#c8f7a6;padding:8px 10px;border-radius:6px;font-size:1.05em;display:inline-block;margin:8px 0}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0 14px}
td,th{padding:5px 6px;border-bottom:1px solid #e0e0e0;text-align:left;font-size:.92em}
th{background:#eceff1}.num{text-align:right}.tag{white-space:nowrap}.bad{color:#d93025;font-weight:bold}.ok{color:#1e8e3e}
footer{color:#5f6368;font-size:.8em}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
SECURITY_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; img-src data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class StatusPage:
    def __init__(self, station: Any) -> None:
        self.station = station
        page = station.config.status_page
        self.host, self.port = split_listen(page.listen)
        self.user = page.user
        self._guard: PasswordGuard | None = None  # None = no password
        self._server: HttpServer | None = None
        self._task: asyncio.Task | None = None
        self.tally = Tally("status page", TALLY_PERIOD_S, log)
        self._flush_timer: asyncio.TimerHandle | None = None
        self._journal_view = JournalView(Path(station.config.station.state_dir) / DB_NAME)
        self._names = _own_names()
        self.disabled_reason: str | None = None

    @property
    def url(self) -> str | None:
        """Where the page is served now (None until bound)."""
        if self._server is None:
            return None
        host = self.host if self.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        return f"http://{'[' + host + ']' if ':' in host else host}:{self._server.port}/"

    @property
    def protected(self) -> bool:
        return self._guard is not None

    async def start(self) -> None:
        """Serve, or keep trying in the background; never raises (the station charges without it)."""
        page = self.station.config.status_page
        password = page.password
        if page.password_file:
            try:
                password = read_password(page.password_file)
            except ValueError as exc:
                self.disabled_reason = str(exc)
                log.error("status page off: status_page.password_file: %s (it is never served without the "
                          "password it was configured with)", exc)
                return
        if password is not None:
            self._guard = PasswordGuard(self.user, password)
        if not await self._bind(first=True):
            self._task = self.station.supervisor.spawn(self._keep_binding(), "status-page-bind")

    async def _bind(self, first: bool) -> bool:
        server = HttpServer(self.host, self.port, self.handle, base_headers=SECURITY_HEADERS, note=self.note)
        try:
            await server.start()
        except OSError as exc:
            if first:
                log.error("status page: cannot listen on %s (%s); retrying every %.0f s",
                          self.station.config.status_page.listen, exc.strerror or exc, RETRY_BIND_S)
            return False
        self._server = server
        log.info("status page on %s (%s)", self.url, "password required" if self.protected
                 else "no password: read-only, id tags masked")
        return True

    async def _keep_binding(self) -> None:
        while True:
            await asyncio.sleep(RETRY_BIND_S)
            if await self._bind(first=False):
                return

    def note(self, reason: str, source: str) -> None:
        """Count a refusal into the tally; the summary line follows within TALLY_PERIOD_S (no timer otherwise)."""
        self.tally.note(reason, source)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(TALLY_PERIOD_S, self._flush)

    def _flush(self) -> None:
        self.tally.flush()
        self._flush_timer = None if self.tally.quiet else \
            asyncio.get_running_loop().call_later(TALLY_PERIOD_S, self._flush)

    async def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self.tally.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._server is not None:
            await self._server.close()
            self._server = None
        self._journal_view.close()

    # ------------------------------------------------------------------ requests
    async def handle(self, request: Request) -> Response:
        if not self._host_allowed(request.headers.get("host", "")):
            return text(421, "this station answers only to its own address")
        if self._guard is None:
            return await self._route(request, False)
        authorization, cookie = request.headers.get("authorization", ""), request.headers.get("cookie", "")
        verdict = self._guard.check(authorization, cookie, request.peer, time.monotonic())
        if verdict.hold_s:
            # A budget is spent and this client has no device cookie: the password is checked after
            # the hold (pageauth.py says why). Until then the request counts as unfinished, so a new
            # request from the same address closes the oldest held one (httpd.py).
            await asyncio.sleep(verdict.hold_s)
            verdict = self._guard.check(authorization, cookie, request.peer, time.monotonic(), held=True)
        if verdict.reason is not None:
            self.note(verdict.reason, request.peer)
        if verdict.status == 429:
            return text(429, "too many wrong passwords; a device that signed in here before is let in at once, "
                             "a right password from another after a wait",
                        {"Retry-After": str(verdict.retry_after)})
        if verdict.status == 401:
            realm = f"station {self.station.config.station.name}".replace('"', "'")
            return text(401, "password required", {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'})
        response = await self._route(request, True)
        if verdict.set_cookie:
            response.headers["Set-Cookie"] = self._guard.set_cookie_header()
        return response

    async def _route(self, request: Request, full: bool) -> Response:
        if request.path == "/":
            snap = await self.snapshot(full)
            return Response(200, render_html(snap).encode(), "text/html; charset=utf-8")
        if request.path == "/api/status":
            snap = await self.snapshot(full)
            return Response(200, json.dumps(snap, indent=1).encode(), "application/json")
        if request.path == "/sessions.csv":
            table = await asyncio.to_thread(self._sessions, CSV_SESSIONS, full)
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.station.config.station.name)
            return Response(200, sessionlist.to_csv(table).encode(), "text/csv; charset=utf-8",
                            {"Content-Disposition": f'attachment; filename="{name}-sessions.csv"'})
        return text(404, "not found (try /, /api/status or /sessions.csv)")

    def _host_allowed(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower().rstrip(".")
        if not name:
            return True  # HTTP/1.0 without Host
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in self._names

    # ------------------------------------------------------------------ the facts
    async def snapshot(self, full_tags: bool) -> dict[str, Any]:
        st = self.station
        ch, cfg = st.charger, st.config
        tag = str if full_tags else privacy.mask
        reading = ch.reading
        session = ch.session
        world = st.world
        emulated = None
        if world is not None and (st.embedded is not None or cfg.backend.kind == "local"):
            emulated = "up" if world.backend_up else "down"
        try:
            queued: int | None = st.store.pending_messages()
            held: int | None = st.store.held_count()
        except Exception:
            queued = held = None
        sessions, faults, attention = await asyncio.to_thread(self._journal, LAST_SESSIONS, full_tags)
        return {
            "station": {"name": cfg.station.name, "version": __version__, "connector_id": cfg.station.connector_id,
                        "hardware": cfg.hardware.mode, "uptime_s": round(time.monotonic() - st.started_at)},
            "state": ch.state.value,
            "faults": [{"source": s, "code": f.code, "text": f.text} for s, f in ch.faults.items()],
            "lcd": [line.rstrip() for line in ch.presenter.lines],
            "leds": ch.presenter.led.value if ch.presenter.led is not None else None,
            "contactor": "closed" if st.hardware.contactor.closed else "open",
            "meter": {
                "model": cfg.meter.model,
                "energy_wh": reading.energy_wh if reading else None,
                "power_w": round(reading.power_w, 1) if reading and reading.power_w is not None else None,
                "age_s": round(time.monotonic() - reading.taken_at, 1) if reading else None,
            },
            "session": None if session is None else {
                "id": session.id, "id_tag": tag(session.id_tag),
                "started_at": st.clock.estimate_of(session.started_at) or session.started_at,
                "meter_start_wh": session.meter_start_wh,
                "energy_wh": max(0, reading.energy_wh - session.meter_start_wh) if reading else None,
            },
            "backend": {"kind": cfg.backend.kind, "online": bool(ch.online), "queued": queued,
                        "held": held, "emulated_link": emulated},
            "sessions": sessions,
            "attention": attention,
            "restarts": {name: {"count": r.count, "why": r.why} for name, r in st.supervisor.restarts.items()},
            "recent_faults": faults,
            "id_tags": "full" if full_tags else "masked",
            "generated_at": st.clock.stamp(),
            "clock": clock_facts(st.clock),
        }

    def _sessions(self, last: int, full_tags: bool) -> list[dict[str, Any]]:
        return self._journal(last, full_tags)[0]

    def _journal(self, last: int, full_tags: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                            list[dict[str, Any]]]:
        """The last sessions and faults, newest first, and the sessions that need the operator, through the
        journal's read-only view (in a worker thread). Faults come from the journal, so they outlive a
        restart, with the energy the meter counted while they lasted (a welded contactor lets it flow)."""
        tag = str if full_tags else privacy.mask
        view = self._journal_view
        try:
            sessions, faults, attention = view.sessions(last), view.faults(LAST_FAULTS), view.needing_attention(LAST_ATTENTION)
        except StationError as exc:
            log.warning("status page: %s", exc)
            return [], [], []
        clock = self.station.clock
        return ([sessionlist.summary(s, tag, clock) for s in sessions], [_fault(f) for f in faults],
                [sessionlist.summary(s, tag, clock) for s in attention])


def clock_facts(clock: Any) -> dict[str, Any]:
    """Where the station's time comes from (station/clock.py): "system" (NTP), "backend", or
    "estimate" (the system clock, not synchronized: session times are marked estimated)."""
    return {"source": clock.source or "estimate", "steps": clock.steps}


def _fault(f: FaultRecord) -> dict[str, Any]:
    return {"at": f.raised_at, "source": f.source, "code": f.vendor or f.code, "text": f.text,
            "cleared_at": f.cleared_at, "energy_wh": f.energy_wh}


def _own_names() -> set[str]:
    names = {"localhost"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
            names.add(name.split(".")[0].lower() + ".local")  # mDNS (Avahi on Raspberry Pi OS)
    return names


# ---------------------------------------------------------------------- HTML
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def escape(value: str) -> str:
    """HTML text and attribute values (html.escape, without importing its 250 KiB entity table)."""
    return str(value).translate(_ESCAPES)


def _local(stamp: str | None, short: bool = False) -> str:
    """An ISO UTC stamp in this machine's time zone (to the minute); other text as it is."""
    if not stamp:
        return ""
    try:
        local = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone()
        return local.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def _when(row: dict[str, Any], which: str) -> str:
    """A session's start or stop, short, with "~" before an estimate (station/sessionlist.py)."""
    mark = "~" if which in (row.get("time_estimated") or ()) else ""
    return mark + _local(row["started_at" if which == "start" else "stopped_at"], short=True)


def _kwh(wh: int | None) -> str:
    return "" if wh is None else f"{wh / 1000:.3f}"


def _delivered(row: dict[str, Any]) -> str:
    if row.get("undelivered"):
        return '<span class="bad">held</span>'
    if row["state"] == "active":
        return "running"
    return escape(billing.delivered_words(row)) if row["delivered"] else '<span class="bad">not yet</span>'


def _at_stake(row: dict[str, Any]) -> str:
    """The energy not billed or maybe not billed, and why (refused, possibly lost, late START)."""
    notes = billing.notes_text(row)
    if not notes:
        return ""
    return f'<span class="bad">{_kwh(row.get("at_stake_wh"))} kWh: {escape(notes)}</span>'


def _attention(s: dict[str, Any]) -> str:
    """The "Needs attention" section: held messages, transactions left open, restarted loops."""
    items = [f"<li>{escape(line.lstrip('! '))}</li>" for line in sessionlist.attention(s.get("attention", []))]
    items += [f"<li>the {escape(name)} loop was restarted {r['count']} time(s); last: {escape(r['why'])}</li>"
              for name, r in s.get("restarts", {}).items()]
    if not items:
        return ""
    return f'<h2>Needs attention</h2>\n<ul id="attention" class="bad">{"".join(items)}</ul>\n'


def render_html(s: dict[str, Any]) -> str:
    e = escape
    b, m, sess = s["backend"], s["meter"], s["session"]
    link = "online" if b["online"] else "OFFLINE"
    power = "" if m["power_w"] is None else f"{m['power_w'] / 1000:.2f}"
    if b["emulated_link"] is not None:
        link += f" (emulated link {b['emulated_link']})"
    rows = [
        ("Backend", f"{e(b['kind'])}: <span id=\"backend\" class=\"{'ok' if b['online'] else 'bad'}\">{e(link)}</span>, "
                    f"<span id=\"queued\">{e(str(b['queued']))}</span> message(s) queued"
                    + (f", <span id=\"held\" class=\"bad\">{b['held']}</span> held undelivered" if b.get("held") else "")),
        ("Meter", f"<span id=\"power\">{power}</span> kW, register {_kwh(m['energy_wh'])} kWh ({e(m['model'])})"),
        ("Contactor", e(s["contactor"])),
        ("LEDs", e(str(s["leds"] or "-"))),
    ]
    clock = s.get("clock") or {}
    if clock.get("source") == "estimate":
        rows.append(("Clock", "<span class=\"bad\">not synchronized</span> (no NTP, no backend's time): "
                              "times are estimates"))
    if sess is not None:
        rows.insert(0, ("Session", f"#{sess['id']} {e(sess['id_tag'])} since {e(_local(sess['started_at']))}, "
                                   f"{_kwh(sess['energy_wh'])} kWh"))
    faults = "".join(f"<li class=\"bad\">{e(f['text'])}</li>" for f in s["faults"])
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    sessions = "".join(
        f"<tr><td>{r['id']}</td><td class=\"tag\">{e(r['id_tag'])}</td>"
        f"<td>{e(_when(r, 'start'))}</td>"
        f"<td class=\"num\">{_kwh(r['energy_wh'])}</td>"
        f"<td>{e(_when(r, 'stop') + ' ' + (r['stop_reason'] or '')) if r['stopped_at'] else '-'}</td>"
        f"<td>{_delivered(r)}</td><td class=\"stake\">{_at_stake(r)}</td></tr>"
        for r in s["sessions"]) or "<tr><td colspan=7>no sessions yet</td></tr>"
    recent = "".join(f"<tr><td>{e(_local(f['at']))}</td><td>{e(f['source'])}</td><td>{e(f['text'])}</td>"
                     f"<td>{e(_local(f['cleared_at'])) if f['cleared_at'] else 'not yet'}</td></tr>"
                     for f in s["recent_faults"]) or "<tr><td colspan=4>none recorded</td></tr>"
    st = s["station"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_S}">
<link rel="icon" href="data:,">
<title>{e(st['name'])}: {e(s['state'])}</title>
<style>{STYLE}</style></head>
<body>
<h1>{e(st['name'])}</h1>
<span id="state" class="badge {e(s['state'])}">{e(s['state'])}</span>
<ul id="faults">{faults}</ul>
<pre class="lcd" id="lcd">{e(chr(10).join(s['lcd']))}</pre>
<table id="facts">{table}</table>
{_attention(s)}<h2>Last sessions</h2>
<table id="sessions"><tr><th>#</th><th>tag</th><th>started</th><th class="num">kWh</th><th>ended</th><th>sent</th>
<th>at stake</th></tr>
{sessions}</table>
<p><a href="/sessions.csv" id="csv">Download CSV</a> (last {CSV_SESSIONS} sessions; id tags {e(s['id_tags'])})</p>
<h2>Recent faults</h2>
<table id="recent-faults"><tr><th>when</th><th>part</th><th>what</th><th>cleared</th></tr>{recent}</table>
<footer>station {e(st['version'])}, {e(st['hardware'])} hardware, up {st['uptime_s'] // 3600} h
{st['uptime_s'] // 60 % 60} min; read-only, refreshed every {REFRESH_S} s; JSON at <a href="/api/status">/api/status</a>
</footer>
</body></html>
"""
