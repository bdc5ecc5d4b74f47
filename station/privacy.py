"""Personal data in logs: id tags are masked unless the installer asks for them.

An id tag (a card's UID) tells which apartment charged when: personal data.
Logs leave the box (journald, support tickets), so every module that logs a
tag passes it through `tag()`. By default it shows only the last characters,
enough to tell two cards apart in one log and never enough to rebuild the tag.
`station.log_tags = true` (set by the daemon at start through `configure`)
logs tags in full, for an installer pairing cards; the journal (SQLite) and
the backends always keep the full tag: they need it to bill.

The switch is process-wide on purpose: the reader thread, the core and the
backends all log, and none of them should need the config to do it right.
"""

from __future__ import annotations

_log_tags = False


def set_log_tags(full: bool) -> None:
    """Log id tags in full (True) or masked (False, the default)."""
    global _log_tags
    _log_tags = bool(full)


def log_tags() -> bool:
    return _log_tags


def mask(value: str) -> str:
    """`16AC936B1692E73A` -> `…E73A`: at most a quarter of the characters, and never more
    than 4, stay visible (8-character tags show 2). Separators count as characters."""
    text = str(value)
    keep = min(4, len(text) // 4)
    return "…" + text[-keep:] if keep else "…"


def tag(value: object) -> str:
    """The tag as it may appear in a log line."""
    if value is None:
        return "-"
    return str(value) if _log_tags else mask(str(value))
