"""OCPP-J payload validation against the official JSON schemas, and the dialects (1.6, 2.0.1).

Theory of operation
-------------------
The `ocpp` package ships the official schemas of every OCPP version as JSON
files; a `Dialect` names one folder of them, how request and response files
are named there, and the error codes that version uses. The set of actions a
dialect knows is the set of its request schema files.

The schemas use a small part of JSON Schema draft 4 (type, properties,
additionalProperties, required, enum, maxLength, minimum/maximum,
multipleOf, items, minItems/maxItems, format date-time and local $ref).
`Validator` implements exactly that part instead of importing `jsonschema`:
the library and what it imports (referencing, rpds, attrs, the bundled
meta-schemas) cost about 4 MiB of RSS at start-up on a station whose budget
is 35 MiB, and it has to be imported before the first frame arrives. The
rules follow jsonschema's Draft4Validator, including which error it calls
the best when a payload breaks several rules (shallowest first, then the
path, then an error whose instance does not even have the expected type), so
the CALLERROR code is the one jsonschema would give; tests/backends/ocpp/
test_ocpp_schema.py checks that against jsonschema over every 1.6 and 2.0.1
schema with valid and mutated payloads. Keywords the official schemas do not
use are refused when a schema is loaded, so a new schema version with a new
keyword cannot be validated half.

Numbers: floats are compared exactly as JSON text (`Decimal(repr(x))`), so
`multipleOf: 0.1` accepts 16.5 as the schemas mean it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

# RFC 3339 date-time as the official schemas mean it (a time zone is required).
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_IGNORED = frozenset({"$schema", "$id", "id", "title", "description", "comment", "javaType", "default",
                      "definitions", "additionalItems"})  # additionalItems only matters for tuple `items`
_CHECKED = frozenset({"$ref", "type", "properties", "additionalProperties", "required", "enum", "maxLength",
                      "minLength", "minimum", "maximum", "multipleOf", "items", "minItems", "maxItems", "format"})


class SchemaUnsupported(ValueError):
    """A schema uses a keyword this validator does not implement."""


def is_date_time(value: object) -> bool:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_type(value: object, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if name == "integer":  # draft 4: 1.0 is a number, not an integer
        return isinstance(value, int)
    if name == "number":
        return isinstance(value, (int, float, Decimal))
    if name == "null":
        return value is None
    return False


def _matches(value: object, types: object) -> bool:
    if isinstance(types, str):
        return _is_type(value, types)
    if isinstance(types, list):
        return any(_is_type(value, t) for t in types)
    return False


def _equal(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _exact(number: int | float | Decimal) -> int | Decimal:
    """A number as its JSON text says it (floats through their shortest repr)."""
    return Decimal(repr(number)) if isinstance(number, float) else number


class SchemaError(NamedTuple):
    keyword: str  # the JSON Schema keyword that failed, e.g. "type"
    path: tuple[str | int, ...]  # where in the payload
    message: str
    type_matches: bool  # the failing value has the type its schema declares

    def rank(self) -> tuple[int, tuple[str | int, ...], bool]:
        """jsonschema's `relevance`: shallow first, then the path, then a value of the wrong type."""
        return (-len(self.path), self.path, not self.type_matches)


class Validator:
    """One schema (a parsed JSON document) and the rules above."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.root = schema
        self._check_keywords(schema)

    def _check_keywords(self, node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("properties", "definitions") and isinstance(value, dict):
                    for sub in value.values():
                        self._check_keywords(sub)
                elif key not in _CHECKED and key not in _IGNORED:
                    raise SchemaUnsupported(f"schema keyword {key!r} is not implemented")
                elif key == "items" and not isinstance(value, dict):
                    raise SchemaUnsupported("tuple `items` is not implemented")
                elif key == "additionalProperties" and not isinstance(value, bool):
                    raise SchemaUnsupported("schema-valued additionalProperties is not implemented")
                elif key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
                    raise SchemaUnsupported(f"$ref {value!r}: only references inside the schema are implemented")
                elif key in ("items", "additionalItems"):
                    self._check_keywords(value)

    def _resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def errors(self, value: object) -> list[SchemaError]:
        return list(self._errors(self.root, value, ()))

    def best_error(self, value: object) -> SchemaError | None:
        """The error jsonschema's best_match would pick (the first of the most relevant), or None."""
        best: SchemaError | None = None
        for error in self._errors(self.root, value, ()):
            if best is None or error.rank() > best.rank():
                best = error
        return best

    def _errors(self, schema: dict[str, Any], value: object, path: tuple[str | int, ...]) -> Iterator[SchemaError]:
        ref = schema.get("$ref")
        if ref is not None:  # draft 4: a $ref replaces its siblings
            yield from self._errors(self._resolve(ref), value, path)
            return
        for keyword, rule in schema.items():
            if keyword in ("properties", "items"):
                if keyword == "properties" and isinstance(value, dict):
                    for name, sub in rule.items():
                        if name in value:
                            yield from self._errors(sub, value[name], (*path, name))
                elif keyword == "items" and isinstance(value, list):
                    for index, item in enumerate(value):
                        yield from self._errors(rule, item, (*path, index))
                continue
            message = self._fails(keyword, rule, schema, value)
            if message is not None:
                yield SchemaError(keyword, path, message, "type" in schema and _matches(value, schema["type"]))

    @staticmethod
    def _fails(keyword: str, rule: Any, schema: Mapping[str, Any], value: Any) -> str | None:
        """Why `value` breaks `keyword: rule`, or None (each keyword ignores types it is not about)."""
        if keyword == "type":
            return None if _matches(value, rule) else f"{value!r:.60} is not of type {rule!r}"
        if keyword == "required":
            if isinstance(value, dict):
                missing = [name for name in rule if name not in value]
                if missing:
                    return f"{missing[0]!r} is a required property"
            return None
        if keyword == "additionalProperties":
            if rule is False and isinstance(value, dict):
                extra = sorted(k for k in value if k not in schema.get("properties", {}))
                if extra:
                    return f"additional properties are not allowed ({', '.join(map(repr, extra))} unexpected)"
            return None
        if keyword == "enum":
            return None if any(_equal(e, value) for e in rule) else f"{value!r:.60} is not one of {rule!r:.120}"
        if keyword == "format":
            if rule == "date-time" and not is_date_time(value):
                return f"{value!r:.60} is not a 'date-time'"
            return None
        if keyword in ("maxLength", "minLength"):
            if isinstance(value, str) and (len(value) > rule if keyword == "maxLength" else len(value) < rule):
                return f"{value!r:.60} is too {'long' if keyword == 'maxLength' else 'short'} (limit {rule})"
            return None
        if keyword in ("minItems", "maxItems"):
            if isinstance(value, list) and (len(value) < rule if keyword == "minItems" else len(value) > rule):
                return f"{len(value)} items, {keyword} is {rule}"
            return None
        if keyword in ("minimum", "maximum", "multipleOf"):
            if not _is_type(value, "number"):
                return None
            number = _exact(value)
            if keyword == "minimum" and number < rule:
                return f"{value!r} is less than the minimum of {rule}"
            if keyword == "maximum" and number > rule:
                return f"{value!r} is more than the maximum of {rule}"
            if keyword == "multipleOf":
                try:
                    if number % _exact(rule) != 0:
                        return f"{value!r} is not a multiple of {rule}"
                except InvalidOperation:
                    return f"{value!r} is not a multiple of {rule}"
            return None
        return None


