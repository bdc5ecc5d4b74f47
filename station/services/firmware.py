"""Installing a firmware release: a wheel of the `station` package, checked, then pip with no code run.

Theory of operation
-------------------
A release comes from the central system, which may be hostile (security
profile 0 has no authentication at all). Installing Python code is running
code, so three independent things stand between a downloaded file and the
station's environment:

1. **Who made it.** The OCPP backend accepts a release only with a signature
   that verifies against the installer's `firmware.signing_ca_file`
   (`signing_roots`); roots a central system installs over OCPP do not count,
   or the central system could vouch for itself. Unsigned releases only with
   `firmware.allow_unsigned` (off by default, documented as dangerous).
2. **What it is** (`check_release`, on the bytes in memory, before pip sees
   them): a zip named and built as a pure-Python wheel of the distribution
   `station`, whose every member lies in the `station/` package or its
   `station-<version>.dist-info/`. That excludes what runs code at install or
   at the next interpreter start without being the station itself: a source
   package (its setup.py runs during the build), a `.pth` file (run by
   `site` at every start), other top-level modules, `.data/` paths
   (scripts, headers, data written outside site-packages), symlinks, absolute
   or `..` paths. Sizes and member counts are bounded.
3. **How pip runs** (`install`): on a copy written from the checked bytes
   (never the downloaded file again), with `--only-binary=:all: --no-deps
   --no-index` (never a source build, never another package, never the
   network), as `python -I` with pip's `--isolated` and no configuration file
   (`PIP_CONFIG_FILE=/dev/null`), in an environment of a few fixed variables
   and a private working directory: nothing of the daemon's environment
   (proxies, PYTHONPATH, pip options) reaches it.

Installing a wheel runs none of its code; the new code runs when the service
manager restarts the station. Who runs `install`: where scripts/install-pi set
up the privileged updater, its root process (station/services/updater.py,
after checking everything again), never the daemon, whose unit keeps
/opt/station/venv read-only; elsewhere (a developer's venv, the simulator)
the daemon, with its own rights (docs/security.md §2.9).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from station.services.lazy import lazy

if TYPE_CHECKING:
    from cryptography import x509

    from station.services import certs
else:
    certs = lazy("station.services.certs")

DISTRIBUTION = "station"
MAX_BYTES = 16 * 1024 * 1024  # the release file (a station wheel is under 1 MiB)
MAX_UNPACKED = 64 * 1024 * 1024  # all members, uncompressed
MAX_MEMBERS = 2000
INSTALL_TIMEOUT_S = 600.0
# A version as it may appear in a wheel's file name (PEP 440, normalised; no '-' or '/').
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+!_]{0,63}")
PIP_FLAGS = ("--isolated", "--no-input", "--disable-pip-version-check", "--no-cache-dir", "--no-deps",
             "--only-binary=:all:", "--no-index", "--upgrade", "--force-reinstall", "--no-warn-script-location")


class FirmwareRefused(ValueError):
    """A release that must not be installed; the text says why (for the log and the security log)."""


@dataclass(frozen=True)
class Release:
    version: str

    @property
    def file_name(self) -> str:
        return f"{DISTRIBUTION}-{self.version}-py3-none-any.whl"


# ---------------------------------------------------------------- who made it

def signing_roots(path: str | None) -> list[x509.Certificate]:
    """The installer's firmware signing roots (`firmware.signing_ca_file`). Raises CertificateError."""
    if not path:
        raise certs.CertificateError("no firmware signing root is configured (firmware.signing_ca_file)")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise certs.CertificateError(f"cannot read firmware.signing_ca_file {path}: {exc.strerror or exc}") from None
    return certs.load_pems(data)


def check_signature(data: bytes, signing_pem: str, signature_b64: str, roots: list[x509.Certificate]) -> None:
    """The signing certificate chains to one of `roots` and signed `data`. Raises CertificateError."""
    signing = certs.load_pems(signing_pem)
    if len(signing) != 1:
        raise certs.CertificateError("exactly one signing certificate expected (no intermediates)")
    certs.verify_chain(signing, roots, certs.now_utc(), "firmware signing certificate")
    certs.verify_signature(signing[0], data, certs.decode_signature(signature_b64))


# ---------------------------------------------------------------- what it is

