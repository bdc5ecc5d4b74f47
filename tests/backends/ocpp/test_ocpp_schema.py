"""The station's schema validator against jsonschema (the reference implementation), over every official schema.

station.backends.ocppj.schema validates OCPP payloads without importing
jsonschema (start-up memory). This file proves it says what jsonschema's
Draft4Validator says, for every 1.6 and 2.0.1 schema the `ocpp` package
ships, requests and responses: for valid payloads built from each schema,
and for payloads with one to three random faults (a required field dropped,
a value of another type, an unknown field, a value outside its enum, too
long, out of range, not a multiple, a bad date, too few or too many items),
the same verdict, the same failing keyword and the same path as jsonschema's
`best_match`, which is what decides the CALLERROR code.
"""

from __future__ import annotations

import copy
import json
import random
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from jsonschema.exceptions import best_match

from station.backends.ocppj.schema import OCPP16, OCPP201, Dialect, SchemaUnsupported, Validator, is_date_time

_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(is_date_time)
WRONG = ["x", 7, 2.5, True, None, [], {}]


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    return schema


def sample(schema: dict, root: dict, rnd: random.Random, depth: int = 0) -> Any:
    """A valid value for `schema`."""
    schema = _resolve(schema, root)
    if "enum" in schema:
        return rnd.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", [])
        out = {}
        for name, sub in props.items():
            if name in required or (depth < 3 and rnd.random() < 0.5):
                out[name] = sample(sub, root, rnd, depth + 1)
        return out
    if kind == "array":
        lo = schema.get("minItems", 0)
        hi = min(schema.get("maxItems", lo + 2), lo + 2)
        return [sample(schema["items"], root, rnd, depth + 1) for _ in range(rnd.randint(lo, hi))] \
            if "items" in schema else []
    if kind == "string":
        if schema.get("format") == "date-time":
            return rnd.choice(["2026-01-01T00:00:00Z", "2026-05-01T12:30:00.123+02:00"])
        n = min(schema.get("maxLength", 12), 12)
        return "".join(rnd.choice("abcXYZ019") for _ in range(rnd.randint(min(1, n), n)))
    if kind == "integer":
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 1000)
        return rnd.randint(int(lo), int(hi))
    if kind == "number":
        if "multipleOf" in schema:
            return float(Decimal(rnd.randint(0, 500)) * Decimal(str(schema["multipleOf"])))
        return rnd.choice([0, 3, 2.5, 230.1])
    if kind == "boolean":
        return rnd.random() < 0.5
    return None


