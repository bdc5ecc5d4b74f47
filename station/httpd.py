"""A very small HTTP/1.1 server on asyncio streams, for the status page.

Only what a read-only page needs: GET and HEAD, one request per connection
(`Connection: close`), no request bodies, no chunked encoding, no
keep-alive. Everything is bounded so that nobody on the network can tie the
station up with it: the request head (8 KiB), the time to send it (10 s),
the time to take the answer (10 s), and the connections held at once, by the
policy of station/admission.py: 16 in all, 4 per address that have not sent
their whole request head yet (its next one closes its oldest such) and 8 per
address in all; when all 16 are taken, a newcomer closes the oldest that has
not finished its request head. So a host that opens slow connections holds 4
of them and never keeps another client out; only 16 requests being answered
at once make a newcomer wait for 503. Closes are reported to `note` (the
status page counts them into one log line a minute). A handler that raises
gets a 500 and a log line; the station goes on.

Standard library only: the station's dependencies stay as they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from station.admission import Admission, ConnectionLimits, Slot

log = logging.getLogger(__name__)

REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 421: "Misdirected Request",
           431: "Request Header Fields Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable", 505: "HTTP Version Not Supported"}
MAX_HEAD = 8192
HEAD_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
MAX_CLIENTS = 16
MAX_SLOW_PER_PEER = 4  # connections of one address whose request head has not arrived yet
MAX_PER_PEER = 8


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: str
    headers: dict[str, str]  # names in lower case
    peer: str  # the client's IP address


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, (message + "\n").encode(), headers=headers or {})


class HttpServer:
    def __init__(self, host: str, port: int, handler: Handler, *, base_headers: dict[str, str] | None = None,
                 max_clients: int = MAX_CLIENTS, note: Callable[[str, str], None] | None = None) -> None:
        self.host, self.port = host, port
        self.handler = handler
        self.base_headers = base_headers or {}
        self.admission = Admission(ConnectionLimits(max_connections=max_clients, max_per_peer=MAX_PER_PEER,
                                                    max_unproven_per_peer=MAX_SLOW_PER_PEER,
                                                    first_request_s=HEAD_TIMEOUT_S))
        self.note = note or (lambda reason, peer: None)
        self._server: asyncio.Server | None = None
        self._clients: dict[Slot, asyncio.Task] = {}

    async def start(self) -> None:
        """Bind and listen. Raises OSError (address in use, not available)."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = list(self._clients.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else "?"
        verdict = self.admission.admit(address, asyncio.get_running_loop().time())
        for victim, why in verdict.evicted:
            self.note(why, victim.peer)
            self._clients.pop(victim).cancel()
        if verdict.slot is None:
            self.note(verdict.refused or "refused", address)
            await self._send(writer, text(503, "busy, try again"), head_only=False)
            return
        slot = verdict.slot
        self._clients[slot] = task
        try:
            await self._serve(reader, writer, address, slot)
        except asyncio.CancelledError:
            writer.transport.abort()  # closed by the policy (or the page closing): no goodbye
            raise
        finally:
            self._clients.pop(slot, None)
            self.admission.release(slot)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str,
                     slot: Slot) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            await self._send(writer, text(408, "request head too slow"), head_only=False)
            return
        except asyncio.LimitOverrunError:
            await self._send(writer, text(431, "request head too large"), head_only=False)
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        request = parse_head(head, address)
        if isinstance(request, Response):
            await self._send(writer, request, head_only=False)
            return
        if request.method not in ("GET", "HEAD"):
            await self._send(writer, text(405, "read-only: GET and HEAD only", {"Allow": "GET, HEAD"}), head_only=False)
            return
        try:
            response = await self.handler(request)
        except Exception:
            log.exception("status page: %s %s failed", request.method, request.path)
            response = text(500, "internal error (see the station's log)")
        # Answered: no longer "unfinished". A request the handler holds (a password check waiting out
        # a spent budget, pageauth.py) stays unfinished until then, so the policy may close it for a
        # newer request of its address (the owner behind the guesser's NAT).
        self.admission.valid_request(slot, asyncio.get_running_loop().time())
        log.debug("status page: %s %s %s -> %d", address, request.method, request.path, response.status)
        await self._send(writer, response, head_only=request.method == "HEAD")

    async def _send(self, writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        # The C locale's day and month names are the ones HTTP wants (RFC 9110 IMF-fixdate).
        headers = {"Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()), "Content-Type": response.content_type,
                   "Content-Length": str(len(response.body)), "Connection": "close",
                   **self.base_headers, **response.headers}
        lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else response.body)
        try:
            writer.write(data)
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def parse_head(head: bytes, peer: str) -> Request | Response:
    """The request line and headers, or the error response for a malformed head."""
    try:
        lines = head.decode("latin-1").split("\r\n")
    except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
        return text(400, "bad request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/"):
        return text(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return text(505, "HTTP/1.0 or HTTP/1.1 only")
    if not target.startswith("/"):
        return text(400, "bad request target")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            return text(400, "bad header line")
        if name.lower() in headers and name.lower() in ("host", "authorization", "content-length"):
            return text(400, f"more than one {name} header")
        headers[name.lower()] = value.strip()
    split = urlsplit(target)
    return Request(method, unquote(split.path), split.query, headers, peer)
