"""The tags file of the MCSP reference server: which id tag bills which apartment, and which stations
may connect (TOML)::

    "16AC936B1692E73A" = "Apartment 3"                     # tag = "apartment"
    "D6 4F C9 3B" = { apartment = "Apartment 5", stations = ["Tankstelle1"] }

    [stations]                 # optional: only these stations may connect
    Tankstelle1 = { secret = "s3cret-for-this-station" }   # secret optional
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from station.core.tags import normalize_tag


@dataclass(frozen=True)
class TagEntry:
    apartment: str
    stations: frozenset[str] | None = None  # None: any station


def load_tags(path: str | Path) -> tuple[dict[str, TagEntry], dict[str, str | None] | None]:
    """(tags by normalized tag, stations -> secret or None when the file has no [stations])."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nesting
        raise ValueError(f"{path}: arrays or tables nested too deeply") from None
    stations: dict[str, str | None] | None = None
    tags: dict[str, TagEntry] = {}
    for name, value in data.items():
        if name == "stations" and isinstance(value, dict) and "apartment" not in value:
            stations = {}
            for station, entry in value.items():
                if isinstance(entry, str):
                    stations[station] = entry
                elif isinstance(entry, dict):
                    stations[station] = entry.get("secret")
                else:
                    raise ValueError(f"{path}: stations.{station}: expected a table or a secret string")
        elif isinstance(value, str):
            tags[normalize_tag(name)] = TagEntry(value)
        elif isinstance(value, dict) and isinstance(value.get("apartment"), str):
            allowed = value.get("stations")
            if allowed is not None and not (isinstance(allowed, list) and all(isinstance(s, str) for s in allowed)):
                raise ValueError(f"{path}: {name}.stations: expected a list of station names")
            tags[normalize_tag(name)] = TagEntry(value["apartment"], frozenset(allowed) if allowed is not None else None)
        else:
            raise ValueError(f'{path}: {name}: expected "apartment" or {{ apartment = "...", stations = [...] }}')
    return tags, stations