def _spots(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value inside `value` (the root included)."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _spots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _spots(v, (*path, i))
    return out


def _schema_at(schema: dict, root: dict, path: tuple) -> dict | None:
    schema = _resolve(schema, root)
    for part in path:
        if isinstance(part, int):
            schema = schema.get("items")
        else:
            schema = schema.get("properties", {}).get(part)
        if schema is None:
            return None
        schema = _resolve(schema, root)
    return schema


def mutate(payload: Any, schema: dict, rnd: random.Random) -> Any:
    """One random fault somewhere in the payload."""
    path = rnd.choice(_spots(payload))
    sub = _schema_at(schema, schema, path) or {}
    parent: Any = None
    target = payload
    for part in path:
        parent, target = target, target[part]

    def replace(new: Any) -> Any:
        nonlocal payload
        if parent is None:
            payload = new
        else:
            parent[path[-1]] = new
        return payload

    how = rnd.choice(["type", "drop", "extra", "enum", "long", "range", "multiple", "date", "items", "wrong"])
    if how == "drop" and isinstance(target, dict) and target:
        del target[rnd.choice(sorted(target))]
        return payload
    if how == "extra" and isinstance(target, dict):
        target[rnd.choice(["zzExtra", "aaExtra", "Extra"])] = rnd.choice(WRONG)
        return payload
    if how == "enum" and "enum" in sub:
        return replace(rnd.choice(["Nope", "", sub["enum"][0].lower() if isinstance(sub["enum"][0], str) else 99]))
    if how == "long" and "maxLength" in sub:
        return replace("L" * (sub["maxLength"] + rnd.choice([1, 50])))
    if how == "range" and sub.get("type") in ("integer", "number"):
        return replace(rnd.choice([-1, -1000, 10**12, 1.5, -0.5]))
    if how == "multiple" and "multipleOf" in sub:
        return replace(rnd.choice([0.05, 16.55, 1.01]))
    if how == "date" and sub.get("format") == "date-time":
        return replace(rnd.choice(["tomorrow", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", 5]))
    if how == "items" and sub.get("type") == "array":
        return replace(rnd.choice([[], [target[0]] * 60 if isinstance(target, list) and target else [None], [None, 5], "x"]))
    if how == "wrong" and parent is not None:
        return replace(rnd.choice(WRONG))
    return replace(rnd.choice(WRONG) if how != "type" else rnd.choice([[], {}, "1", 1, None]))


def reference(schema: dict, payload: Any) -> tuple[str, tuple] | None:
    data = json.loads(json.dumps(payload), parse_float=Decimal)
    error = best_match(jsonschema.Draft4Validator(schema, format_checker=_FORMATS).iter_errors(data))
    return None if error is None else (error.validator, tuple(error.absolute_path))


def ours(validator: Validator, payload: Any) -> tuple[str, tuple] | None:
    error = validator.best_error(json.loads(json.dumps(payload)))  # as a frame arrives: floats, no Decimals
    return None if error is None else (error.keyword, error.path)


def _cases(dialect: Dialect) -> list[tuple[str, bool]]:
    return [(a, r) for a in sorted(dialect.actions) for r in (False, True)]


@pytest.mark.parametrize("dialect", [OCPP16, OCPP201], ids=["1.6", "2.0.1"])
def test_same_verdict_as_jsonschema_on_every_schema(dialect: Dialect):
    rnd = random.Random(20261128)
    compared = faulty = 0
    for action, response in _cases(dialect):
        schema = dialect.schema(action, response)
        validator = dialect.validator(action, response)
        for _ in range(40):
            payload = sample(schema, schema, rnd)
            assert reference(schema, payload) is None, (action, payload)
            assert ours(validator, payload) is None, (action, response, payload)
            for _ in range(rnd.randint(1, 3)):
                payload = mutate(copy.deepcopy(payload), schema, rnd)
            expected = reference(schema, payload)
            assert ours(validator, payload) == expected, (action, response, payload)
            compared += 1
            faulty += expected is not None
    assert compared >= 40 * len(_cases(dialect)) and faulty > compared // 2, (compared, faulty)


def test_every_action_of_each_version_is_found():
    assert len(OCPP16.actions) == 39 and {"BootNotification", "SignedUpdateFirmware", "GetLog"} <= OCPP16.actions
    assert "BootNotificationResponse" not in OCPP16.actions
    assert len(OCPP201.actions) == 64 and "TransactionEvent" in OCPP201.actions


def test_codes_of_each_version():
    assert OCPP16.check("Reset", {"type": 5}, False)[0] == "TypeConstraintViolation"
    assert OCPP16.check("Reset", {}, False)[0] == "FormationViolation"
    assert OCPP16.check("Reset", {"type": "Lukewarm"}, False)[0] == "PropertyConstraintViolation"
    assert OCPP16.check("Reset", ["Soft"], False)[0] == "FormationViolation"
    assert OCPP201.check("Reset", {"type": "Immediate", "x": 1}, False)[0] == "FormatViolation"
    assert OCPP201.check("GetLocalListVersion", {}, False) is None


def test_a_keyword_the_validator_does_not_know_is_refused():
    with pytest.raises(SchemaUnsupported):
        Validator({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x$"}}})
