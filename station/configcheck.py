"""Checks across keys that the loader leaves alone, for `station check-config`.

The loader (station.config) rejects what is invalid on its face: unknown
keys, wrong types, values out of bounds, two devices on one pin. A file can
pass it and still describe a station that cannot work (OCPP security
profile 1 without a password) or one that works in a way nobody expects (the
local backend with no tags: every tap is refused). Those are findings:

* error    the station cannot work as configured (check-config exits 2;
           `station run` logs it at ERROR and starts anyway, because a station
           that refuses to boot charges nobody, while the offline policy and
           the journal still work);
* warning  it works, but not as the installer probably thinks;
* hint     worth knowing (clear-text passwords, full tags in the logs).

`read_files=False` skips the checks that open files named in the config
(certificates, the password file), for a config checked away from the box.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station.config import SCHEMA, Config, split_listen


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "hint"
    key: str
    text: str

    def __str__(self) -> str:
        return f"{self.level}: {self.key}: {self.text}"


def findings(cfg: Config, read_files: bool = True) -> list[Finding]:
    out: list[Finding] = []
    out += _backend(cfg)
    out += _ocpp(cfg, read_files)
    out += _mcsp(cfg, read_files)
    out += _status_page(cfg, read_files)
    out += _firmware(cfg, read_files)
    out += _controller(cfg)
    out += retired_keys(cfg)
    if cfg.station.log_tags:
        out.append(Finding("hint", "station.log_tags", "id tags are logged in full; they are personal data "
                                                       "(which apartment charged when): switch it off once the cards are paired"))
    return out


def _backend(cfg: Config) -> list[Finding]:
    b = cfg.backend
    tags = dict(b.local.tags)
    out = []
    if b.kind == "local" and not tags:
        out.append(Finding("warning", "backend.local.tags",
                           "empty: with the local backend every tap is refused. Add one line per card, "
                           '"D64FC93B" = "Apartment 2" (`station rfid read` shows a card\'s id tag)'))
    elif tags and b.kind != "local" and b.offline_policy != "cached+local":
        out.append(Finding("hint", "backend.local.tags",
                           f"{len(tags)} tag(s) listed but not used: the {b.kind} backend decides, and these tags "
                           f"count only with backend.offline_policy = \"cached+local\" (now {b.offline_policy!r})"))
    if b.offline_policy == "cached+local" and not tags:
        out.append(Finding("hint", "backend.offline_policy",
                           "cached+local adds the tags of backend.local.tags, but that table is empty"))
    return out


# The backend.ocpp keys one OCPP version only uses (every other key is used by both: the link, the
# security profile and its credentials, 1.6 AuthorizationKey = 2.0.1 SecurityCtrlr.BasicAuthPassword).
OCPP_VERSION_KEYS: dict[str, tuple[str, ...]] = {"connector_type": ("2.0.1",)}


def _ocpp_versions(cfg: Config) -> list[Finding]:
    """A key set for an OCPP version that backend.ocpp.versions does not offer does nothing: say so."""
    o = cfg.backend.ocpp
    versions = list(o.versions)
    out = []
    for name, used_by in OCPP_VERSION_KEYS.items():
        dotted = f"backend.ocpp.{name}"
        if not set(used_by) & set(versions) and cfg.get(dotted) != SCHEMA[dotted].default:
            out.append(Finding("warning", dotted,
                               f"used by OCPP {' and '.join(used_by)} only, and backend.ocpp.versions = {versions} "
                               f"does not offer it: this setting does nothing (add \"{used_by[0]}\" to versions, "
                               "or remove the key)"))
    return out


def _ocpp(cfg: Config, read_files: bool) -> list[Finding]:
    if cfg.backend.kind != "ocpp":
        return []
    o = cfg.backend.ocpp
    p = o.security_profile
    out = _ocpp_versions(cfg)
    if p in (1, 2) and not o.authorization_key:
        out.append(Finding("error", "backend.ocpp.authorization_key",
                           f"security profile {p} sends an HTTP Basic password, but none is set: the central system "
                           "will refuse every connection. Set the AuthorizationKey registered for this charge point "
                           "(16 to 40 characters)"))
    if p == 3:
        for name in ("cert_file", "key_file"):
            if not getattr(o, name):
                out.append(Finding("error", f"backend.ocpp.{name}",
                                   "security profile 3 authenticates the station with a TLS client certificate: "
                                   "set backend.ocpp.cert_file and backend.ocpp.key_file (PEM files)"))
    if p == 1 and str(o.url).startswith("ws://") and not _loopback_url(o.url):
        out.append(Finding("hint", "backend.ocpp.security_profile",
                           f"profile 1 sends the AuthorizationKey unencrypted over {o.url}: only on a network you "
                           "trust (a VPN); profile 2 adds TLS"))
    if read_files:
        wanted = ["ca_file"] + (["cert_file", "key_file"] if p == 3 else [])
        out += [f for name in wanted if (f := _unreadable(f"backend.ocpp.{name}", getattr(o, name)))]
    return out


def _mcsp(cfg: Config, read_files: bool) -> list[Finding]:
    if cfg.backend.kind != "mcsp":
        return []
    m = cfg.backend.mcsp
    out = []
    if m.secret and not str(m.url).startswith("tls://"):
        out.append(Finding("warning", "backend.mcsp.secret",
                           f"sent in clear text over {m.url}: anyone on that link can read it; use a tls:// url"))
    if read_files and str(m.url).startswith("tls://"):
        out += [f for f in [_unreadable("backend.mcsp.ca_file", m.ca_file)] if f]
    return out


def _status_page(cfg: Config, read_files: bool) -> list[Finding]:
    s = cfg.status_page
    if not s.enabled:
        return []
    out = []
    host, _ = split_listen(s.listen)
    local = _loopback_host(host)
    password = s.password
    if s.password_file and read_files:
        try:
            password = read_password(s.password_file)
        except ValueError as exc:
            out.append(Finding("error", "status_page.password_file",
                               f"{exc}: the page will not be served (it never falls back to no password)"))
            return out
    if not s.password_file and password is None:
        if not local:
            out.append(Finding("warning", "status_page.password_file",
                               f"no password: anyone who reaches {s.listen} sees the station's state, its LCD and "
                               "the last sessions (id tags masked). Set a password_file, or listen on 127.0.0.1"))
        return out
    if password is not None and len(password) < 12:
        out.append(Finding("warning", "status_page.password",
                           f"only {len(password)} characters: use at least 12 (the page can be tried from the whole LAN)"))
    if not local:
        out.append(Finding("hint", "status_page.listen",
                           "the page speaks plain HTTP: the password crosses the network unencrypted (HTTP Basic). "
                           "Use it on a LAN you trust, or reach it through an SSH tunnel or a VPN"))
    return out


def _firmware(cfg: Config, read_files: bool) -> list[Finding]:
    """Firmware is code: who may sign it, and the dangerous unsigned switch."""
    if cfg.backend.kind != "ocpp":
        return []
    f = cfg.firmware
    out = []
    if f.allow_unsigned:
        if cfg.backend.ocpp.security_profile >= 1:
            out.append(Finding("hint", "firmware.allow_unsigned",
                               "has no effect under security profile 1-3: only signed firmware is taken there"))
        else:
            out.append(Finding("warning", "firmware.allow_unsigned",
                               "DANGEROUS: the central system, or anyone who can pose as it on this network (profile 0 "
                               "has no authentication), can install any code on the station. Switch it off outside "
                               "a closed test bench; use SignedUpdateFirmware with firmware.signing_ca_file"))
    if f.signing_ca_file and read_files:
        try:
            text = Path(f.signing_ca_file).read_bytes()
        except OSError as exc:
            out.append(Finding("error", "firmware.signing_ca_file",
                               f"cannot read {f.signing_ca_file}: {exc.strerror or exc} (every firmware update will be "
                               "refused)"))
        else:
            if b"-----BEGIN CERTIFICATE-----" not in text:
                out.append(Finding("error", "firmware.signing_ca_file",
                                   f"{f.signing_ca_file} holds no PEM certificate (every firmware update will be refused)"))
            out.extend(_updater_trust(cfg, f.signing_ca_file))
    return out


def _updater_trust(cfg: Config, ca_file: str) -> list[Finding]:
    """Where the privileged updater is installed, it trusts only a signing root that root alone can change."""
    from station.services import handover, updater

    if not handover.available(handover.spool_dir(cfg.station.state_dir)):
        return []
    try:
        updater.check_trusted(ca_file, owners=(0,))
    except updater.Refused as exc:
        return [Finding("warning", "firmware.signing_ca_file",
                        f"the firmware updater will refuse every release: {exc} (keep it root's, e.g. in /etc/station)")]
    return []


def _controller(cfg: Config) -> list[Finding]:
    """The charge controller: its currents, its address on the meter's line, the emulated bus."""
    from station.hardware.controllers.models import get_model

    out = []
    c = cfg.controller
    if cfg.hardware.mode == "pi" and not cfg.hardware.emulate_bus:
        out.append(Finding("hint", "hardware.emulate_bus", "has no effect with hardware.mode = \"pi\" (the devices "
                                                           "are always the real ones)"))
    if c.model == "none":
        return out
    board = get_model(c.model)
    if c.min_current_a > c.max_current_a:
        out.append(Finding("error", "controller.min_current_a",
                           f"{c.min_current_a:g} A is above controller.max_current_a ({c.max_current_a:g} A): no current "
                           "could ever be offered"))
    if c.max_current_a > board.max_current_a:
        out.append(Finding("error", "controller.max_current_a",
                           f"{c.max_current_a:g} A is more than the {board.name} can signal ({board.max_current_a} A)"))
    shared = c.port is None or c.port == cfg.meter.port
    if shared and c.address == cfg.meter.address:
        out.append(Finding("error", "controller.address",
                           f"{c.address} is also meter.address, on the same line: both devices would answer every "
                           "request. Give one of them another address (the meter's setup menu, or the board's)"))
    if c.port is not None and c.port == cfg.meter.port:
        out.append(Finding("hint", "controller.port",
                           "is the meter's port: the controller shares the meter's line and its settings "
                           "(controller.baudrate, parity, stopbits and timeout_s are not used)"))
    return out


def retired_keys(cfg: Config) -> list[Finding]:
    """Keys of an earlier release the file still has: ignored (the daemon logs them at start too)."""
    from station.config import RETIRED

    return [Finding("warning", key, f"is no longer used and ignored: {RETIRED[key]}; remove it") for key in cfg.retired]


def read_password(path: str) -> str:
    """The first line of a password file. Raises ValueError saying what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password:
        raise ValueError(f"{path} is empty (its first line is the password)")
    return password


def _unreadable(key: str, path: Any) -> Finding | None:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return Finding("error", key, f"cannot read {path}: {exc.strerror or exc}")
    return None


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_url(url: str) -> bool:
    rest = str(url).split("://", 1)[-1]
    host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return _loopback_host(host)
