"""File transfers for FirmwareManagement: download a release, install it, upload diagnostics.

Transfers are blocking library calls (urllib, ftplib) run in a worker thread,
so the event loop keeps serving the websocket meanwhile.

* download: http://, https:// and ftp:// through urllib (which speaks all
  three; ftp:// URLs may carry user:password@).
* install: the release is a Python package file (wheel or sdist) of the
  station; it is installed with pip into the environment the station runs
  in (`sys.executable -m pip install`), then the station restarts (systemd
  brings it back with the new code).
* upload: ftp:// (STOR, the usual target of GetDiagnostics) and http(s)://
  (HTTP PUT of the archive to <location>/<file name>).
* the diagnostics archive (tar.gz) holds the log files found in the given
  directories, the systemd journal of the unit when journalctl exists, and
  whatever extra text files the caller adds (e.g. recent OCPP frames).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from station.backends.ocpp16.certs import _Lazy

# Used only while a firmware update or a diagnostics upload runs: imported then, not at start.
ftplib = _Lazy("ftplib")
tarfile = _Lazy("tarfile")
_request = _Lazy("urllib.request")

log = logging.getLogger(__name__)
from collections.abc import Awaitable, Callable, Iterable

TIMEOUT_S = 60.0
PACKAGE_SUFFIXES = (".whl", ".tar.gz", ".zip")


def _context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def _download(url: str, dest: Path, ca_file: str | None, timeout: float) -> Path:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "ftp"):
        raise ValueError(f"unsupported scheme {scheme!r}")
    handlers = [_request.ProxyHandler({})]  # never through an environment proxy
    if scheme == "https":
        handlers.append(_request.HTTPSHandler(context=_context(ca_file)))
    opener = _request.build_opener(*handlers)
    tmp = dest.with_name(dest.name + ".part")
    with opener.open(url, timeout=timeout) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out)
    os.replace(tmp, dest)
    return dest


async def download(url: str, directory: Path, ca_file: str | None = None, timeout: float = TIMEOUT_S) -> Path:
    """Fetch `url` into `directory`, keeping the file name of the URL path."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "firmware.bin"
    directory.mkdir(parents=True, exist_ok=True)
    return await asyncio.to_thread(_download, url, directory / name, ca_file, timeout)


async def download_retrying(url: str, directory: Path, *, ca_file: str | None, tries: int, pause: float,
                            before_try: Callable[[], Awaitable[object]], what: str = "firmware") -> Path | None:
    """UpdateFirmware and SignedUpdateFirmware share this: `tries` downloads `pause` s apart,
    `before_try()` (the Downloading notice) before each. None when every try failed."""
    for n in range(tries):
        await before_try()
        try:
            return await download(url, directory, ca_file=ca_file)
        except Exception as exc:
            log.warning("%s download %d of %d failed: %s", what, n + 1, tries, exc)
            if n + 1 < tries:
                await asyncio.sleep(pause)
    return None


def is_package(path: Path) -> bool:
    return path.name.endswith(PACKAGE_SUFFIXES)


async def install(path: Path, command: list[str] | None = None, timeout: float = 600.0) -> tuple[bool, str]:
    """pip-install a release file. Returns (ok, last lines of pip's output)."""
    argv = list(command or [sys.executable, "-m", "pip", "install", "--no-input", "--upgrade"]) + [str(path)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, "pip timed out"
    text = out.decode("utf-8", "replace").strip().splitlines()
    return proc.returncode == 0, "\n".join(text[-5:])


def _journal(unit: str, since: str | None, until: str | None) -> bytes | None:
    if shutil.which("journalctl") is None:
        return None
    argv = ["journalctl", "--no-pager", "-o", "short-iso", "-u", unit]
    if since:
        argv += ["--since", since.replace("T", " ").rstrip("Z").split(".")[0]]
    if until:
        argv += ["--until", until.replace("T", " ").rstrip("Z").split(".")[0]]
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _archive(dest: Path, log_dirs: Iterable[Path], unit: str, since: str | None, until: str | None,
             extra: dict[str, str]) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))

        for directory in log_dirs:
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.log*")):
                if path.is_file():
                    tar.add(path, arcname=f"logs/{path.name}")
        journal = _journal(unit, since, until)
        if journal is not None:
            add_bytes("journal.txt", journal)
        for name, text in extra.items():
            add_bytes(name, text.encode("utf-8"))
    return dest


async def build_archive(dest: Path, log_dirs: Iterable[Path], unit: str = "station", since: str | None = None,
                        until: str | None = None, extra: dict[str, str] | None = None) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.to_thread(_archive, dest, list(log_dirs), unit, since, until, extra or {})


def _upload(location: str, path: Path, ca_file: str | None, timeout: float) -> None:
    parts = urllib.parse.urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "ftp":
        ftp = ftplib.FTP()
        try:
            ftp.connect(parts.hostname or "", parts.port or 21, timeout=timeout)
            ftp.login(urllib.parse.unquote(parts.username or "anonymous"),
                      urllib.parse.unquote(parts.password or ""))
            directory = urllib.parse.unquote(parts.path)
            if directory and directory != "/":
                ftp.cwd(directory)
            with open(path, "rb") as f:
                ftp.storbinary(f"STOR {path.name}", f)
            ftp.quit()
        finally:
            ftp.close()
        return
    if scheme in ("http", "https"):
        url = location.rstrip("/") + "/" + urllib.parse.quote(path.name)
        data = path.read_bytes()
        req = _request.Request(url, data=data, method="PUT",
                                     headers={"Content-Type": "application/gzip"})
        handlers = [_request.ProxyHandler({})]
        if scheme == "https":
            handlers.append(_request.HTTPSHandler(context=_context(ca_file)))
        with _request.build_opener(*handlers).open(req, timeout=timeout) as response:
            if response.status >= 300:
                raise OSError(f"upload refused: HTTP {response.status}")
        return
    raise ValueError(f"unsupported scheme {scheme!r}")


async def upload(location: str, path: Path, ca_file: str | None = None, timeout: float = TIMEOUT_S) -> None:
    await asyncio.to_thread(_upload, location, path, ca_file, timeout)
