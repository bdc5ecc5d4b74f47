"""The diagnostics archive: a tar.gz of the station's logs for a central system to collect.

It holds the log files found in the given directories, the systemd journal of
the unit (between two times, when given) when journalctl exists, and whatever
text files the caller adds (e.g. recent protocol frames, the configuration).
Built in a worker thread: the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from station.services.lazy import lazy

if TYPE_CHECKING:
    import tarfile
else:
    tarfile = lazy("tarfile")  # imported when an archive is first built


def _journal(unit: str, since: str | None, until: str | None) -> bytes | None:
    if shutil.which("journalctl") is None:
        return None
    argv = ["journalctl", "--no-pager", "-o", "short-iso", "-u", unit]
    if since:
        argv += ["--since", since.replace("T", " ").rstrip("Z").split(".")[0]]
    if until:
        argv += ["--until", until.replace("T", " ").rstrip("Z").split(".")[0]]
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _archive(dest: Path, log_dirs: list[Path], unit: str, since: str | None, until: str | None,
             extra: dict[str, str]) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))

        for directory in log_dirs:
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.log*")):
                if path.is_file():
                    tar.add(path, arcname=f"logs/{path.name}")
        journal = _journal(unit, since, until)
        if journal is not None:
            add_bytes("journal.txt", journal)
        for name, text in extra.items():
            add_bytes(name, text.encode("utf-8"))
    return dest


async def build_archive(dest: Path, log_dirs: Iterable[Path], unit: str = "station", since: str | None = None,
                        until: str | None = None, extra: dict[str, str] | None = None) -> Path:
    return await asyncio.to_thread(_archive, dest, list(log_dirs), unit, since, until, extra or {})
