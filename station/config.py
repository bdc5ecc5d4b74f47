"""Configuration: TOML in, a validated read-only tree out.

Every key the station knows is declared once in SCHEMA (config_schema.py) with its type,
unit, bounds, default and meaning. The loader rejects unknown keys and wrong
types with an error naming file, key and problem; `config/station.toml`
documents the same keys (a test checks the two agree).

Keys under a "free table" (`backend.local.tags`) are user data, not schema.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from station.config_schema import SCHEMA, Key
from station.errors import ConfigError

FREE_TABLES = {"backend.local.tags"}
# Keys an earlier release had and this one does not use: a file with them still loads (they are ignored),
# and `station check-config` and the log at start say where the setting went.
RETIRED = {"charging.max_current_a": "the installation's rating is now controller.max_current_a, used with a charge "
           "controller (without one no current is offered: the key never had an effect)"}


class Section:
    """A read-only view of one config table; attribute access by key name."""

    def __init__(self, path: str, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        for candidate in (name, name.replace("_", "-")):
            if candidate in values:
                return values[candidate]
        raise AttributeError(f"config has no key {self._path + '.' if self._path else ''}{name}")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("configuration is read-only")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __repr__(self) -> str:
        return f"Section({self._path!r}, {self._values!r})"


class Config(Section):
    """The whole configuration. `source` is the file it came from (or '<defaults>')."""

    retired: tuple[str, ...]

    def __init__(self, values: dict[str, Any], source: str) -> None:
        super().__init__("", values)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "retired", ())  # keys of RETIRED the file has (ignored)

    def get(self, dotted: str) -> Any:
        node: Any = self
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def state_path(self) -> Path:
        return Path(self.station.state_dir)


def _check(file: str, dotted: str, key: Key, value: Any) -> Any:
    if key.optional and value is None:
        return None
    types = key.type if isinstance(key.type, tuple) else (key.type,)
    # TOML integers are not bools, but Python's bool is an int: keep them apart.
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(file, dotted, f"expected {_type_name(key)}, got a boolean")
    if not isinstance(value, types):
        raise ConfigError(file, dotted, f"expected {_type_name(key)}, got {type(value).__name__} {value!r}")
    if isinstance(value, list):
        _check_list(file, dotted, key, value)
    elif key.choices is not None and value not in key.choices:
        raise ConfigError(file, dotted, f"must be one of {', '.join(map(repr, key.choices))}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        # TOML has nan and inf; nan passes every comparison, so it would slip through the bounds.
        raise ConfigError(file, dotted, f"must be a finite number, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        show = _hex if key.hex else repr
        if key.min is not None and value < key.min:
            raise ConfigError(file, dotted, f"must be at least {show(key.min)}{key.unit and ' ' + key.unit}, got {show(value)}")
        if key.max is not None and value > key.max:
            raise ConfigError(file, dotted, f"must be at most {show(key.max)}{key.unit and ' ' + key.unit}, got {show(value)}")
    if isinstance(value, str) and key.max is not None and len(value) > key.max:
        raise ConfigError(file, dotted, f"must be at most {int(key.max)} characters")
    if dotted == "backend.local.tags" and isinstance(value, dict):
        for tag, name in value.items():
            if not isinstance(name, str):
                raise ConfigError(file, f"{dotted}.{tag}", f"expected a string (apartment or name), got {type(name).__name__}")
    return value


def _check_list(file: str, dotted: str, key: Key, value: list[Any]) -> None:
    if not value:
        raise ConfigError(file, dotted, "must name at least one")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(file, dotted, f"expected strings, got {type(item).__name__} {item!r}")
        if key.choices is not None and item not in key.choices:
            raise ConfigError(file, dotted, f"each must be one of {', '.join(map(repr, key.choices))}, got {item!r}")
    if len(set(value)) != len(value):
        raise ConfigError(file, dotted, f"names one twice: {value!r}")


def _hex(value: Any) -> str:
    return f"0x{int(value):02X}"


def _type_name(key: Key) -> str:
    types = key.type if isinstance(key.type, tuple) else (key.type,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table",
             list: "a list of strings"}
    if types == (int, float):
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _walk(file: str, data: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for name, value in data.items():
        dotted = f"{prefix}{name}"
        if dotted in RETIRED:
            out[dotted] = value  # ignored by _build; from_dict lists it in Config.retired
        elif dotted in SCHEMA:
            out[dotted] = _check(file, dotted, SCHEMA[dotted], value)
        elif isinstance(value, dict) and any(k.startswith(dotted + ".") for k in SCHEMA):
            _walk(file, value, dotted + ".", out)
        else:
            raise ConfigError(file, dotted, "unknown key" + _suggest(dotted))


def _suggest(dotted: str) -> str:
    import difflib

    close = difflib.get_close_matches(dotted, SCHEMA.keys(), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build(flat: dict[str, Any], source: str) -> Config:
    tree: dict[str, Any] = {}
    for dotted, key in SCHEMA.items():
        value = flat.get(dotted, key.default)
        if isinstance(value, dict):
            value = dict(value)
        elif isinstance(value, list):
            value = list(value)  # never the schema's own default
        node = tree
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def freeze(path: str, node: dict[str, Any]) -> Section:
        return Section(path, {
            k: (freeze(f"{path}.{k}".lstrip("."), v)
                if isinstance(v, dict) and f"{path}.{k}".lstrip(".") not in FREE_TABLES else v)
            for k, v in node.items()
        })

    frozen = {k: freeze(k, v) for k, v in tree.items()}
    return Config(frozen, source)


def _validate_combinations(file: str, flat: dict[str, Any]) -> None:
    """Checks that involve more than one key."""
    mode = flat.get("hardware.mode", SCHEMA["hardware.mode"].default)
    gpio_contactor = flat.get("contactor.enabled", True)
    if not gpio_contactor and flat.get("controller.model", "none") == "none":
        raise ConfigError(file, "contactor.enabled", "false needs a charge controller (controller.model) to switch "
                                                     "the contactor: without either, nothing would cut the power")
    pins: dict[int, str] = {}
    if mode == "pi":
        for dotted in ("contactor.pin", "contactor.feedback_pin", "inputs.ev_connected_pin",
                       "inputs.stop_button_pin", "rfid.reset_pin", "leds.green_pin", "leds.yellow_pin", "leds.red_pin"):
            if dotted.startswith("leds.") and flat.get("leds.kind", "gyr") == "none":
                continue
            if dotted == "rfid.reset_pin" and not flat.get("rfid.enabled", True):
                continue
            if dotted.startswith("contactor.") and not gpio_contactor:
                continue
            pin = flat.get(dotted, SCHEMA[dotted].default)
            if pin is None:
                continue
            if pin in pins:
                raise ConfigError(file, dotted, f"BCM {pin} is already used by {pins[pin]}")
            pins[pin] = dotted
    key = flat.get("backend.ocpp.authorization_key")
    if key is not None and len(key) < 16:
        raise ConfigError(file, "backend.ocpp.authorization_key", "must be at least 16 characters (OCPP security whitepaper)")
    url = flat.get("backend.ocpp.url")
    if url is not None and not url.startswith(("ws://", "wss://")):
        raise ConfigError(file, "backend.ocpp.url", f"must start with ws:// or wss://, got {url!r}")
    tls_url = flat.get("backend.ocpp.tls_url")
    if tls_url is not None and not tls_url.startswith("wss://"):
        raise ConfigError(file, "backend.ocpp.tls_url", f"must start with wss://, got {tls_url!r}")
    secret = flat.get("backend.mcsp.secret")
    if secret is not None and not (secret.isascii() and secret.isprintable() and secret == secret.strip()
                                   and 0 < len(secret) <= 200):
        # Sent as an MCSP header line (printable ASCII, 256 bytes at most); the value is never echoed.
        raise ConfigError(file, "backend.mcsp.secret",
                          "must be 1-200 printable ASCII characters without leading or trailing spaces")
    url = flat.get("backend.mcsp.url")
    if url is not None and not (url.startswith(("tcp://", "tls://")) or url.startswith("/")):
        raise ConfigError(file, "backend.mcsp.url",
                          f"must be tcp://HOST:PORT, tls://HOST:PORT or a serial device path, got {url!r}")


def _validate_status_page(file: str, flat: dict[str, Any]) -> None:
    listen = flat.get("status_page.listen")
    if listen is not None:
        try:
            split_listen(listen)
        except ValueError as exc:
            raise ConfigError(file, "status_page.listen", str(exc)) from None
    if flat.get("status_page.password") is not None and flat.get("status_page.password_file") is not None:
        raise ConfigError(file, "status_page.password", "set either password or password_file, not both")
    password = flat.get("status_page.password")
    if password is not None and (not password or password != password.strip() or not password.isprintable()):
        raise ConfigError(file, "status_page.password", "must be printable characters without leading or trailing spaces")


def split_listen(text: str) -> tuple[str, int]:
    """"HOST:PORT" (IPv6 as "[::1]:8080") -> (host, port). Raises ValueError naming the problem."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"must be HOST:PORT (e.g. 127.0.0.1:8080 or 0.0.0.0:8080), got {text!r}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"an IPv6 host is written [::1]:8080, got {text!r}")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 host is written in brackets ([::1]:8080), got {text!r}")
    return host, int(port)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    flat: dict[str, Any] = {}
    _walk(source, data, "", flat)
    _validate_combinations(source, flat)
    _validate_status_page(source, flat)
    config = _build(flat, source)
    object.__setattr__(config, "retired", tuple(k for k in flat if k in RETIRED))
    return config


