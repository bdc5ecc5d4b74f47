"""Files a central system serves or receives in the firmware and log tests: a real (tiny) wheel, and
an HTTP handler that also takes uploads (PUT)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

WHEEL = "stationfw_test-1.0-py3-none-any.whl"


def in_seconds(s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def make_wheel(path: Path) -> Path:
    files = {
        "stationfw_test/__init__.py": b"VERSION = '1.0'\n",
        "stationfw_test-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: stationfw-test\nVersion: 1.0\n",
        "stationfw_test-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("stationfw_test-1.0.dist-info/RECORD,,")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("stationfw_test-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


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