# ---------------------------------------------------------------- dialects

_PROPERTY = "PropertyConstraintViolation"
_TYPE = "TypeConstraintViolation"


@dataclass(frozen=True)
class Dialect:
    """One OCPP-J version: its subprotocol, its schema folder and its CALLERROR codes."""

    subprotocol: str  # websocket subprotocol, e.g. "ocpp1.6"
    schema_dir: Path
    request_file: str  # file name pattern of a request schema, e.g. "{}.json"
    response_file: str  # e.g. "{}Response.json"
    formation: str  # code for a payload that is not what the action's structure says
    occurrence: str  # code for too few / too many array items
    codes: Mapping[str, str] = field(default_factory=dict)  # keyword -> code, where not the defaults below

    def code(self, keyword: str) -> str:
        """The CALLERROR code for a failed schema keyword."""
        if keyword in self.codes:
            return self.codes[keyword]
        if keyword == "type":
            return _TYPE
        if keyword in ("minItems", "maxItems"):
            return self.occurrence
        if keyword in ("enum", "maxLength", "minLength", "minimum", "maximum", "multipleOf"):
            return _PROPERTY
        return self.formation  # required, additionalProperties, format

    @cached_property
    def actions(self) -> frozenset[str]:
        """Every action of the version (one request schema each)."""
        prefix, _, suffix = self.request_file.partition("{}")
        response = self.response_file.replace("{}", "")
        names = set()
        for path in self.schema_dir.glob(prefix + "*" + suffix):
            name = path.name[len(prefix):len(path.name) - len(suffix)]
            if name and not (self.request_file == "{}.json" and path.name.endswith(response)):
                names.add(name)
        return frozenset(names)

    @cached_property
    def _validators(self) -> dict[str, Validator]:
        return {}

    def schema(self, action: str, response: bool) -> dict[str, Any]:
        name = (self.response_file if response else self.request_file).format(action)
        # Decimal floats: a schema's multipleOf 0.1 must be exact.
        data = json.loads((self.schema_dir / name).read_text(encoding="utf-8-sig"), parse_float=Decimal)
        if not isinstance(data, dict):
            raise SchemaUnsupported(f"{name} is not a JSON object")
        return data

    def validator(self, action: str, response: bool) -> Validator:
        key = action + ("/response" if response else "/request")
        found = self._validators.get(key)
        if found is None:
            found = self._validators[key] = Validator(self.schema(action, response))
        return found

    def check(self, action: str, payload: object, response: bool) -> tuple[str, str] | None:
        """None, or (CALLERROR code, what is wrong) for a payload of `action`."""
        if not isinstance(payload, dict):
            return self.formation, "payload is not a JSON object"
        error = self.validator(action, response).best_error(payload)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.path) or "payload"
        return self.code(error.keyword), f"{where}: {error.message}"[:200]


def _ocpp_schemas(version: str) -> Path:
    import ocpp  # the package's data files only (its __init__ imports nothing)

    return Path(ocpp.__file__).parent / version / "schemas"


OCPP16 = Dialect("ocpp1.6", _ocpp_schemas("v16"), "{}.json", "{}Response.json",
                 formation="FormationViolation", occurrence="OccurenceConstraintViolation")  # 1.6 spelling
OCPP201 = Dialect("ocpp2.0.1", _ocpp_schemas("v201"), "{}Request.json", "{}Response.json",
                  formation="FormatViolation", occurrence="OccurrenceConstraintViolation")
