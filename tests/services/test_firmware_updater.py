"""The privileged updater (`station firmware-install`) on its own: what it installs from the spool, and what not.

The spool is written here as docs/security.md §2.9 lays it out, by the test (a stand-in for a daemon that may
have been taken over), except where the daemon's own writer is the point. Release files come from
tests/firmware_support.py, certificates from tests/pki_support.py (`cryptography`, not the code under test).
Where nothing may run, pip is replaced by a spy that records whether it was started; the good release is
installed by the real pip into a target directory, and the hostile files' payloads write a marker that is
looked for from outside (firmware_support.nothing_ran).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from firmware_support import RELEASE_MODULE, hostile_wheels, nothing_ran, sdist, wheel
from pki_support import Ca, cert_pem, name, new_key

from station import cli
from station.services import handover, updater


class Signer:
    def __init__(self, ca: Ca) -> None:
        self.key = new_key()
        self.pem = cert_pem(ca.issue(self.key.public_key(), name("firmware signer", "Test Manufacturer"))).decode()

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


@pytest.fixture(scope="module")
def pki():
    mfr, rogue = Ca("mfr-ca", org="Test Manufacturer"), Ca("cpo-installed-ca", org="Hostile CPO")
    return {"mfr": mfr, "signer": Signer(mfr), "rogue": Signer(rogue)}


@pytest.fixture
def site(tmp_path, pki):
    """Root's configuration (firmware.signing_ca_file = the manufacturer's root), the spool, pip's target."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "firmware-ca.pem").write_text(pki["mfr"].pem)
    config = etc / "station.toml"
    config.write_text(f'[firmware]\nsigning_ca_file = "{etc / "firmware-ca.pem"}"\n')
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o770)
    return {"config": config, "spool": spool, "target": tmp_path / "site-packages", "marker": tmp_path / "MARKER",
            "pip_ran": tmp_path / "pip-ran", "dir": tmp_path}


def drop(spool: Path, data: bytes, request: dict) -> None:
    """What the daemon writes: pending/release.whl, pending/request.json, then pending/ready."""
    pending = spool / "pending"
    pending.mkdir()
    (pending / "release.whl").write_bytes(data)
    (pending / "request.json").write_text(json.dumps(request))
    (pending / "ready").write_bytes(b"")


def signed(data: bytes, signer: Signer, request_id: int = 7) -> dict:
    return {"kind": "signed", "requestId": request_id, "signingCertificate": signer.pem, "signature": signer.sign(data)}


def spy(site) -> list[str]:
    """pip replaced by a process that records its start and the bytes it was given."""
    code = (f"import sys, os; open({str(site['pip_ran'])!r}, 'w').write(open(sys.argv[-1], 'rb').read().hex() + ' ' "
            f"+ sys.argv[-1] + ' ' + str(os.path.exists({str(site['spool'] / 'pending')!r})))")
    return [sys.executable, "-c", code]


def result(site) -> dict:
    return json.loads((site["spool"] / "result.json").read_text())


def test_a_signed_station_wheel_is_installed_and_the_result_left_for_the_daemon(site, pki):
    data = wheel(site["dir"] / "r.whl", version="99.0").read_bytes()
    drop(site["spool"], data, signed(data, pki["signer"], 42))
    rc = cli.main(["firmware-install", "-c", str(site["config"]), "--spool", str(site["spool"]),
                   "--target", str(site["target"])])
    assert rc == 0
    assert (site["target"] / RELEASE_MODULE).read_text() == "VERSION = '99.0'\n"
    assert result(site) == {"kind": "signed", "requestId": 42, "status": "Installed",
                            "reason": "station 99.0 installed", "version": "99.0"}
    assert stat.S_IMODE((site["spool"] / "result.json").stat().st_mode) == 0o644  # the daemon's user reads it
    assert not (site["spool"] / "pending").exists()  # taken: the path unit does not fire again
    # the daemon's reader agrees
    assert handover.read_result(site["spool"])["status"] == "Installed"


