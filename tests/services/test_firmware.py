"""The firmware service on its own: which release files pass the contents check, how pip is run, the size cap.

The release files are built by tests/firmware_support.py (zipfile, tarfile), never by the code under
test; what pip receives is observed from the child process itself (its argv, environment and working
directory). The whole hostile central system is in tests/backends/ocpp/test_ocpp_hostile_firmware.py.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import os
import stat
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from firmware_support import hostile_wheels, sdist, wheel

from station import config as config_mod
from station import configcheck, security
from station.services import firmware, transfer


def test_a_station_wheel_laid_out_as_setuptools_builds_it_passes(tmp_path):
    data = wheel(tmp_path / "r.whl", version="1.2.3", extra={
        "station/backends/__init__.py": b"", "station/py.typed": b"",
        "station-1.2.3.dist-info/entry_points.txt": b"[console_scripts]\nstation = station.cli:main\n",
        "station-1.2.3.dist-info/top_level.txt": b"station\n",
        "station-1.2.3.dist-info/licenses/LICENSE": b"MIT\n"}).read_bytes()
    release = firmware.check_release(data)
    assert release.version == "1.2.3" and release.file_name == "station-1.2.3-py3-none-any.whl"


@pytest.mark.parametrize("what", ["pth", "pth in .data", "script in .data", "top-level module", "other distribution",
                                  "path traversal"])
def test_every_hostile_wheel_is_refused(tmp_path, what):
    data = hostile_wheels(tmp_path, tmp_path / "marker")[what].read_bytes()
    with pytest.raises(firmware.FirmwareRefused):
        firmware.check_release(data)


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name == symlink:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, data)
    return buf.getvalue()


GOOD = {"station/__init__.py": b"",
        "station-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: station\nVersion: 1.0\n",
        "station-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "station-1.0.dist-info/RECORD": b""}


@pytest.mark.parametrize("change, why", [
    ({}, None),
    ({"station/x.pth": b"import os"}, ".pth"),
    ({"station/link": b"/etc/passwd"}, "symbolic link"),
    ({"/station/abs.py": b""}, "unsafe path"),
    ({"station-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n"}, "METADATA"),
    ({"station-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: station\nVersion: 2.0\n"}, "METADATA"),
    ({"station-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: cp311-cp311-linux_armv7l\n"},
     "pure-Python"),
    ({"station-1.0.dist-info/RECORD": None}, "metadata"),
    ({"other-1.0.dist-info/METADATA": b""}, "one .dist-info"),
])
def test_the_contents_check_names_what_is_wrong(change, why):
    members = {**GOOD, **change}
    members = {k: v for k, v in members.items() if v is not None}
    data = _zip(members, symlink="station/link")
    if why is None:
        assert firmware.check_release(data).version == "1.0"
        return
    with pytest.raises(firmware.FirmwareRefused, match=why):
        firmware.check_release(data)


def test_source_packages_duplicates_and_bombs_are_refused(tmp_path, monkeypatch):
    with pytest.raises(firmware.FirmwareRefused, match="source packages"):
        firmware.check_release(sdist(tmp_path / "s.tar.gz", tmp_path / "marker").read_bytes())
    with pytest.raises(firmware.FirmwareRefused):
        firmware.check_release(b"PK\x03\x04 but not a zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, pytest.warns(UserWarning, match="Duplicate"):
        for name, data in GOOD.items():
            z.writestr(name, data)
        z.writestr("station/__init__.py", b"import os")
    with pytest.raises(firmware.FirmwareRefused, match="twice"):
        firmware.check_release(buf.getvalue())
    bomb = _zip({**GOOD, "station/zeros.py": b"0" * (firmware.MAX_UNPACKED + 1)})
    with pytest.raises(firmware.FirmwareRefused, match="unpacked"):
        firmware.check_release(bomb)
    monkeypatch.setattr(firmware, "MAX_BYTES", 100)
    with pytest.raises(firmware.FirmwareRefused, match="bytes"):
        firmware.check_release(_zip(GOOD))


async def test_pip_runs_isolated_binary_only_offline_on_a_private_copy(tmp_path, monkeypatch):
    """What the pip process gets, as the process itself sees it: the safety flags, the checked bytes under
    a name made from the wheel's metadata, and none of the daemon's environment."""
    for name, value in {"PYTHONPATH": "/evil", "PIP_INDEX_URL": "http://evil.example/", "HTTPS_PROXY": "http://evil:3128",
                        "PIP_TARGET": "/evil", "STATION_SECRET": "s3cret"}.items():
        monkeypatch.setenv(name, value)
    report = tmp_path / "seen.json"
    spy = ("import json, os, sys; f = sys.argv[-1]; json.dump({'argv': sys.argv[1:], 'env': dict(os.environ), "
           f"'cwd': os.getcwd(), 'data': open(f, 'rb').read().hex()}}, open({str(report)!r}, 'w'))")
    data = wheel(tmp_path / "downloaded-anything.whl", version="3.0").read_bytes()
    ok, _ = await firmware.install(data, tmp_path / "work", prefix=[sys.executable, "-c", spy])
    assert ok
    seen = json.loads(report.read_text())
    for flag in ("--only-binary=:all:", "--no-deps", "--no-index", "--isolated", "--no-cache-dir"):
        assert flag in seen["argv"]
    assert Path(seen["argv"][-1]).name == "station-3.0-py3-none-any.whl"
    assert bytes.fromhex(seen["data"]) == data
    assert seen["env"]["PIP_CONFIG_FILE"] == os.devnull
    leaked = {"PYTHONPATH", "PIP_INDEX_URL", "HTTPS_PROXY", "PIP_TARGET", "STATION_SECRET"} & set(seen["env"])
    assert not leaked
    assert Path(seen["cwd"]).parent == tmp_path / "work"
    assert list((tmp_path / "work").iterdir()) == []  # the private copy is gone


async def test_a_refused_release_never_starts_pip(tmp_path):
    report = tmp_path / "pip-ran"
    spy = f"open({str(report)!r}, 'w').write('ran')"
    data = sdist(tmp_path / "s.tar.gz", tmp_path / "marker").read_bytes()
    ok, why = await firmware.install(data, tmp_path / "work", prefix=[sys.executable, "-c", spy])
    assert not ok and why.startswith("refused") and not report.exists()


class _Big(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(5 * 65536))
        self.end_headers()
        for _ in range(5):
            self.wfile.write(b"x" * 65536)

    def log_message(self, *args):
        pass


async def test_a_download_larger_than_the_cap_fails_and_leaves_nothing(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/big.whl"
    try:
        with pytest.raises(ValueError, match="larger"):
            await transfer.download(url, tmp_path / "dl", max_bytes=100_000)
        assert list((tmp_path / "dl").iterdir()) == []
        path = await transfer.download(url, tmp_path / "dl", max_bytes=5 * 65536)
        assert path.stat().st_size == 5 * 65536
    finally:
        server.shutdown()
        server.server_close()
    await asyncio.sleep(0)


def test_check_config_warns_about_unsigned_firmware_and_checks_the_root(tmp_path):
    base = {"backend.kind": "ocpp"}
    cfg = config_mod.defaults({**base, "firmware.allow_unsigned": True})
    [finding] = [f for f in configcheck.findings(cfg) if f.key == "firmware.allow_unsigned"]
    assert finding.level == "warning" and "DANGEROUS" in finding.text
    cfg = config_mod.defaults({**base, "firmware.allow_unsigned": True, "backend.ocpp.security_profile": 1,
                               "backend.ocpp.authorization_key": "0123456789abcdefXYZ"})
    assert [f.level for f in configcheck.findings(cfg) if f.key == "firmware.allow_unsigned"] == ["hint"]
    not_pem = tmp_path / "root.pem"
    not_pem.write_text("hello")
    cfg = config_mod.defaults({**base, "firmware.signing_ca_file": str(not_pem)})
    assert [f.level for f in configcheck.findings(cfg) if f.key == "firmware.signing_ca_file"] == ["error"]
    cfg = config_mod.defaults({**base, "firmware.signing_ca_file": str(tmp_path / "missing.pem")})
    assert [f.level for f in configcheck.findings(cfg) if f.key == "firmware.signing_ca_file"] == ["error"]
    assert config_mod.defaults().firmware.allow_unsigned is False
    with pytest.raises(Exception, match="firmware.allow_unsigned"):
        config_mod.defaults({"firmware.allow_unsigned": "yes"})


def test_a_signing_root_writable_by_others_is_warned_about(tmp_path):
    root = tmp_path / "firmware-ca.pem"
    root.write_text("-----BEGIN CERTIFICATE-----\n")
    root.chmod(0o666)
    cfg = config_mod.defaults({"firmware.signing_ca_file": str(root)})
    assert any("firmware.signing_ca_file" in p for p in security.permission_problems(cfg))
