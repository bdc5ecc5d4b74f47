"""Files a central system serves or receives in the firmware and log tests: a real (tiny) `station` wheel, and
an HTTP handler that also takes uploads (PUT)."""

from __future__ import annotations

import http.server
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from firmware_support import RELEASE, wheel

WHEEL = RELEASE  # a `station` wheel: the only kind the station installs (tests/firmware_support.py)


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def make_wheel(path: Path) -> Path:
    return wheel(path)


class FilesHandler(http.server.SimpleHTTPRequestHandler):
    def do_PUT(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        target = Path(self.directory) / "uploads" / Path(self.path).name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(self.rfile.read(length))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


class Served(type(Path())):
    url = ""


@pytest.fixture
def served(tmp_path, pki):
    d = Served(tmp_path / "served")
    d.mkdir()
    make_wheel(d / WHEEL)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: FilesHandler(*a, directory=str(d)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    d.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield d
    server.shutdown()
    server.server_close()


def firmware(served, pki, name: str = WHEEL, signature: str | None = None, **extra) -> dict:
    data = (served / name).read_bytes()
    fw = {"location": f"{served.url}/{name}", "retrieveDateTime": in_seconds(0),
          "signingCertificate": (pki.dir / "signer.pem").read_text(),
          "signature": signature if signature is not None else pki.sign_firmware(data)}
    fw.update(extra)
    return fw
