"""Modules imported at first use.

`cryptography` costs about 10 MiB of RSS, ftplib/tarfile/urllib.request a few
more; a station that never handles a certificate or a file transfer should
not pay for them on a 512 MB Pi Zero (see docs/benchmarks.md). Modules that
need them declare `name = lazy("module")` and use `name.attr` as usual; for
type checking they import the real module under `TYPE_CHECKING`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A module imported when one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def load(self) -> ModuleType:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.load(), attr)


def lazy(name: str) -> Any:
    """`name`, imported at first attribute access (typed Any: import the module under TYPE_CHECKING)."""
    return LazyModule(name)
