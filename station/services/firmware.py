"""Installing a firmware release: the station's own Python package, with pip.

The release is a wheel or sdist of the `station` package. It is installed
with pip into the environment the station runs in (`sys.executable -m pip
install --upgrade`); the caller then restarts the station (exit for systemd's
`Restart=`), which brings it back on the new code.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

PACKAGE_SUFFIXES = (".whl", ".tar.gz", ".zip")
INSTALL_TIMEOUT_S = 600.0


def is_package(path: Path) -> bool:
    return path.name.endswith(PACKAGE_SUFFIXES)


async def install(path: Path, command: list[str] | None = None,
                  timeout: float = INSTALL_TIMEOUT_S) -> tuple[bool, str]:
    """pip-install a release file. Returns (ok, last lines of pip's output)."""
    if not is_package(path):
        return False, "not a Python package file"
    argv = list(command or [sys.executable, "-m", "pip", "install", "--no-input", "--upgrade"]) + [str(path)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
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
