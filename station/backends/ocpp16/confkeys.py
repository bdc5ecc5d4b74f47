"""The OCPP 1.6 configuration keys: declared once, validated, persisted.

Every standard key of the profiles this charge point supports is declared in
KEYS below with its type, access and default (OCPP 1.6 edition 2, chapter 9).
Optional keys that would only pretend (BlinkRepeat, LightIntensity: there is
no such hardware) are left out, so GetConfiguration lists them as unknown
and ChangeConfiguration answers NotSupported, which is what the spec wants
for a key a charge point does not implement.

Values are kept as the strings OCPP carries. Changed values are stored in
the station's store under "ocpp.config" (only what differs from the
default), so a restart keeps what the central system set.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STORE_KEY = "ocpp.config"

PROFILES = "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
PHASE_ROTATIONS = {"NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR"}
MAX_CSL = 8  # ...MaxLength of the measurand lists


@dataclass(frozen=True)
class KeyDef:
    name: str
    kind: str  # "bool" | "int" | "csl" | "rotation"
    default: str
    readonly: bool = False
    min: int = 0
    max: int | None = None
    max_items: int | None = None
    measurands: bool = False  # a CSL of measurands: only what the meter has


def _b(name: str, default: bool, readonly: bool = False) -> KeyDef:
    return KeyDef(name, "bool", "true" if default else "false", readonly)


def _i(name: str, default: int, readonly: bool = False, min: int = 0, max: int | None = None) -> KeyDef:
    return KeyDef(name, "int", str(default), readonly, min, max)


def _m(name: str, default: str) -> KeyDef:
    return KeyDef(name, "csl", default, max_items=MAX_CSL, measurands=True)


_KEYS = [
    # --- Core ------------------------------------------------------------------
    _b("AllowOfflineTxForUnknownId", False),
    _b("AuthorizationCacheEnabled", True),
    _b("AuthorizeRemoteTxRequests", False),
    _i("ClockAlignedDataInterval", 0, max=86400),
    _i("ConnectionTimeOut", 60, min=1, max=3600),
    KeyDef("ConnectorPhaseRotation", "rotation", "0.Unknown,1.Unknown", max_items=2),
    _i("ConnectorPhaseRotationMaxLength", 2, readonly=True),
    _i("GetConfigurationMaxKeys", 64, readonly=True),
    _i("HeartbeatInterval", 300, min=0, max=86400),
    _b("LocalAuthorizeOffline", True),
    _b("LocalPreAuthorize", False),
    _i("MaxEnergyOnInvalidId", 0, max=1_000_000),
    _m("MeterValuesAlignedData", "Energy.Active.Import.Register"),
    _i("MeterValuesAlignedDataMaxLength", MAX_CSL, readonly=True),
    _m("MeterValuesSampledData", "Energy.Active.Import.Register"),
    _i("MeterValuesSampledDataMaxLength", MAX_CSL, readonly=True),
    _i("MeterValueSampleInterval", 60, max=86400),
    _i("MinimumStatusDuration", 0, max=3600),
    _i("NumberOfConnectors", 1, readonly=True),
    _i("ResetRetries", 1, max=10),
    _b("StopTransactionOnEVSideDisconnect", True),
    _b("StopTransactionOnInvalidId", True),
    _m("StopTxnAlignedData", ""),
    _i("StopTxnAlignedDataMaxLength", MAX_CSL, readonly=True),
    _m("StopTxnSampledData", "Energy.Active.Import.Register"),
    _i("StopTxnSampledDataMaxLength", MAX_CSL, readonly=True),
    KeyDef("SupportedFeatureProfiles", "csl", PROFILES, readonly=True),
    _i("SupportedFeatureProfilesMaxLength", 6, readonly=True),
    _i("TransactionMessageAttempts", 3, min=1, max=100),
    _i("TransactionMessageRetryInterval", 60, max=86400),
    _b("UnlockConnectorOnEVSideDisconnect", True),
    _i("WebSocketPingInterval", 60, max=3600),
    # --- Local Auth List Management ----------------------------------------------
    _b("LocalAuthListEnabled", True),
    _i("LocalAuthListMaxLength", 1000, readonly=True),
    _i("SendLocalListMaxLength", 250, readonly=True),
    # --- Reservation ---------------------------------------------------------------
    _b("ReserveConnectorZeroSupported", False, readonly=True),
    # --- Smart Charging --------------------------------------------------------------
    _i("ChargeProfileMaxStackLevel", 10, readonly=True),
    KeyDef("ChargingScheduleAllowedChargingRateUnit", "csl", "Current,Power", readonly=True),
    _i("ChargingScheduleMaxPeriods", 48, readonly=True),
    _b("ConnectorSwitch3to1PhaseSupported", False, readonly=True),
    _i("MaxChargingProfilesInstalled", 16, readonly=True),
]

KEYS: dict[str, KeyDef] = {k.name: k for k in _KEYS}
_LOWER = {k.lower(): k for k in KEYS}


class ConfigurationKeys:
    """The live key values. `on_change(name, value)` is called after a change is stored."""

    def __init__(self, store: Any, supported_measurands: Callable[[], frozenset[str]]) -> None:
        self.store = store
        self._measurands = supported_measurands
        saved = store.get_json(STORE_KEY, {}) if store is not None else {}
        self._values = {k.name: k.default for k in _KEYS}
        for name, value in (saved or {}).items():
            if name in KEYS and not KEYS[name].readonly:
                self._values[name] = str(value)
        self.on_change: Callable[[str, str], None] | None = None

    @staticmethod
    def canonical(name: str) -> str | None:
        """Key names are case-sensitive in the spec, but central systems get them wrong."""
        return name if name in KEYS else _LOWER.get(name.lower())

    # -- typed reads ------------------------------------------------------------
    def get(self, name: str) -> str:
        return self._values[name]

    def bool(self, name: str) -> bool:
        return self._values[name].strip().lower() == "true"

    def int(self, name: str) -> int:
        return int(self._values[name])

    def list(self, name: str) -> builtins.list[str]:
        return [v.strip() for v in self._values[name].split(",") if v.strip()]

    # -- OCPP operations --------------------------------------------------------------
    # `list` is a method here: the built-in type is spelled builtins.list in this class.
    def report(self, names: builtins.list[str] | None) -> tuple[builtins.list[dict[str, Any]], builtins.list[str]]:
        """GetConfiguration: (configurationKey list, unknownKey list)."""
        known: builtins.list[dict[str, Any]] = []
        unknown: builtins.list[str] = []
        for name in (names if names else list(KEYS)):
            canon = self.canonical(name)
            if canon is None:
                unknown.append(name)
                continue
            known.append({"key": canon, "readonly": KEYS[canon].readonly, "value": self._values[canon]})
        return known, unknown

    def change(self, name: str, value: str) -> str:
        """ChangeConfiguration: "Accepted", "Rejected", "RebootRequired" or "NotSupported"."""
        canon = self.canonical(name)
        if canon is None:
            return "NotSupported"
        key = KEYS[canon]
        if key.readonly:
            return "Rejected"
        normal = self._validate(key, value)
        if normal is None:
            return "Rejected"
        self._values[canon] = normal
        if self.store is not None:
            changed = {k: v for k, v in self._values.items() if v != KEYS[k].default}
            self.store.put_json(STORE_KEY, changed)
        if self.on_change is not None:
            self.on_change(canon, normal)
        return "Accepted"

    def _validate(self, key: KeyDef, value: str) -> str | None:
        text = value.strip()
        if key.kind == "bool":
            return text.lower() if text.lower() in ("true", "false") else None
        if key.kind == "int":
            if not text.lstrip("+").isdigit():
                return None  # negative and fractional numbers are not valid here
            number = int(text)
            if number < key.min or (key.max is not None and number > key.max):
                return None
            return str(number)
        items = [v.strip() for v in text.split(",") if v.strip()]
        if key.max_items is not None and len(items) > key.max_items:
            return None
        if key.kind == "rotation":
            for item in items:
                connector, _, rotation = item.partition(".")
                if connector not in ("0", "1") or rotation not in PHASE_ROTATIONS:
                    return None
            return ",".join(items)
        if key.measurands:
            allowed = self._measurands()
            if any(m not in allowed for m in items):
                return None
        return ",".join(items)
