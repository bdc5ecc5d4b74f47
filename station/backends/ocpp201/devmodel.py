"""The OCPP 2.0.1 device model: GetVariables, SetVariables, reports; values kept in the journal.

Theory of operation
-------------------
The variables are declared in variables.py. This class answers for them:

* GetVariables (B06): the Actual value (B06.FR.10; Actual when no type is
  given, B06.FR.11); UnknownComponent / UnknownVariable when the station has
  no such component or variable (B06.FR.06/07, B06.FR.15 for an instance);
  any other attribute type NotSupportedAttributeType (B06.FR.08); a
  WriteOnly value (SecurityCtrlr.BasicAuthPassword) is never given:
  Rejected (B06.FR.09). More items than ItemsPerMessage[GetVariables]: the
  handler answers CALLERROR OccurrenceConstraintViolation (B06.FR.16).
* SetVariables (B05): Accepted (B05.FR.10); RebootRequired when the value
  takes effect after a reboot (it is stored all the same); Rejected for a
  ReadOnly variable (B05.FR.09) or a value that is not valid for its type,
  limits or values list (B05.FR.07/08); UnknownComponent / UnknownVariable /
  NotSupportedAttributeType (B05.FR.04-06).
  An accepted value is stored in the journal's settings ("ocpp201.variables",
  only what differs from the default), so a restart keeps it, and the
  version is told (`on_change`).
* reports (B07 GetBaseReport, B08 GetReport): the variables a report base or
  a set of component/variable and criteria names, as ReportData.

Values the station itself knows (availability, the clock, counters, the
security state) are read through `live`; values kept elsewhere (the CPO name,
the password: station/backends/ocpp/security.py) are written through
`setters`.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from .variables import MEASURANDS, RO, RW, VARIABLES, WO, Var

log = logging.getLogger(__name__)

STORE_KEY = "ocpp201.variables"
_INT = re.compile(r"^[+-]?\d+$")
Component = dict[str, Any]  # ComponentType on the wire
Variable = dict[str, Any]  # VariableType


def _matches(var: Var, component: Component, variable: Variable | None, loose: bool = False) -> bool:
    """Does `var` answer to this component (and variable)? `loose` (GetReport): an absent evse, connector
    or instance matches every one (B08: report all instances)."""
    if var.component != component.get("name"):
        return False
    if component.get("instance") is not None or not loose:
        if component.get("instance") is not None:  # no component of this station has instances
            return False
    evse = component.get("evse")
    if evse is None:
        if not loose and var.evse is not None:
            return False
    else:
        if var.evse != evse.get("id"):
            return False
        if evse.get("connectorId") is not None:
            if var.connector != evse["connectorId"]:
                return False
        elif not loose and var.connector is not None:
            return False
    if variable is None:
        return True
    return var.name == variable.get("name") and (var.instance == variable.get("instance")
                                                 or (loose and variable.get("instance") is None))


def component_json(var: Var) -> Component:
    out: Component = {"name": var.component}
    if var.evse is not None:
        out["evse"] = {"id": var.evse, **({"connectorId": var.connector} if var.connector is not None else {})}
    return out


def variable_json(var: Var) -> Variable:
    return {"name": var.name, **({"instance": var.instance} if var.instance else {})}


class DeviceModel:
    def __init__(self, store: Any, live: Callable[[Var], str], measurands: Callable[[], frozenset[str]]) -> None:
        self.store = store
        self._live = live
        self._measurands = measurands
        self.vars: list[Var] = list(VARIABLES)
        self._by_key = {v.key: v for v in self.vars}
        saved = store.get_json(STORE_KEY, {}) if store is not None else {}
        self._values = {v.key: v.default for v in self.vars}
        for key, value in (saved or {}).items():
            if key in self._by_key and self._by_key[key].mutability == RW:
                self._values[key] = str(value)
        self.setters: dict[str, Callable[[str], bool]] = {}  # key -> stores the value elsewhere
        self.on_change: Callable[[Var, str], None] | None = None

    # ================================================================ typed reads (component, name, instance)
    def var(self, component: str, name: str, instance: str | None = None) -> Var:
        return self._by_key[Var(component, name, "", "", instance=instance).key]

    def value(self, var: Var) -> str:
        return self._live(var) if var.live else self._values[var.key]

    def get(self, component: str, name: str, instance: str | None = None) -> str:
        return self.value(self.var(component, name, instance))

    def bool(self, component: str, name: str) -> bool:
        return self.get(component, name).lower() == "true"

    def int(self, component: str, name: str, instance: str | None = None) -> int:
        return int(self.get(component, name, instance))

    def list(self, component: str, name: str) -> builtins.list[str]:
        return [v for v in self.get(component, name).split(",") if v]

    def values_list(self, var: Var) -> tuple[str, ...]:
        if var.values == MEASURANDS:
            return tuple(sorted(self._measurands()))
        return var.values

    # ================================================================ B06 GetVariables
    def get_variables(self, data: Iterable[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        return [self._get_one(d) for d in data]

    def _find(self, component: Component, variable: Variable) -> tuple[Var | None, str]:
        named = [v for v in self.vars if _matches(v, component, None)]
        if not named:
            return None, "UnknownComponent"
        for v in named:
            if _matches(v, component, variable):
                return v, "Accepted"
        return None, "UnknownVariable"

    def _get_one(self, d: dict[str, Any]) -> dict[str, Any]:
        attribute = d.get("attributeType", "Actual")
        out: dict[str, Any] = {"component": d["component"], "variable": d["variable"]}
        if "attributeType" in d:
            out["attributeType"] = attribute
        var, status = self._find(d["component"], d["variable"])
        if var is None:
            return {**out, "attributeStatus": status}
        if attribute != "Actual":
            return {**out, "attributeStatus": "NotSupportedAttributeType"}
        if var.mutability == WO:
            return {**out, "attributeStatus": "Rejected"}
        return {**out, "attributeStatus": "Accepted", "attributeValue": self.value(var)[:2500]}

    # ================================================================ B05 SetVariables
    def set_variables(self, data: Iterable[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        return [self._set_one(d) for d in data]

    def _set_one(self, d: dict[str, Any]) -> dict[str, Any]:
        attribute = d.get("attributeType", "Actual")
        out: dict[str, Any] = {"component": d["component"], "variable": d["variable"]}
        if "attributeType" in d:
            out["attributeType"] = attribute
        var, status = self._find(d["component"], d["variable"])
        if var is None:
            return {**out, "attributeStatus": status}
        if attribute != "Actual":
            return {**out, "attributeStatus": "NotSupportedAttributeType"}
        if var.mutability == RO:
            return {**out, "attributeStatus": "Rejected", "attributeStatusInfo": {"reasonCode": "ReadOnly"}}
        value = self._validate(var, str(d["attributeValue"]))
        if value is None:
            return {**out, "attributeStatus": "Rejected", "attributeStatusInfo": {"reasonCode": "InvalidValue"}}
        setter = self.setters.get(var.key)
        if setter is not None:
            if not setter(value):
                return {**out, "attributeStatus": "Rejected", "attributeStatusInfo": {"reasonCode": "InvalidValue"}}
        else:
            self._store(var, value)
        if self.on_change is not None:
            self.on_change(var, value)
        return {**out, "attributeStatus": "RebootRequired" if var.reboot else "Accepted"}

    def set(self, component: str, name: str, value: str, instance: str | None = None) -> None:
        """The station sets a value itself (e.g. the heartbeat interval BootNotification gave)."""
        self._store(self.var(component, name, instance), value)

    def _store(self, var: Var, value: str) -> None:
        self._values[var.key] = value
        if self.store is not None:
            self.store.put_json(STORE_KEY, {k: v for k, v in self._values.items()
                                            if self._by_key[k].mutability == RW and v != self._by_key[k].default})

    def _validate(self, var: Var, text: str) -> str | None:
        """The value as stored, or None when it is not valid for the variable."""
        value = text.strip()
        if len(text) > 1000:  # DeviceDataCtrlr.ConfigurationValueSize
            return None
        if var.kind == "boolean":
            return value.lower() if value.lower() in ("true", "false") else None
        if var.kind in ("integer", "decimal"):
            try:
                number: float = int(value) if var.kind == "integer" and _INT.match(value) else float(value)
            except ValueError:
                return None
            if var.kind == "integer" and not _INT.match(value):
                return None
            if (var.min is not None and number < var.min) or (var.max is not None and number > var.max):
                return None
            return str(int(number)) if var.kind == "integer" else value
        if var.kind in ("OptionList", "MemberList", "SequenceList"):
            allowed = self.values_list(var)
            items = [v.strip() for v in value.split(",")] if value else []
            if var.kind == "OptionList":
                return value if value in allowed else None
            if any(i not in allowed for i in items) or len(set(items)) != len(items):
                return None
            return ",".join(items)
        if var.kind == "string":
            if (var.max is not None and len(text) > var.max) or (var.min is not None and len(text) < var.min):
                return None
            return text
        return None  # dateTime: read-only here

    # ================================================================ B07 / B08 reports
    def base_report(self, base: str) -> builtins.list[Var]:
        """GetBaseReport: ConfigurationInventory (what the operator can set, B07.FR.07), FullInventory
        (everything, B07.FR.08), SummaryInventory (availability and condition of the station, its EVSE
        and connector, B07.FR.09)."""
        if base == "ConfigurationInventory":
            return [v for v in self.vars if v.mutability in (RW, WO)]
        if base == "SummaryInventory":
            return [v for v in self.vars if v.component in ("ChargingStation", "EVSE", "Connector")
                    and v.name in ("AvailabilityState", "Available", "Problem")]
        return list(self.vars)

    def custom_report(self, component_variables: builtins.list[dict[str, Any]] | None,
                      criteria: builtins.list[str] | None) -> builtins.list[Var]:
        """GetReport: the variables named (an absent variable: all of the component, B08.FR.20; an absent
        instance: all instances, B08.FR.21; an absent evse or connector: every one, B08.FR.22/23), of the
        components that meet at least one criterion given (B08.FR.13), B08.FR.05/11."""
        chosen = self.vars
        if component_variables:
            chosen = [v for v in self.vars if any(_matches(v, cv["component"], cv.get("variable"), loose=True)
                                                   for cv in component_variables)]
        if criteria:
            chosen = [v for v in chosen if any(self._meets(v, c) for c in criteria)]
        return chosen

    def _meets(self, var: Var, criterion: str) -> builtins.bool:
        """B08.FR.07-09: a component whose variable Active / Available / Enabled is true, or that has no
        such variable; B08.FR.10: a component whose variable Problem is true."""
        found = [v for v in self.vars if v.component == var.component and v.evse == var.evse
                 and v.connector == var.connector and v.name == criterion and v.instance is None]
        if not found:
            return criterion != "Problem"
        return self.value(found[0]).lower() == "true"

    def report_data(self, var: Var) -> dict[str, Any]:
        attribute: dict[str, Any] = {"type": "Actual", "mutability": var.mutability,
                                     "persistent": var.mutability != RO or not var.live,
                                     "constant": var.mutability == RO and not var.live}
        if var.mutability != WO:
            attribute["value"] = self.value(var)[:2500]
        characteristics: dict[str, Any] = {"dataType": var.kind, "supportsMonitoring": False}
        if var.unit:
            characteristics["unit"] = var.unit
        if var.kind in ("integer", "decimal"):
            if var.min is not None:
                characteristics["minLimit"] = var.min
            if var.max is not None:
                characteristics["maxLimit"] = var.max
        values = self.values_list(var)
        if values:
            characteristics["valuesList"] = ",".join(values)[:1000]
        return {"component": component_json(var), "variable": variable_json(var), "variableAttribute": [attribute],
                "variableCharacteristics": characteristics}

    def settings_text(self) -> str:
        """Every readable value, one a line (for a diagnostics archive; never the password)."""
        return "\n".join(f"{v.key}={self.value(v) if v.mutability != WO else '(write-only)'}" for v in self.vars) + "\n"
