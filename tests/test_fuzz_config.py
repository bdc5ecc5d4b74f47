"""The config loader and the scenario loader with hostile input, fuzzed.

Config: random bytes, random TOML documents, and random values of every TOML type for every key
of the SCHEMA. The loader returns a Config whose every value keeps its key's type and bounds, or
raises ConfigError naming the file (and the key, unless the file itself is unreadable or not
TOML). Scenarios: random documents raise ScenarioError and nothing else, and what parses can run.
"""

from __future__ import annotations

import datetime as dt
import math
import string

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from station import config as configmod
from station.config import SCHEMA
from station.errors import ConfigError, ScenarioError
from station.sim import scenario

FILE_PROBLEMS = ("cannot read", "not UTF-8", "not valid TOML")


# --- a small TOML writer (the loader is tomllib; there is no writer in the standard library) ----

def toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(flat: dict[str, object]) -> str:
    """Dotted keys written as `[table]` sections; values inline."""
    tables: dict[str, list[str]] = {}
    for dotted, value in flat.items():
        table, _, name = dotted.rpartition(".")
        tables.setdefault(table, []).append(f"{toml_string(name)} = {toml_value(value)}")
    out = []
    for table, lines in tables.items():
        if table:
            out.append("[" + ".".join(toml_string(p) for p in table.split(".")) + "]")
        out += lines
    return "\n".join(out) + "\n"


scalar = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(lambda d: d.replace(microsecond=0)),
    st.dates(),
)
toml_any = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=8),
                                                                        inner, max_size=3)),
                        max_leaves=6)


def near_bounds(key) -> st.SearchStrategy:
    """Values around a key's limits and choices, so that most examples are nearly valid."""
    options = [toml_any, st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 2**63 - 1, "", True])]
    if key.choices:
        options.append(st.sampled_from(key.choices))
    for bound in (key.min, key.max):
        if bound is not None:
            options.append(st.sampled_from([bound, bound - 1, bound + 1, bound * 2, -bound]))
            if isinstance(key.default, float):
                options.append(st.floats(min_value=bound - 1, max_value=bound + 1))
    return st.one_of(*options)


def check_value(dotted: str, value) -> None:
    """A value the loader accepted keeps its key's promises."""
    key = SCHEMA[dotted]
    if value is None:
        assert key.optional, dotted
        return
    types = key.type if isinstance(key.type, tuple) else (key.type,)
    assert isinstance(value, types) and (bool in types or not isinstance(value, bool)), (dotted, value)
    if key.choices is not None and isinstance(value, list):  # a list key: items of the choices, none twice
        assert value and len(set(value)) == len(value) and set(value) <= set(key.choices), (dotted, value)
    elif key.choices is not None:
        assert value in key.choices, (dotted, value)
    if isinstance(value, float):
        assert math.isfinite(value), (dotted, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert key.min is None or value >= key.min, (dotted, value)
        assert key.max is None or value <= key.max, (dotted, value)


def load_or_error(tmp_path, text: str | bytes):
    path = tmp_path / "station.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    try:
        cfg = configmod.load(path)
    except ConfigError as exc:
        assert exc.file == str(path) and str(path) in str(exc)
        assert exc.key is not None or exc.problem.startswith(FILE_PROBLEMS), str(exc)
        return exc
    for dotted in SCHEMA:
        if dotted not in configmod.FREE_TABLES:
            check_value(dotted, cfg.get(dotted))
    return cfg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes_are_a_config_error_naming_the_file(tmp_path, data):
    load_or_error(tmp_path, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.sampled_from(sorted(SCHEMA) + ["station.nam", "meter.model.x", "backend", "x.y.z"]),
                           toml_any, max_size=6))
def test_random_documents_load_or_name_file_and_key(tmp_path, doc):
    # Keys that are both a table and a value (meter.model and meter.model.x) cannot be written.
    assume(not any(a != b and b.startswith(a + ".") for a in doc for b in doc))
    result = load_or_error(tmp_path, toml_document(doc))
    if isinstance(result, ConfigError):
        assert result.key is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), dotted=st.sampled_from(sorted(k for k in SCHEMA if k not in configmod.FREE_TABLES)))
def test_every_key_with_random_values_is_valid_or_named(tmp_path, data, dotted):
    value = data.draw(near_bounds(SCHEMA[dotted]))
    result = load_or_error(tmp_path, toml_document({dotted: value}))
    if isinstance(result, ConfigError):
        assert result.key is not None and result.key.startswith(dotted.split(".")[0]), str(result)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tags=st.dictionaries(st.text(max_size=20), toml_any, max_size=4))
def test_the_free_tag_table_takes_strings_only(tmp_path, tags):
    doc = "[backend.local.tags]\n" + "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in tags.items())
    result = load_or_error(tmp_path, doc)
    if isinstance(result, ConfigError):
        assert result.key is not None and result.key.startswith("backend.local.tags")
    else:
        assert all(isinstance(v, str) for v in result.get("backend.local.tags").values())


def test_non_finite_numbers_are_refused():
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ConfigError, match="finite"):
            configmod.defaults({"charging.meter_interval_s": bad})


# --- scenario files -----------------------------------------------------------------------------

step_value = st.one_of(toml_any, st.sampled_from(["16AC936B1692E73A", "D64FC93B", "zz", "", "Charging", "Available"]))
step = st.one_of(
    st.dictionaries(st.sampled_from(["action", "uid", "hold_s", "watts", "wh", "seconds", "state", "within", "up", "x"]),
                    step_value, max_size=4),
    st.fixed_dictionaries({"action": st.sampled_from(sorted(scenario.STEP_KEYS))},
                          optional={"uid": step_value, "watts": step_value, "wh": step_value, "seconds": step_value,
                                    "state": step_value, "within": step_value, "up": step_value, "hold_s": step_value}),
    toml_any,
)


@settings(max_examples=300, deadline=None)
@given(doc=st.fixed_dictionaries({}, optional={"step": st.one_of(st.lists(step, max_size=4), toml_any),
                                               "settle_s": toml_any, "other": toml_any}))
@example(doc={"step": [{"action": []}]})  # found: TypeError (a list is not hashable)
@example(doc={"step": [False]})  # found: AttributeError
def test_scenarios_parse_or_raise_scenario_error_only(doc):
    try:
        sc = scenario.parse(doc, "fuzz.toml")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz.toml")
        return
    # What parses can run: values the runner uses are sane.
    assert math.isfinite(sc.settle_s) and sc.settle_s >= 0
    for s in sc.steps:
        for key in ("hold_s", "watts", "seconds", "within"):
            if key in s:
                assert math.isfinite(s[key]) and s[key] >= 0, s
        if s["action"] == "tap":
            from station.core.tags import parse_uid

            parse_uid(s["uid"])  # a UID the emulated reader can present


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_scenario_files_of_random_bytes_raise_scenario_error(tmp_path, data):
    path = tmp_path / "s.toml"
    path.write_bytes(data)
    try:
        scenario.load(path)
    except ScenarioError as exc:
        assert str(path) in str(exc)
