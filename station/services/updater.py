"""The privileged firmware updater (`station firmware-install`): installs what the daemon handed over, trusting none of it.

Theory of operation
-------------------
station-update.path starts station-update.service when the daemon has put a
release into the spool (station/services/handover.py says how). The service
runs this code, *as installed* in /opt/station/venv, as root without any
capability, in a sandbox where only the venv and the spool are writable and
there is no network (systemd/station-update.service). The daemon may have
been taken over, so everything in the spool is an attacker's input:

1. **Taking the spool.** The spool directory and every file in it are opened
   without following symbolic links; only regular files with one link are
   read, each with a size bound. Everything is read into memory once, then
   `pending/` is removed: later changes to the spool change nothing, and the
   path unit does not fire again.
2. **Root's configuration only.** The configuration file (root's, e.g.
   /etc/station/station.toml) and the firmware signing root
   (`firmware.signing_ca_file`) must be owned by root (or whoever runs the
   updater) and writable by nobody else, and so must every directory above
   them (as ssh checks its keys): the daemon can change neither.
3. **Who made it.** A signed release must verify against
   `firmware.signing_ca_file`, on the bytes read in 1. An unsigned one only if
   that configuration sets `firmware.allow_unsigned` and security profile 0,
   the daemon's own rule. What the request names decides nothing else.
4. **What it is.** `firmware.check_release` on the same bytes.
5. **How pip runs.** `firmware.install`: a private copy in the unit's private
   /tmp, `--only-binary=:all: --no-deps --no-index`, isolated.

The result (Installed, InstallationFailed, or InstallVerificationFailed for a
signed release the checks refuse, each with the reason) is written to the
spool for the daemon's next boot, and station.service is restarted
(`try-restart`), whether anything was installed or not: the daemon waits for
that restart to report the result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station import config as configmod
from station.errors import ConfigError
from station.services import certs, firmware, handover

log = logging.getLogger(__name__)

_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(Exception):
    """The release is not installed; `status` is the end state to report."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Outcome:
    status: str  # Installed, InstallationFailed, InstallVerificationFailed
    reason: str
    kind: str | None = None
    request_id: int | None = None
    version: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "requestId": self.request_id, "status": self.status, "reason": self.reason,
                "version": self.version}


# ---------------------------------------------------------------- 1. taking the spool

