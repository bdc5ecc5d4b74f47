"""The websocket client (the `websockets` package), imported without the parts the station never runs.

Theory of operation
-------------------
`websockets` imports, at import time, three things the OCPP link never uses:
`importlib.metadata` (its version module reads the package metadata only for
a development checkout), `urllib.request` (its proxy module reads the
environment's proxies only when `connect(proxy=...)` asks for them; the link
passes `proxy=None`: a station behind a proxy is configured with the
central system's address, never through the environment) and `python_socks`
(SOCKS proxies, the same). With what they pull in (email, http.client,
zipfile, csv, lzma, bz2, importlib.resources, ...) they hold about 2.5 MiB
of the station's RSS, which has a budget of 35 MiB (docs/benchmarks.md).

So the import runs with stand-ins for those three in `sys.modules` (an
empty module for the first two, None for python_socks, which websockets
then treats as not installed) and removes them right after: anything that
imports one of them later (the file transfers import urllib.request when a
firmware or log transfer starts) gets the real module, loaded then. A
version of websockets that used one of them at import, or on the link's
path, fails the link tests (tests/backends/ocpp/test_ocpp_ws_import.py checks the
three are not loaded and are importable afterwards).
"""

from __future__ import annotations

import sys
import types

_UNUSED: dict[str, types.ModuleType | None] = {
    "importlib.metadata": types.ModuleType("importlib.metadata"),
    "urllib.request": types.ModuleType("urllib.request"),
    "python_socks": None,
}


def _import_without_unused() -> None:
    placed = {name: value for name, value in _UNUSED.items() if name not in sys.modules}
    sys.modules.update(placed)  # type: ignore[arg-type]  # None: "not installed" to the import system
    try:
        import websockets.asyncio.client  # noqa: F401
    finally:
        for name, value in placed.items():
            if name in sys.modules and sys.modules[name] is value:
                del sys.modules[name]


_import_without_unused()

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

__all__ = ["ClientConnection", "connect"]