def load(path: str | Path) -> Config:
    """Load and validate a TOML file. Raises ConfigError naming file and key."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(file, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, None, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, None, f"not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(file, None, "not valid TOML: arrays or tables nested too deeply") from None
    return from_dict(data, file)


def defaults(overrides: dict[str, Any] | None = None) -> Config:
    """The defaults, with dotted-key overrides such as {"meter.model": "SDM120"}."""
    data: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return from_dict(data, "<defaults>")


def documented_toml() -> str:
    """config/station.toml: every key with its meaning, type, unit, bounds and default.

    Generated from SCHEMA so that the documentation cannot drift from the
    loader (tests/test_config.py checks the committed file against this).
    """
    out = [
        "# station configuration. Every key, its meaning, type, unit, bounds and default.",
        "# Keys left out take their default; unknown keys and wrong types are errors.",
        "# Generated from station/config.py (python -m station.config > config/station.toml).",
    ]
    section = None
    for dotted, key in SCHEMA.items():
        table, _, leaf = dotted.rpartition(".")
        name: str | None = leaf
        if dotted in FREE_TABLES:
            table, name = dotted, None
        if table != section:
            section = table
            out += ["", f"[{table}]"]
        facts = [_type_name(key).replace("an ", "").replace("a ", "")]
        if key.unit:
            facts.append(f"unit {key.unit}")
        if key.choices:
            facts.append("one of " + ", ".join(_toml_value(c) for c in key.choices))
        if key.min is not None or key.max is not None:
            if (isinstance(key.default, str) or key.type is str) and key.max is not None:
                facts.append(f"at most {int(key.max)} characters")
            elif key.hex:
                facts.append(f"{_hex(key.min)}..{_hex(key.max)}")
            else:
                facts.append(f"{_num(key.min) if key.min is not None else ''}..{_num(key.max) if key.max is not None else ''}")
        if key.optional:
            facts.append("optional")
        out.append(f"# {key.doc}")
        out.append(f"# ({'; '.join(facts)})")
        if name is None:
            out.append('# "16AC936B1692E73A" = "Apartment 1"')
        elif key.default is None:
            out.append(f"# {name} =")
        else:
            out.append(f"{name} = {_hex(key.default) if key.hex else _toml_value(key.default)}")
    return "\n".join(out) + "\n"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


if __name__ == "__main__":
    import sys

    sys.stdout.write(documented_toml())
