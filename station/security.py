"""Start-up security checks: who can read the station's secrets and personal data.

Theory of operation
-------------------
`check_at_start(config)` runs once when the daemon starts, before anything
talks to the network. It never stops the station (a charging station that
refuses to boot over a file mode helps nobody); it writes one WARNING line
per problem, naming the file and the fix, so that the installer sees it in
`journalctl -u station` and `systemctl status`.

What is checked (docs/security.md has the reasons):

* files that hold secrets: the config file when it contains
  `backend.mcsp.secret` or `backend.ocpp.authorization_key`, and the OCPP
  private key (`backend.ocpp.key_file`). Readable by "others" is a problem
  (any local user, any other service's compromise, reads the secret); owner
  and group are fine, the unit runs as user `station` and the recommended
  modes are `600 station:station` or `640 root:station`;
* trust anchors (`ca_file`s, the station certificate): writable by others
  means anyone on the box can swap the pinned CA for their own;
* the state directory (the journal holds every id tag and session): readable
  or searchable by others.

It also switches the masking of id tags in logs (station.privacy) to the
configured `station.log_tags`, and warns once when a secret would travel in
clear text (an MCSP secret over tcp://).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from station import privacy

log = logging.getLogger(__name__)


def check_at_start(config: Any) -> list[str]:
    """Apply `station.log_tags` and log (and return) every permission problem found."""
    privacy.set_log_tags(bool(config.station.log_tags))
    problems = permission_problems(config)
    for text in problems:
        log.warning("%s", text)
    mcsp = config.backend.mcsp
    if config.backend.kind == "mcsp" and mcsp.secret and not str(mcsp.url).startswith("tls://"):
        text = (f"backend.mcsp.secret is sent in clear text over {mcsp.url}: anyone on that link can read it; "
                "use a tls:// url (docs/mcsp.md, section 10.2)")
        log.warning("%s", text)
        problems.append(text)
    return problems


def permission_problems(config: Any) -> list[str]:
    """One sentence per problem: the file, what is wrong, and the fix."""
    out: list[str] = []
    source = getattr(config, "source", "")
    holds = [name for name in ("backend.mcsp.secret", "backend.ocpp.authorization_key", "status_page.password")
             if _get(config, name)]
    if holds and source and not source.startswith("<"):
        out += _secret_file(Path(source), " and ".join(holds))
    key_file = _get(config, "backend.ocpp.key_file")
    if key_file:
        out += _secret_file(Path(key_file), "the station's private key (backend.ocpp.key_file)")
    password_file = _get(config, "status_page.password_file")
    if password_file:
        out += _secret_file(Path(password_file), "the status page's password (status_page.password_file)")
    for name in ("backend.mcsp.ca_file", "backend.ocpp.ca_file", "backend.ocpp.cert_file", "firmware.signing_ca_file"):
        path = _get(config, name)
        if path:
            out += _trust_file(Path(path), name)
    state = _get(config, "station.state_dir")
    if state and _get(config, "hardware.mode") == "pi":  # the simulator's journal holds demo data
        out += _state_dir(Path(state))
    return out


def _get(config: Any, dotted: str) -> Any:
    try:
        return config.get(dotted)
    except (KeyError, AttributeError):
        return None


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None  # a missing file is the config loader's or the backend's error, not ours


def _secret_file(path: Path, what: str) -> list[str]:
    mode = _mode(path)
    if mode is None or not mode & (stat.S_IROTH | stat.S_IWOTH):
        return []
    return [f"{path} holds {what} and is {_who(mode)} by every user (mode {stat.S_IMODE(mode):03o}); "
            f"fix: chmod 600 {path} (owner station), or chmod 640 {path} && chown root:station {path}"]


def _trust_file(path: Path, name: str) -> list[str]:
    mode = _mode(path)
    if mode is None or not mode & stat.S_IWOTH:
        return []
    return [f"{path} ({name}) is writable by every user (mode {stat.S_IMODE(mode):03o}): anyone could replace "
            f"the certificate the station trusts; fix: chmod 644 {path} && chown root:root {path}"]


def _state_dir(path: Path) -> list[str]:
    mode = _mode(path)
    if mode is None or not stat.S_ISDIR(mode) or not mode & (stat.S_IROTH | stat.S_IXOTH):
        return []
    return [f"{path} (station.state_dir) holds the journal with every id tag and session and is open to every "
            f"user (mode {stat.S_IMODE(mode):03o}); fix: chmod 750 {path}"]


def _who(mode: int) -> str:
    r, w = mode & stat.S_IROTH, mode & stat.S_IWOTH
    return "readable and writable" if r and w else "readable" if r else "writable"
