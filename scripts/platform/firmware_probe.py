"""The firmware updater under a real systemd, checked from inside the booted container (fresh mode).

Called by systemd_probe.py after the README's install and the service checks. Independent of the station's
code: the PKI is made with the `openssl` command (a test manufacturer and a hostile one), release wheels are
zipped here from the files the installer put into the venv (a pure-Python `station` wheel as PEP 427 lays it
out), and the spool is written as docs/security.md §2.9 describes it, as the `station` user (`runuser`).

1. An OCPP SignedUpdateFirmware from the probe's central system with a release signed by the test
   manufacturer: the daemon downloads and checks it, reports Installing and hands it over; station-update.path
   fires, station-update.service installs it as root into /opt/station/venv and restarts station.service;
   the new daemon reports Installed with the requestId; the venv's station version is the new one.
2. Releases dropped into the spool as the `station` user would (a daemon taken over): a `.pth` wheel with a
   valid signature, and a good wheel signed by a root the installer never trusted. Each is refused
   (InstallVerificationFailed reaches the central system after the restart), and the venv is unchanged,
   file by file.
3. The original release, dropped into the spool likewise: installed again (so that the installer's second
   run finds what it installed).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import io
import json
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

PKI = Path("/platform/firmware-pki")
SERVED = Path("/platform/firmware-served")
CA_FILE = Path("/etc/station/firmware-ca.pem")
VENV_PYTHON = "/opt/station/venv/bin/python"
SPOOL = Path("/var/lib/station/firmware")
UPDATER = "station-update.service"
PACE_S = 3.0
# How systemd reports a refusal (the updater exits 1): a failed start, as it should be.
REFUSAL = re.compile(r"^(Failed to start station-update\.service|station-update\.service: Failed with result 'exit-code')")
ENDS = ("Installed", "InstallationFailed", "InstallVerificationFailed", "InvalidSignature", "DownloadFailed")

CONFIG = f"""
[firmware]
# The probe's test manufacturer (scripts/platform/firmware_probe.py).
signing_ca_file = "{CA_FILE}"
"""


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki() -> None:
    """Two roots (EC P-256) with a firmware signer each: `mfr` is trusted by the installer, `rogue` never."""
    PKI.mkdir(parents=True, exist_ok=True)
    (PKI / "leaf.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    for who in ("mfr", "rogue"):
        d = str(PKI / who)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-keyout", f"{d}-ca.key", "-out", f"{d}-ca.pem", "-subj", f"/O=Platform check/CN={who} firmware root",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{d}-signer.key", "-out", f"{d}-signer.csr", "-subj", f"/O=Platform check/CN={who} signer")
        openssl("x509", "-req", "-in", f"{d}-signer.csr", "-CA", f"{d}-ca.pem", "-CAkey", f"{d}-ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", str(PKI / "leaf.ext"), "-out", f"{d}-signer.pem")
    subprocess.run(["install", "-m", "0644", "-o", "root", "-g", "root", str(PKI / "mfr-ca.pem"), str(CA_FILE)],
                   check=True)


def sign(who: str, data: bytes) -> dict[str, str]:
    """ECDSA with SHA-256 over the whole file (OCPP's signed firmware), base64, and the signing certificate."""
    (PKI / "data").write_bytes(data)
    openssl("dgst", "-sha256", "-sign", str(PKI / f"{who}-signer.key"), "-out", str(PKI / "sig"), str(PKI / "data"))
    return {"signingCertificate": (PKI / f"{who}-signer.pem").read_text(),
            "signature": base64.b64encode((PKI / "sig").read_bytes()).decode()}


# ---------------------------------------------------------------- the venv and release wheels
def site_packages() -> Path:
    out = subprocess.run([VENV_PYTHON, "-I", "-c", "import station, os; print(os.path.dirname(station.__file__))"],
                         capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    return Path(out).parent


def installed_version() -> str:
    return subprocess.run([VENV_PYTHON, "-I", "-c", "import importlib.metadata as m; print(m.version('station'))"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def venv_state() -> str:
    """A digest of every file in site-packages (names, modes, contents; caches left out)."""
    h = hashlib.sha256()
    root = site_packages()
    for p in sorted(root.rglob("*")):
        if "__pycache__" in p.parts or p.is_dir():
            continue
        h.update(f"{p.relative_to(root)} {p.stat().st_mode:o}\n".encode())
        h.update(p.read_bytes() if p.is_file() else b"")
    return h.hexdigest()


def wheel(version: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A `station` wheel of `version` made of the installed package's files (PEP 427 layout, RECORD of sha256)."""
    root = site_packages()
    [info] = [p for p in root.glob("station-*.dist-info")]
    files: dict[str, bytes] = {}
    for p in sorted((root / "station").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            files[str(p.relative_to(root))] = p.read_bytes()
    init = files["station/__init__.py"].decode()
    files["station/__init__.py"] = "\n".join(f'__version__ = "{version}"' if line.startswith("__version__") else line
                                             for line in init.splitlines()).encode() + b"\n"
    files.update(extra or {})
    new_info = f"station-{version}.dist-info"
    metadata = "".join(f"Version: {version}\n" if line.startswith("Version:") else line
                       for line in (info / "METADATA").read_text().splitlines(keepends=True))
    files[f"{new_info}/METADATA"] = metadata.encode()
    files[f"{new_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: platform-check\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    for name in ("entry_points.txt", "top_level.txt"):
        if (info / name).exists():
            files[f"{new_info}/{name}"] = (info / name).read_bytes()
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for n, d in files.items()] + [f"{new_info}/RECORD,,"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{new_info}/RECORD", "\n".join(record) + "\n")
    return buf.getvalue()


# ---------------------------------------------------------------- the spool, as the daemon's user
DROP = r"""
import json, os, sys
spool, release, request = sys.argv[1:4]
pending = os.path.join(spool, "pending")
os.mkdir(pending)
os.chmod(pending, 0o770)
with open(os.path.join(pending, "release.whl"), "wb") as f:
    f.write(open(release, "rb").read())
with open(os.path.join(pending, "request.json"), "w") as f:
    f.write(request)
open(os.path.join(pending, "ready"), "w").close()
"""


def drop_as_station(data: bytes, request: dict[str, Any]) -> None:
    release = SERVED / "dropped.whl"
    release.write_bytes(data)
    release.chmod(0o644)
    subprocess.run(["runuser", "-u", "station", "--", "python3", "-c", DROP, str(SPOOL), str(release), json.dumps(request)],
                   check=True, capture_output=True, timeout=60)


def serve() -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(SERVED), **kw)

        def log_message(self, *args: Any) -> None:
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ---------------------------------------------------------------- the checks
async def paced(p: Any) -> str:
    """The station's MainPID, once its last start is PACE_S ago. systemd refuses a 6th start within 10 s
    (StartLimitBurst=5, StartLimitIntervalSec=10 s, the defaults): the probe's restarts in a row would
    reach that, an operator's updates never do."""
    started = int(p.run("systemctl", "show", "station.service", "-pActiveEnterTimestampMonotonic",
                        "--value").stdout.strip() or 0) / 1e6
    await asyncio.sleep(max(0.0, started + PACE_S - time.monotonic()))
    return p.show("MainPID")["MainPID"]


async def checks(cs: Any, p: Any) -> None:
    """`p` is systemd_probe (check, show, wait_new_main_pid, wait_status, run, journal helpers)."""
    t0 = time.monotonic()
    SERVED.mkdir(parents=True, exist_ok=True)
    state = p.run("systemctl", "show", "station-update.path", "-pActiveState", "-pUnitFileState").stdout.split()
    p.check(state == ["ActiveState=active", "UnitFileState=enabled"], "firmware: station-update.path enabled and active",
            " ".join(state))
    original = installed_version()
    restore = wheel(original)
    new = original + ".post1"

    # 1. OCPP SignedUpdateFirmware -> the daemon -> the spool -> the updater -> restart -> Installed
    (SERVED / f"station-{new}-py3-none-any.whl").write_bytes(data := wheel(new))
    server, base = serve()
    try:
        pid = await paced(p)
        since = time.monotonic()
        answer = await cs.call("SignedUpdateFirmware", {"requestId": 101, "retries": 1, "firmware": {
            "location": f"{base}/station-{new}-py3-none-any.whl", "retrieveDateTime": p.now_iso(), **sign("mfr", data)}})
        p.check(answer.get("status") == "Accepted", "firmware: SignedUpdateFirmware accepted")
        end = await cs.wait_for("SignedFirmwareStatusNotification", since,
                                lambda q: q.get("requestId") == 101 and q["status"] in ENDS, timeout=180)
        seen = [q["status"] for at, act, q in cs.calls if at >= since and act == "SignedFirmwareStatusNotification"
                and q.get("requestId") == 101]
        p.check(end["status"] == "Installed", "firmware: the daemon reports Installed for the request", " -> ".join(seen))
        new_pid = await p.wait_new_main_pid(pid, 60)
        p.check(True, "firmware: station.service restarted by the updater", f"MainPID {pid} -> {new_pid}")
    finally:
        server.shutdown()
        server.server_close()
    version = installed_version()
    cli = p.run("/opt/station/venv/bin/station", "--version").stdout.strip()
    p.check(version == new and cli == f"station {new}", "firmware: the venv runs the new release", f"{original} -> {version}")
    lines = p.messages(0, "-u", UPDATER)
    p.check(any("installed" in m for m in lines), "firmware: installed by station-update.service",
            next((m for m in lines if "installed" in m), "; ".join(lines[-5:])))
    owners = {(f.stat().st_uid, f.stat().st_mode & 0o777) for f in (site_packages() / "station").rglob("*.py")}
    p.check(owners == {(0, 0o644)}, "firmware: the new files are root's, 0644 (the daemon reads, cannot write)", str(owners))
    await p.wait_status("Available", timeout=60)

    # 2. hostile releases dropped into the spool by the daemon's user
    installed = venv_state()
    hook = {"zz_platform_hook.pth": b"import os; os.system('touch /MARKER')\n"}
    hostile = {"a .pth file, validly signed": (wheel(new + "1", hook), "mfr"),
               "a good release signed by an untrusted root": (wheel(new + "2"), "rogue")}
    for n, (what, (data, who)) in enumerate(hostile.items(), start=102):
        pid = await paced(p)
        since = time.monotonic()
        drop_as_station(data, {"kind": "signed", "requestId": n, **sign(who, data)})
        await p.wait_new_main_pid(pid, 180)
        end = await cs.wait_for("SignedFirmwareStatusNotification", since,
                                lambda q, n=n: q.get("requestId") == n and q["status"] in ENDS, timeout=120)
        unchanged = venv_state() == installed and installed_version() == new
        p.check(end["status"] == "InstallVerificationFailed" and unchanged and not Path("/MARKER").exists()
                and not (site_packages() / "zz_platform_hook.pth").exists(),
                f"firmware: refused from the spool: {what}; the venv unchanged, the station restarted",
                f"{end['status']}; {p.show('MainPID')['MainPID']}")
        await p.wait_status("Available", timeout=60)
    result = p.run("systemctl", "show", UPDATER, "-pResult", "-pExecMainStatus").stdout.split()
    p.check(result == ["Result=exit-code", "ExecMainStatus=1"], "firmware: the updater's unit says it refused",
            " ".join(result))

    # 3. the original release again, so that the installer finds what it installed
    pid = await paced(p)
    since = time.monotonic()
    drop_as_station(restore, {"kind": "signed", "requestId": 104, **sign("mfr", restore)})
    await p.wait_new_main_pid(pid, 180)
    end = await cs.wait_for("SignedFirmwareStatusNotification", since,
                            lambda q: q.get("requestId") == 104 and q["status"] in ENDS, timeout=120)
    p.check(end["status"] == "Installed" and installed_version() == original,
            "firmware: the original release dropped into the spool is installed again", installed_version())
    await p.wait_status("Available", timeout=60)
    bad = [str(e.get("MESSAGE")) for e in p.journal(0, "_PID=1", "-b")
           if "station-update" in str(e.get("MESSAGE", "")) + str(e.get("UNIT", "")) and int(e.get("PRIORITY", 6)) <= 4
           and not REFUSAL.search(str(e.get("MESSAGE")))]
    p.check(not bad, "firmware: no warning from systemd about the updater's units", "; ".join(bad))
    exposure = [line for line in p.run("systemd-analyze", "security", UPDATER, "--no-pager", check_rc=False).stdout.splitlines()
                if "Overall exposure" in line]
    p.ok(f"systemd-analyze security: {exposure[0].strip() if exposure else '?'}")
    p.ok(f"firmware checks took {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit("run by systemd_probe.py")
