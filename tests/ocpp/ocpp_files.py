"""Files a central system serves or receives in the firmware and log tests: a real (tiny) `station` wheel, and
an HTTP handler that also takes uploads (PUT)."""

from __future__ import annotations

import http.server
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
