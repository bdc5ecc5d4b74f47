"""The firmware spool: how the daemon hands a checked release to the privileged updater, and hears back.

Theory of operation
-------------------
The daemon faces the network and must not be able to rewrite its own code:
under the shipped unit its environment (/opt/station/venv) is read-only. A
separate oneshot unit, station-update.service, started by the path unit
station-update.path, installs releases as root in a sandbox of its own and
trusts nothing the daemon says (station/services/updater.py re-checks every
release against root's configuration). Between the two lies this spool, a
directory the daemon may write: `<station.state_dir>/firmware`, created by
scripts/install-pi (station:station 0770; the updater reaches it through
the group). The daemon never creates it: **the spool's existence is how the
daemon knows an updater is installed**. Where it is missing (a developer's
venv, `station simulate`, the tests) the daemon installs as before, with pip
as its own child.

    firmware/
      pending/          written by the daemon (0770: the updater empties it)
        release.whl     the release's bytes, after the daemon's own checks
        request.json    {"kind": "signed" | "unsigned", "requestId": int | null,
                         "signingCertificate": PEM, "signature": base64}
        ready           empty, written last: station-update.path fires on it
      result.json       written by the updater (root, 0644), read and removed by
                        the daemon: {"kind", "requestId", "status", "reason",
                        "version"}; status is Installed, InstallationFailed or
                        InstallVerificationFailed

The updater takes `pending/` at once (reads it into memory, removes it), so
the daemon sees a hand-over was taken when `ready` is gone. The updater then
restarts station.service (`try-restart`), installed or not; the new daemon
finds result.json at its next boot. If the daemon still runs later than it
should (no updater took the release, the updater was killed), `wait` says
why, and the daemon reports the failure itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

SPOOL = "firmware"
PENDING = "pending"
RELEASE = "release.whl"
REQUEST = "request.json"
READY = "ready"
RESULT = "result.json"
MAX_REQUEST_BYTES = 64 * 1024  # a signing certificate and a signature: a few KiB
MAX_RESULT_BYTES = 64 * 1024
ENDS = ("Installed", "InstallationFailed", "InstallVerificationFailed")
TAKE_S = 300.0  # the updater takes a hand-over within seconds; later, nobody will
RESULT_S = 1200.0  # longer than station-update.service's TimeoutStartSec (15 min)


def spool_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / SPOOL


def available(spool: Path) -> bool:
    """An updater is installed: the spool is a directory (not a symbolic link; the daemon never makes it)."""
    return spool.is_dir() and not spool.is_symlink()


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def hand_over(spool: Path, data: bytes, request: dict[str, Any]) -> None:
    """Write the release and its request into spool/pending, `ready` last (the path unit's trigger). Raises OSError."""
    pending = spool / PENDING
    shutil.rmtree(pending, ignore_errors=True)  # a hand-over nobody took (the daemon waited, then restarted)
    pending.mkdir()
    os.chmod(pending, 0o770)  # the daemon's UMask=0027 would leave the updater unable to empty it
    _write(pending / RELEASE, data)
    _write(pending / REQUEST, json.dumps(request).encode())
    _write(pending / READY, b"")
    fd = os.open(pending, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def waiting(spool: Path) -> bool:
    """A hand-over is there that the updater has not taken yet."""
    return os.path.lexists(spool / PENDING / READY)


def withdraw(spool: Path) -> bool:
    """Take back a hand-over the updater has not taken. False if it was taken meanwhile."""
    away = spool / f"withdrawn-{os.getpid()}"
    try:
        os.rename(spool / PENDING, away)
    except OSError:
        return False
    shutil.rmtree(away, ignore_errors=True)
    return True


def read_result(spool: Path) -> dict[str, Any] | None:
    """The updater's result, or None if there is none. A file that is not one reads as a failure."""
    path = spool / RESULT
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"status": "InstallationFailed", "reason": f"the updater's result cannot be read: {exc}"}
    try:
        raw = os.read(fd, MAX_RESULT_BYTES + 1)
    finally:
        os.close(fd)
    try:
        result = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_RESULT_BYTES else None
    except (UnicodeDecodeError, ValueError):
        result = None
    if not isinstance(result, dict) or result.get("status") not in ENDS:
        return {"status": "InstallationFailed", "reason": "the updater's result is not valid"}
    request_id = result.get("requestId")
    return {"status": result["status"], "kind": result.get("kind") if result.get("kind") in ("signed", "unsigned") else None,
            "requestId": request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None,
            "reason": str(result.get("reason") or "")[:500], "version": str(result.get("version") or "")[:64]}


def remove_result(spool: Path) -> None:
    try:
        (spool / RESULT).unlink()
    except OSError:
        pass


async def wait(spool: Path, take_s: float = TAKE_S, result_s: float = RESULT_S, poll_s: float = 1.0) -> dict[str, Any]:
    """After a hand-over. Normally the updater restarts the station while this waits, and the result is read at
    the next boot. If this process still runs: the updater's result (not removed), or a failure saying why
    there is none."""
    deadline = time.monotonic() + take_s
    while waiting(spool):
        if time.monotonic() > deadline:
            if withdraw(spool):
                return {"status": "InstallationFailed",
                        "reason": f"no updater took the release within {take_s:.0f} s (station-update.path not running?)"}
            break
        await asyncio.sleep(poll_s)
    deadline = time.monotonic() + result_s
    while True:
        result = await asyncio.to_thread(read_result, spool)
        if result is not None:
            return result
        if time.monotonic() > deadline:
            return {"status": "InstallationFailed", "reason": f"the updater gave no result within {result_s:.0f} s"}
        await asyncio.sleep(poll_s)
