"""Who may see the status page: its password, the failure budgets and the device cookie, without I/O.

Theory of operation
-------------------
The password (HTTP Basic, `status_page.user` and `password[_file]`) is
compared in constant time: `hmac.compare_digest` of SHA-256 digests of
`user:password`, so its length does not leak either.

Guessing is bounded by two failure budgets. An address that sent
`PER_ADDRESS` (5) wrong passwords within `WINDOW_S` (a minute), or the page
as a whole after `OVERALL` (20) wrong passwords within a minute from any
addresses, is answered 429 without its password being looked at, until the
oldest of those failures is a minute old. The overall budget is what stops
many addresses (401 of them got 2004 guesses through the per-address one).

That must not lock the owner out: the owner may share the guesser's address
(NAT, a reverse proxy, an `ssh -L` tunnel where every client is 127.0.0.1),
and the overall budget is everyone's. So a right password always gets in,
in two ways. (1) The client that gave the right password gets a *device
cookie* (`station_device`, HttpOnly, SameSite=Strict); a request that carries
it has its password checked at once whatever the budgets say: the owner's
phone or laptop, once signed in, is never even slowed down. (2) A request
without the cookie while a budget is spent is *held* for `HOLD_S` (30 s)
and only then has its password checked: the right one gets in (and its
cookie), a wrong one gets 429. Checking at once would let the right password
through too, but it would make every 429 an answer and bound nothing; held,
every guess costs a connection slot for HOLD_S, and the page holds at most
16 connections (4 unfinished per address, the oldest closed first when a
new one comes: httpd.py), so guessing is bounded by 16 / 30 s, about 0.5
guesses a second from any number of addresses, while the owner's request
closes a guesser's oldest held one and is answered after HOLD_S. The cookie
is no password (every request still needs the password; the cookie only
lifts the hold) and reveals nothing the Basic header sent with it does not:
its value is an HMAC keyed with the password's digest, so it survives
restarts and dies with a password change.

A request without credentials (a browser's first request) is a 401 that
counts as nothing. State is bounded: per-address failures for at most
`ADDRESSES` addresses (the oldest forgotten first), the overall ones in a
ring of `OVERALL`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections import deque
from dataclasses import dataclass

PER_ADDRESS = 5  # wrong passwords per address within WINDOW_S before 429
OVERALL = 20  # wrong passwords from all addresses within WINDOW_S before 429 for every client without the cookie
WINDOW_S = 60.0
ADDRESSES = 1024  # addresses whose failures are remembered
HOLD_S = 30.0  # a request without the device cookie while a budget is spent waits this long for its check
COOKIE = "station_device"
COOKIE_MAX_AGE_S = 365 * 86400

WRONG = "wrong user or password"
LOCKED_ADDRESS = f"429: {PER_ADDRESS} wrong passwords from this address within a minute"
LOCKED_OVERALL = f"429: {OVERALL} wrong passwords within a minute"


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 (in), 401 (password required or wrong), 429 (locked out)
    reason: str | None = None  # what the tally counts (None: nothing worth a log line)
    retry_after: int | None = None  # 429: seconds until the budget allows a check again
    set_cookie: bool = False  # 200 without the device cookie: give it one
    hold_s: float = 0.0  # hold the request this long, then `check(..., held=True)` decides


class PasswordGuard:
    """The check and the budgets. `now` is the caller's monotonic clock (tests move it)."""

    def __init__(self, user: str, password: str, per_address: int = PER_ADDRESS, overall: int = OVERALL,
                 window_s: float = WINDOW_S, hold_s: float | None = None) -> None:
        self.hold_s = HOLD_S if hold_s is None else hold_s
        self._digest = hashlib.sha256(f"{user}:{password}".encode()).digest()
        self.cookie_value = hmac.new(self._digest, b"station status page device", hashlib.sha256).hexdigest()[:32]
        self.per_address, self.overall, self.window_s = per_address, overall, window_s
        self._by_address: dict[str, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=overall)

    def set_cookie_header(self) -> str:
        return f"{COOKIE}={self.cookie_value}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict"

    def check(self, authorization: str, cookie_header: str, peer: str, now: float, held: bool = False) -> Verdict:
        """The verdict on one request. A request without the device cookie while a budget is spent
        gets `hold_s`: the caller waits that long and asks again with `held=True`, which checks the
        password (a wrong one then answers 429, counted, instead of 401)."""
        given = basic_credentials(authorization)
        if given is None:
            return Verdict(401)  # no guess: the browser's first request gets its password prompt
        device = self._has_cookie(cookie_header)
        locked = None if device else self._locked(peer, now)
        if locked is not None and not held:
            return Verdict(0, hold_s=self.hold_s)
        if hmac.compare_digest(hashlib.sha256(given).digest(), self._digest):
            return Verdict(200, set_cookie=not device)
        self._fail(peer, now)
        if locked is not None:
            return self._locked(peer, now) or locked
        return Verdict(401, WRONG)

    def _has_cookie(self, header: str) -> bool:
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), self.cookie_value.encode()):
                return True
        return False

    def _locked(self, peer: str, now: float) -> Verdict | None:
        for times, limit, reason in ((self._by_address.get(peer), self.per_address, LOCKED_ADDRESS),
                                     (self._all, self.overall, LOCKED_OVERALL)):
            if times is not None and len(times) >= limit and now - times[-limit] < self.window_s:
                wait = max(1, math.ceil(self.window_s - (now - times[-limit])))
                return Verdict(429, reason, retry_after=wait)
        return None

    def _fail(self, peer: str, now: float) -> None:
        self._all.append(now)
        times = self._by_address.pop(peer, None)  # re-inserted last: the dict's order is the age of the address
        if times is None:
            times = deque(maxlen=self.per_address)
            if len(self._by_address) >= ADDRESSES:
                self._by_address.pop(next(iter(self._by_address)))
        times.append(now)
        self._by_address[peer] = times


def basic_credentials(header: str) -> bytes | None:
    """The `user:password` bytes of an HTTP Basic Authorization header, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        return base64.b64decode(token.strip(), validate=True)
    except ValueError:
        return None
