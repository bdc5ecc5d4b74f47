"""File transfer for firmware and logs: download a file, upload a file, each with retries.

Transfers are blocking library calls (urllib, ftplib) run in a worker thread,
so the event loop keeps serving the websocket meanwhile. Never through an
environment proxy.

* download: http://, https:// and ftp:// through urllib (which speaks all
  three; ftp:// URLs may carry user:password@).
* upload: ftp:// (STOR into the URL's directory, the usual target of OCPP
  diagnostics and logs) and http(s):// (HTTP PUT to <location>/<file name>).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from station.services.lazy import lazy

if TYPE_CHECKING:
    import ftplib
    import urllib.request as _request
else:  # used only while a transfer runs: imported then, not at start
    ftplib = lazy("ftplib")
    _request = lazy("urllib.request")

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0
CHUNK = 64 * 1024
# An upload refused for lack of rights (FTP 530 not logged in, 550 no access; HTTP 401, 403).
_PERMISSION = ("530", "550", "401", "403")


class PermissionDenied(OSError):
    """The server refused the upload for lack of rights."""


def _context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def _opener(scheme: str, ca_file: str | None) -> _request.OpenerDirector:
    handlers: list[_request.BaseHandler] = [_request.ProxyHandler({})]  # never through an environment proxy
    if scheme == "https":
        handlers.append(_request.HTTPSHandler(context=_context(ca_file)))
    return _request.build_opener(*handlers)


def _copy(response: BinaryIO, out: BinaryIO, max_bytes: int | None) -> None:
    """Copy at most `max_bytes` (a central system must not fill the disk the journal is written to)."""
    total = 0
    while chunk := response.read(CHUNK):
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise ValueError(f"the file is larger than {max_bytes} bytes")
        out.write(chunk)


def _download(url: str, dest: Path, ca_file: str | None, timeout: float, max_bytes: int | None = None) -> Path:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "ftp"):
        raise ValueError(f"unsupported scheme {scheme!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with _opener(scheme, ca_file).open(url, timeout=timeout) as response, open(tmp, "wb") as out:
            _copy(response, out, max_bytes)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return dest


def _file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    return name if name not in ("", ".", "..") else "firmware.bin"


async def download(url: str, directory: Path, ca_file: str | None = None, timeout: float = TIMEOUT_S,
                   max_bytes: int | None = None) -> Path:
    """Fetch `url` into `directory`, keeping the file name of the URL path; at most `max_bytes`."""
    return await asyncio.to_thread(_download, url, directory / _file_name(url), ca_file, timeout, max_bytes)


async def download_retrying(url: str, directory: Path, *, ca_file: str | None, tries: int, pause: float,
                            before_try: Callable[[], Awaitable[object]], what: str = "firmware",
                            max_bytes: int | None = None) -> Path | None:
    """`tries` downloads `pause` s apart, `before_try()` (e.g. a Downloading notice) before each.
    None when every try failed."""
    for n in range(tries):
        await before_try()
        try:
            return await download(url, directory, ca_file=ca_file, max_bytes=max_bytes)
        except Exception as exc:
            log.warning("%s download %d of %d failed: %s", what, n + 1, tries, exc)
            if n + 1 < tries:
                await asyncio.sleep(pause)
    return None


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
        req = _request.Request(url, data=path.read_bytes(), method="PUT",
                               headers={"Content-Type": "application/gzip"})
        with _opener(scheme, ca_file).open(req, timeout=timeout) as response:
            if response.status >= 300:
                raise OSError(f"upload refused: HTTP {response.status}")
        return
    raise ValueError(f"unsupported scheme {scheme!r}")


async def upload(location: str, path: Path, ca_file: str | None = None, timeout: float = TIMEOUT_S) -> None:
    await asyncio.to_thread(_upload, location, path, ca_file, timeout)


async def upload_retrying(location: str, path: Path, *, ca_file: str | None, tries: int, pause: float,
                          what: str = "upload") -> None:
    """`tries` uploads `pause` s apart. Raises the last failure (PermissionDenied when the server
    refused it for lack of rights) when every try failed."""
    last: Exception = OSError("no upload tried")
    for n in range(tries):
        try:
            await upload(location, path, ca_file=ca_file)
            return
        except Exception as exc:
            log.warning("%s %d of %d failed: %s", what, n + 1, tries, exc)
            last = exc
            if n + 1 < tries:
                await asyncio.sleep(pause)
    if any(code in str(last) for code in _PERMISSION):
        raise PermissionDenied(str(last)) from last
    raise last
