"""The websocket client is imported without what the station never runs (station/backends/ocpp/ws.py): about 2.5 MiB
of RSS. Checked in a fresh interpreter (pytest itself has imported importlib.metadata long before)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import station.backends.ocpp.link
unused = [m for m in ("importlib.metadata", "urllib.request", "python_socks", "email", "http.client")
          if m in sys.modules]
assert unused == [], unused
import urllib.request, importlib.metadata
assert callable(urllib.request.getproxies) and callable(urllib.request.urlopen)
assert importlib.metadata.version("websockets")
import websockets.proxy
assert websockets.proxy.urllib.request is urllib.request  # the real one, once something imports it
print("ok")
"""


def test_the_link_imports_websockets_without_metadata_proxies_and_socks():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