def _read_file(dir_fd: int, name: str, limit: int) -> bytes:
    """A regular file with one link, no symbolic link, at most `limit` bytes. Raises Refused."""
    try:
        fd = os.open(name, _OPEN, dir_fd=dir_fd)
    except OSError as exc:
        raise Refused("InstallationFailed", f"spool: {name} cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise Refused("InstallationFailed", f"spool: {name} is not a plain file")
        if st.st_size > limit:
            raise Refused("InstallationFailed", f"spool: {name} has {st.st_size} bytes, more than {limit}")
        chunks = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise Refused("InstallationFailed", f"spool: {name} grew beyond {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_spool(spool: Path) -> int:
    """The spool directory, opened without following a symbolic link. Raises OSError."""
    return os.open(spool, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def take(spool_fd: int) -> tuple[dict[str, Any], bytes] | None:
    """Read the hand-over into memory and remove it. None: nothing there. Raises Refused (the spool is gone then too)."""
    try:
        pending = os.open(handover.PENDING, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=spool_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _remove_pending(spool_fd)
        raise Refused("InstallationFailed", f"spool: {handover.PENDING} is not a directory ({exc.strerror})") from None
    try:
        os.stat(handover.READY, dir_fd=pending, follow_symlinks=False)
    except FileNotFoundError:  # the daemon is still writing it (or someone runs the command by hand)
        os.close(pending)
        return None
    except OSError:
        pass  # there, but odd: taken and refused below like anything else
    try:
        raw = _read_file(pending, handover.REQUEST, handover.MAX_REQUEST_BYTES)
        data = _read_file(pending, handover.RELEASE, firmware.MAX_BYTES)
    finally:
        os.close(pending)
        _remove_pending(spool_fd)
    try:
        request = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        request = None
    if not isinstance(request, dict):
        raise Refused("InstallationFailed", f"spool: {handover.REQUEST} is not a JSON object")
    return request, data


def _remove_pending(spool_fd: int) -> None:
    """Remove pending/ whatever it holds (links are removed, never followed), so the path unit does not fire again."""
    try:
        shutil.rmtree(handover.PENDING, dir_fd=spool_fd)
    except NotADirectoryError:
        os.unlink(handover.PENDING, dir_fd=spool_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.error("spool: %s cannot be removed: %s", handover.PENDING, exc)


def write_result(spool_fd: int, outcome: Outcome) -> None:
    """result.json for the daemon, replaced atomically; a planted symbolic link is replaced, never followed."""
    tmp = handover.RESULT + ".tmp"
    try:
        os.unlink(tmp, dir_fd=spool_fd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=spool_fd)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, json.dumps(outcome.as_json()).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, handover.RESULT, src_dir_fd=spool_fd, dst_dir_fd=spool_fd)
    os.fsync(spool_fd)


# ---------------------------------------------------------------- 2. root's configuration

def _trusted_node(path: Path, st: os.stat_result, owners: tuple[int, ...]) -> str | None:
    if st.st_uid not in owners:
        return f"{path} is owned by uid {st.st_uid}, not root"
    if stat.S_ISLNK(st.st_mode):
        return None  # its own mode means nothing; its directory is checked, and so is what it points to
    if st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return f"{path} is writable by others than its owner"
    return None


def check_trusted(path: str | Path, owners: tuple[int, ...] | None = None) -> None:
    """`path`, every directory above it and, through symbolic links, what it names: owned by root (or this
    process's user; or one of `owners`), writable by nobody else (sticky directories excepted). Raises Refused."""
    owners = owners if owners is not None else (0, os.geteuid())
    given = Path(os.path.abspath(path))
    for chain in (given, Path(os.path.realpath(given))):
        for node in [*reversed(chain.parents), chain]:
            try:
                st = os.lstat(node)
            except OSError as exc:
                raise Refused("InstallationFailed", f"{node}: {exc.strerror}") from None
            problem = _trusted_node(node, st, owners)
            if problem:
                raise Refused("InstallationFailed", f"not trusted: {problem}")


def load_config(path: str | Path) -> configmod.Config:
    check_trusted(path)
    try:
        return configmod.load(str(path))
    except ConfigError as exc:
        raise Refused("InstallationFailed", f"the updater's configuration: {exc}") from None


# ---------------------------------------------------------------- 3. and 4.

def _request_id(request: dict[str, Any]) -> int | None:
    value = request.get("requestId")
    return value if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31 else None


def verify(cfg: configmod.Config, request: dict[str, Any], data: bytes) -> firmware.Release:
    """Who made it (by root's configuration) and what it is. Raises Refused."""
    kind = request.get("kind")
    if kind == "signed":
        cert, signature = request.get("signingCertificate"), request.get("signature")
        if not isinstance(cert, str) or not isinstance(signature, str):
            raise Refused("InstallVerificationFailed", "the request has no signing certificate or signature")
        ca_file = cfg.firmware.signing_ca_file
        if ca_file:
            check_trusted(ca_file)
        try:
            firmware.check_signature(data, cert, signature, firmware.signing_roots(ca_file))
        except certs.CertificateError as exc:
            raise Refused("InstallVerificationFailed", f"signature: {exc}") from None
    elif kind == "unsigned":
        profile = cfg.backend.ocpp.security_profile
        if not cfg.firmware.allow_unsigned or profile != 0:
            why = "firmware.allow_unsigned is off" if not cfg.firmware.allow_unsigned else f"security profile {profile}"
            raise Refused("InstallationFailed", f"unsigned release refused by {cfg.source} ({why})")
    else:
        raise Refused("InstallationFailed", f"unknown request kind {str(kind)[:40]!r}")
    try:
        return firmware.check_release(data)
    except firmware.FirmwareRefused as exc:
        raise Refused("InstallVerificationFailed" if kind == "signed" else "InstallationFailed", str(exc)) from None


# ---------------------------------------------------------------- all of it

def install_pending(spool: Path, config_path: str | Path, *, prefix: list[str] | None = None,
                    work_dir: Path | None = None) -> Outcome | None:
    """Take, check and install what the spool holds; write the result there. None: nothing was pending."""
    try:
        spool_fd = open_spool(spool)
    except OSError as exc:
        log.error("the spool %s cannot be opened (a symbolic link?): %s", spool, exc)
        return None
    try:
        outcome = _install(spool_fd, config_path, prefix, work_dir)
        if outcome is not None:
            write_result(spool_fd, outcome)
        return outcome
    finally:
        os.close(spool_fd)


def _install(spool_fd: int, config_path: str | Path, prefix: list[str] | None, work_dir: Path | None) -> Outcome | None:
    request: dict[str, Any] = {}
    try:
        taken = take(spool_fd)
        if taken is None:
            return None
        request, data = taken
        release = verify(load_config(config_path), request, data)
    except Refused as exc:
        kind = request.get("kind") if request.get("kind") in ("signed", "unsigned") else None
        log.error("firmware refused, nothing installed: %s", exc)
        return Outcome(exc.status if kind == "signed" else "InstallationFailed", str(exc), kind, _request_id(request))
    kind, request_id = request["kind"], _request_id(request)
    log.info("installing station %s (%s release)", release.version, kind)
    work = Path(tempfile.mkdtemp(prefix="station-update-", dir=work_dir))
    try:
        ok, output = asyncio.run(firmware.install(data, work, prefix))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not ok:
        log.error("pip failed: %s", output)
        return Outcome("InstallationFailed", f"pip: {output[-400:]}", kind, request_id, release.version)
    log.info("station %s installed", release.version)
    return Outcome("Installed", f"station {release.version} installed", kind, request_id, release.version)


def restart_unit(unit: str, run: Callable[[list[str]], Any] | None = None) -> None:
    """Ask systemd to restart the daemon if it runs (it waits for this to report the result)."""
    import subprocess

    argv = ["systemctl", "--no-block", "try-restart", unit]
    try:
        (run or (lambda a: subprocess.run(a, check=True, timeout=60, stdin=subprocess.DEVNULL)))(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        log.error("%s could not be restarted: %s", unit, exc)