def test_nothing_ready_changes_nothing(site, pki):
    assert cli.main(["firmware-install", "-c", str(site["config"]), "--spool", str(site["spool"])]) == 0
    data = wheel(site["dir"] / "r.whl").read_bytes()
    drop(site["spool"], data, signed(data, pki["signer"]))
    (site["spool"] / "pending" / "ready").unlink()  # the daemon is still writing
    assert updater.install_pending(site["spool"], site["config"], prefix=spy(site)) is None
    assert (site["spool"] / "pending" / "release.whl").exists() and not (site["spool"] / "result.json").exists()


@pytest.mark.parametrize("what", ["pth", "pth in .data", "script in .data", "top-level module", "other distribution",
                                  "path traversal", "source package"])
def test_a_hostile_release_validly_signed_is_refused_and_nothing_runs(site, pki, what):
    """A stolen signing key or a manufacturer's mistake: the contents check stops each, pip never starts."""
    files = hostile_wheels(site["dir"], site["marker"])
    files["source package"] = sdist(site["dir"] / "station-99.0.tar.gz", site["marker"])
    data = files[what].read_bytes()
    drop(site["spool"], data, signed(data, pki["signer"]))
    outcome = updater.install_pending(site["spool"], site["config"], prefix=spy(site))
    assert outcome is not None and outcome.status == "InstallVerificationFailed", outcome
    assert result(site)["status"] == "InstallVerificationFailed"
    assert not site["pip_ran"].exists()
    nothing_ran(site["marker"], site["target"])


def test_a_release_signed_by_a_root_the_central_system_installed_is_refused(site, pki):
    data = wheel(site["dir"] / "r.whl").read_bytes()
    drop(site["spool"], data, signed(data, pki["rogue"]))
    outcome = updater.install_pending(site["spool"], site["config"], prefix=spy(site))
    assert outcome.status == "InstallVerificationFailed" and "root" in outcome.reason
    assert not site["pip_ran"].exists()


def test_a_spool_file_swapped_after_the_daemons_check_is_refused(site, pki):
    """The daemon checked and signed off a good release (its own writer); then the file is swapped for a
    hostile one before the updater takes it: the signature no longer matches, nothing runs."""
    good = wheel(site["dir"] / "good.whl").read_bytes()
    handover.hand_over(site["spool"], good, signed(good, pki["signer"]))
    hostile = hostile_wheels(site["dir"], site["marker"])["pth"].read_bytes()
    (site["spool"] / "pending" / "release.whl").write_bytes(hostile)
    outcome = updater.install_pending(site["spool"], site["config"], prefix=spy(site))
    assert outcome.status == "InstallVerificationFailed" and "signature" in outcome.reason
    assert not site["pip_ran"].exists()
    nothing_ran(site["marker"], site["target"])


def test_pip_gets_the_bytes_that_were_checked_never_the_spool(site, pki):
    data = wheel(site["dir"] / "r.whl", version="3.0").read_bytes()
    drop(site["spool"], data, signed(data, pki["signer"]))
    outcome = updater.install_pending(site["spool"], site["config"], prefix=spy(site))
    assert outcome.status == "Installed"
    hexdata, path, spool_there = site["pip_ran"].read_text().split(" ")
    assert bytes.fromhex(hexdata) == data
    assert spool_there == "False"  # the spool was emptied before pip started
    assert not Path(path).is_relative_to(site["spool"]) and not Path(path).exists()  # a private copy, gone


@pytest.mark.parametrize("config, installs", [
    ("", False),
    ("[firmware]\nallow_unsigned = true\n[backend]\nkind = \"ocpp\"\n[backend.ocpp]\nsecurity_profile = 1\n"
     "authorization_key = \"0123456789abcdefXYZ\"\n", False),
    ("[firmware]\nallow_unsigned = true\n", True),
])
def test_unsigned_only_where_roots_configuration_allows_it_at_profile_0(site, config, installs):
    site["config"].write_text(config)
    data = wheel(site["dir"] / "r.whl").read_bytes()
    drop(site["spool"], data, {"kind": "unsigned", "requestId": None})
    outcome = updater.install_pending(site["spool"], site["config"], prefix=spy(site))
    assert (outcome.status == "Installed") is installs, outcome
    assert site["pip_ran"].exists() is installs
    if not installs:
        assert outcome.status == "InstallationFailed" and "unsigned" in outcome.reason