def _fields(text: str) -> dict[str, str]:
    """The `Name: value` header lines of METADATA or WHEEL (first occurrence of each, up to the body)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        name, sep, value = line.partition(":")
        if sep and not line[:1].isspace():
            out.setdefault(name.strip().lower(), value.strip())
    return out


def _member_problem(info: zipfile.ZipInfo, package: str, dist_info: str) -> str | None:
    name = info.filename
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ".." in parts or "" in parts[:-1] or ":" in parts[0]:
        return f"unsafe path {name!r}"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return f"symbolic link {name!r}"
    if name.lower().endswith(".pth"):
        return f"a .pth file {name!r} (run by every Python start)"
    if parts[0] not in (package, dist_info) or len(parts) < 2:
        return f"{name!r} lies outside the {package}/ package and {dist_info}/"
    return None


def check_release(data: bytes) -> Release:
    """Check a release file's bytes; returns the release or raises FirmwareRefused. Runs nothing."""
    if len(data) > MAX_BYTES:
        raise FirmwareRefused(f"the file has {len(data)} bytes, more than {MAX_BYTES}")
    if not data.startswith(b"PK\x03\x04"):
        raise FirmwareRefused("not a wheel (zip) file: source packages are never installed")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FirmwareRefused(f"not a valid wheel: {exc}") from None
    if len(infos) > MAX_MEMBERS:
        raise FirmwareRefused(f"{len(infos)} members, more than {MAX_MEMBERS}")
    if sum(i.file_size for i in infos) > MAX_UNPACKED:
        raise FirmwareRefused(f"more than {MAX_UNPACKED} bytes unpacked")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise FirmwareRefused("a member name appears twice")
    dist_infos = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    if len(dist_infos) != 1:
        raise FirmwareRefused(f"expected one .dist-info directory, found {sorted(dist_infos) or 'none'}")
    dist_info = dist_infos.pop()
    dist, _, version = dist_info[: -len(".dist-info")].partition("-")
    if dist.lower() != DISTRIBUTION or not _VERSION.fullmatch(version):
        raise FirmwareRefused(f"not a release of the {DISTRIBUTION!r} distribution ({dist_info})")
    for info in infos:
        problem = _member_problem(info, DISTRIBUTION, dist_info)
        if problem:
            raise FirmwareRefused(problem)
    try:
        metadata = _fields(archive.read(f"{dist_info}/METADATA").decode("utf-8"))
        wheel = _fields(archive.read(f"{dist_info}/WHEEL").decode("utf-8"))
        archive.getinfo(f"{dist_info}/RECORD")
    except (KeyError, UnicodeDecodeError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FirmwareRefused(f"incomplete wheel metadata: {exc}") from None
    if metadata.get("name", "").lower() != DISTRIBUTION or metadata.get("version") != version.replace("_", "-"):
        raise FirmwareRefused(f"METADATA names {metadata.get('name')!r} {metadata.get('version')!r}, "
                              f"not {DISTRIBUTION} {version}")
    if wheel.get("root-is-purelib", "").lower() != "true" or wheel.get("tag") != "py3-none-any":
        raise FirmwareRefused("not a pure-Python py3-none-any wheel")
    return Release(version)


# ---------------------------------------------------------------- how pip runs

def _environment(home: str) -> dict[str, str]:
    """Nothing of the daemon's environment: no proxies, PYTHONPATH or PIP_* options reach pip."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home,
            "PIP_CONFIG_FILE": os.devnull, "PYTHONNOUSERSITE": "1"}


def command(prefix: list[str] | None = None) -> list[str]:
    """pip's argument vector without the file. `prefix` (tests: pip with --target) replaces `python -I -m pip install`."""
    return list(prefix or [sys.executable, "-I", "-m", "pip", "install"]) + list(PIP_FLAGS)


def _private_copy(work_dir: Path, name: str, data: bytes) -> str:
    """A fresh 0700 directory holding the checked bytes under a name we made: what pip installs."""
    work_dir.mkdir(parents=True, exist_ok=True)
    private = tempfile.mkdtemp(prefix="install-", dir=work_dir)
    (Path(private) / name).write_bytes(data)
    return private


async def install(data: bytes, work_dir: Path, prefix: list[str] | None = None,
                  timeout: float = INSTALL_TIMEOUT_S) -> tuple[bool, str]:
    """Check and pip-install a release from its bytes. Returns (ok, what happened: pip's last lines or the refusal)."""
    try:
        release = check_release(data)
    except FirmwareRefused as exc:
        return False, f"refused: {exc}"
    private = await asyncio.to_thread(_private_copy, work_dir, release.file_name, data)
    wheel = Path(private) / release.file_name
    try:
        proc = await asyncio.create_subprocess_exec(*command(prefix), str(wheel), cwd=private, env=_environment(private),
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
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
    finally:
        await asyncio.to_thread(shutil.rmtree, private, True)
