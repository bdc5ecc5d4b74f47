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
import shutil
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from station.services.lazy import lazy

if TYPE_CHECKING:
    import ftplib
    import urllib.request as _request
else:  # used only while a transfer runs: imported then, not at start
    ftplib = lazy("ftplib")
    _request = lazy("urllib.request")

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0
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


def _download(url: str, dest: Path, ca_file: str | None, timeout: float) -> Path:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "ftp"):
        raise ValueError(f"unsupported scheme {scheme!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with _opener(scheme, ca_file).open(url, timeout=timeout) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out)
    os.replace(tmp, dest)
    return dest


async def download(url: str, directory: Path, ca_file: str | None = None, timeout: float = TIMEOUT_S) -> Path:
    """Fetch `url` into `directory`, keeping the file name of the URL path."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "firmware.bin"
    return await asyncio.to_thread(_download, url, directory / name, ca_file, timeout)


async def download_retrying(url: str, directory: Path, *, ca_file: str | None, tries: int, pause: float,
                            before_try: Callable[[], Awaitable[object]], what: str = "firmware") -> Path | None:
    """`tries` downloads `pause` s apart, `before_try()` (e.g. a Downloading notice) before each.
    None when every try failed."""
    for n in range(tries):
        await before_try()
        try:
            return await download(url, directory, ca_file=ca_file)
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