@pytest.mark.parametrize("loose", ["config", "config's directory", "signing root"])
def test_a_configuration_or_root_others_could_write_is_not_trusted(site, pki, loose):
    path = {"config": site["config"], "config's directory": site["config"].parent,
            "signing root": site["config"].parent / "firmware-ca.pem"}[loose]
    path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o022)
    data = wheel(site["dir"] / "r.whl").read_bytes()
    drop(site["spool"], data, signed(data, pki["signer"]))
    outcome = updater.install_pending(site["spool"], site["config"], prefix=spy(site))
    assert outcome.status == "InstallationFailed" and "not trusted" in outcome.reason, outcome
    assert not site["pip_ran"].exists()


def test_symbolic_links_in_the_spool_are_never_followed(site, pki, tmp_path):
    data = wheel(site["dir"] / "r.whl").read_bytes()
    drop(site["spool"], data, signed(data, pki["signer"]))
    (site["spool"] / "pending" / "release.whl").unlink()
    (site["spool"] / "pending" / "release.whl").symlink_to(site["dir"] / "r.whl")
    victim = tmp_path / "victim"
    victim.write_text("root's file")
    (site["spool"] / "result.json").symlink_to(victim)  # planted: the result must not be written through it
    outcome = updater.install_pending(site["spool"], site["config"], prefix=spy(site))
    assert outcome.status == "InstallationFailed" and "release.whl" in outcome.reason
    assert victim.read_text() == "root's file"
    assert not (site["spool"] / "result.json").is_symlink() and result(site)["status"] == "InstallationFailed"
    assert not (site["spool"] / "pending").exists() and not site["pip_ran"].exists()
    # a spool that is itself a link: nothing is read, written or removed there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    drop(elsewhere, data, signed(data, pki["signer"]))
    link = tmp_path / "linked-spool"
    link.symlink_to(elsewhere)
    assert updater.install_pending(link, site["config"], prefix=spy(site)) is None
    assert (elsewhere / "pending" / "ready").exists() and not site["pip_ran"].exists()


def test_a_file_with_a_second_name_is_not_read(site, pki):
    """A hard link could make root read a file the daemon may not (with fs.protected_hardlinks off)."""
    data = wheel(site["dir"] / "r.whl").read_bytes()
    drop(site["spool"], data, signed(data, pki["signer"]))
    os.link(site["spool"] / "pending" / "request.json", site["dir"] / "second-name")
    outcome = updater.install_pending(site["spool"], site["config"], prefix=spy(site))
    assert outcome.status == "InstallationFailed" and "not a plain file" in outcome.reason
    assert not site["pip_ran"].exists()


def test_the_restart_is_systemctl_try_restart_without_waiting():
    seen = []
    updater.restart_unit("station.service", run=seen.append)
    assert seen == [["systemctl", "--no-block", "try-restart", "station.service"]]


def test_check_config_warns_where_the_updater_would_refuse_the_signing_root(tmp_path, pki):
    from station import config as configmod
    from station import configcheck

    ca = tmp_path / "firmware-ca.pem"
    ca.write_text(pki["mfr"].pem)
    ca.chmod(0o666)
    values = {"backend.kind": "ocpp", "station.state_dir": str(tmp_path / "state"), "firmware.signing_ca_file": str(ca)}

    def warned() -> list[str]:
        return [f.text for f in configcheck.findings(configmod.defaults(values))
                if f.key == "firmware.signing_ca_file" and "updater" in f.text]
    (tmp_path / "state").mkdir()
    assert warned() == []  # no updater installed (no spool): nothing to say
    (tmp_path / "state" / "firmware").mkdir()
    [text] = warned()
    assert "writable by others" in text
    ca.chmod(0o644)
    if os.geteuid() == 0:
        assert warned() == []
        os.chown(ca, 65534, -1)  # the daemon's user could replace it
        assert "not root" in warned()[0]
