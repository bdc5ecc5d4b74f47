"""The real rpi-lgpio 0.6, unmodified, on top of the emulated lgpio (station/emulated/fakelgpio.py).

rpi-lgpio is the RPi.GPIO module every Pi runs (scripts/install-pi). It cannot
be installed in the test environment (it would take the `RPi.GPIO` name), so
its wheel, as published on PyPI, is kept in tests/data and its module is
loaded from the zip by an import hook while a test runs. Its sha256 is
checked, so the code under test is exactly what a Pi installs.

rpi-lgpio reads the board revision from the device tree at import
(`/proc/device-tree/system/linux,revision`, an absolute path); the hook gives
the module its own `open` that reads that one path from a file the test
writes, and passes every other path through. Everything rpi-lgpio does below
that goes to the emulated lgpio: a gpiochip that can fail to open, lines
another consumer holds, edges debounced by lgpio's rules.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import struct
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from station.emulated import fakelgpio

WHEEL = Path(__file__).resolve().parents[1] / "data" / "rpi_lgpio-0.6-py3-none-any.whl"
WHEEL_SHA256 = "0930b6e0ffbfbeee9366fbfa5038d29a7606be96a5229d570b1f81be8f776777"  # PyPI, rpi-lgpio 0.6
DEVICE_TREE_REVISION = "/proc/device-tree/system/linux,revision"
NAMES = ("RPi", "RPi.GPIO", "lgpio")


def _source() -> str:
    data = WHEEL.read_bytes()
    assert hashlib.sha256(data).hexdigest() == WHEEL_SHA256, "tests/data holds another rpi-lgpio than 0.6"
    with zipfile.ZipFile(WHEEL) as z:
        return z.read("RPi/GPIO/__init__.py").decode()


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, revision_file: Path | None) -> None:
        self.revision_file = revision_file

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "RPi":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname == "RPi.GPIO":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        if module.__name__ == "RPi":
            return
        revision_file = self.revision_file

        def device_tree_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if file == DEVICE_TREE_REVISION:
                if revision_file is None:
                    raise FileNotFoundError(2, "No such file or directory", file)
                file = revision_file
            return builtins.open(file, *args, **kwargs)

        module.__dict__["open"] = device_tree_open  # module globals come before builtins
        exec(compile(_source(), str(WHEEL) + "/RPi/GPIO/__init__.py", "exec"), module.__dict__)


def write_revision(path: Path, code: int) -> Path:
    """A device-tree `linux,revision` file: the code as 4 big-endian bytes."""
    path.write_bytes(struct.pack(">I", code))
    return path


@contextlib.contextmanager
def real_rpi_lgpio(revision_file: Path | None) -> Iterator[None]:
    """While active, `import RPi.GPIO` runs rpi-lgpio 0.6 on the emulated lgpio, on a board whose
    device tree holds the revision in `revision_file` (None: no device tree, not a Pi)."""
    saved = {name: sys.modules.pop(name) for name in NAMES if name in sys.modules}
    finder = _Finder(revision_file)
    fakelgpio.reset()
    sys.modules["lgpio"] = fakelgpio  # type: ignore[assignment]
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in NAMES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        fakelgpio.reset()
