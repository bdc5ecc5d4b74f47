"""The OCPP 2.0.1 device model of this station, declared once: every component and variable it has.

A station with one EVSE (id 1) and one connector (id 1). Each variable has
its component (with EVSE and connector where it belongs to one), its name
and instance, its data type, mutability, default, limits or list of values,
unit, and whether a change takes effect only after a reboot. The names are
the standardized ones of OCPP 2.0.1 Part 2, Appendix 3 ("Standardized
Components" and "Standardized Variables"); what the station cannot do is not
declared (a GetVariables of it answers UnknownVariable, which is how a
central system learns what a station supports, B06.FR.04/05).

Values that change by themselves (availability, the clock, counters, the
security profile) are *live*: `DeviceModel` asks the version for them when
read. Every ReadWrite value the central system sets is kept in the journal
(devmodel.py). docs/ocpp201.md lists this table for people.

Measurand lists take only what the meter measures: their values list is
filled in at start-up (`MEASURANDS` marks them).
"""

from __future__ import annotations

from dataclasses import dataclass

RO, RW, WO = "ReadOnly", "ReadWrite", "WriteOnly"
MEASURANDS = ("MEASURANDS",)  # placeholder values list: the meter's measurands
EVSE = 1
CONNECTOR = 1


@dataclass(frozen=True)
class Var:
    component: str
    name: str
    kind: str  # DataEnumType: string, decimal, integer, dateTime, boolean, OptionList, SequenceList, MemberList
    mutability: str
    default: str = ""
    instance: str | None = None  # the variable's instance
    evse: int | None = None  # the component's EVSE (and connector)
    connector: int | None = None
    values: tuple[str, ...] = ()  # valuesList (OptionList, MemberList, SequenceList)
    min: float | None = None
    max: float | None = None  # a number's maxLimit, a string's maximum length
    unit: str | None = None
    reboot: bool = False  # a change takes effect after a reboot: SetVariables answers RebootRequired
    live: bool = False  # read from the station when asked

    @property
    def key(self) -> str:
        """How the value is stored: component[evse.connector]/variable[instance]."""
        where = f"[{self.evse}{'.' + str(self.connector) if self.connector else ''}]" if self.evse else ""
        return f"{self.component}{where}/{self.name}" + (f"[{self.instance}]" if self.instance else "")


def _b(component: str, name: str, mutability: str, default: bool, **kw: object) -> Var:
    return Var(component, name, "boolean", mutability, "true" if default else "false", **kw)  # type: ignore[arg-type]


def _i(component: str, name: str, mutability: str, default: int, **kw: object) -> Var:
    return Var(component, name, "integer", mutability, str(default), **kw)  # type: ignore[arg-type]


_AVAILABILITY = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
_MESSAGES = "GetReport", "GetVariables", "SetVariables"

VARIABLES: list[Var] = [
    # --- the station, its EVSE and its connector (live) ---------------------------------------------
    Var("ChargingStation", "AvailabilityState", "OptionList", RO, values=_AVAILABILITY, live=True),
    _b("ChargingStation", "Available", RO, True),
    Var("ChargingStation", "Model", "string", RO, live=True),
    Var("ChargingStation", "VendorName", "string", RO, live=True),
    _i("ChargingStation", "SupplyPhases", RO, 3, live=True),
    Var("EVSE", "AvailabilityState", "OptionList", RO, evse=EVSE, values=_AVAILABILITY, live=True),
    _b("EVSE", "Available", RO, True, evse=EVSE),
    Var("EVSE", "Power", "decimal", RO, "0", evse=EVSE, unit="W", live=True),
    _i("EVSE", "SupplyPhases", RO, 3, evse=EVSE, live=True),
    _b("EVSE", "AllowReset", RO, True, evse=EVSE),
    Var("Connector", "AvailabilityState", "OptionList", RO, evse=EVSE, connector=CONNECTOR, values=_AVAILABILITY,
        live=True),
    _b("Connector", "Available", RO, True, evse=EVSE, connector=CONNECTOR),
    Var("Connector", "ConnectorType", "string", RO, evse=EVSE, connector=CONNECTOR, live=True),
    _i("Connector", "SupplyPhases", RO, 3, evse=EVSE, connector=CONNECTOR, live=True),
    # --- OCPPCommCtrlr ----------------------------------------------------------------------------------
    Var("OCPPCommCtrlr", "FileTransferProtocols", "MemberList", RO, "FTP,HTTP,HTTPS",
        values=("FTP", "FTPS", "HTTP", "HTTPS", "SFTP")),
    _i("OCPPCommCtrlr", "HeartbeatInterval", RW, 300, min=0, max=86400, unit="s"),
    _i("OCPPCommCtrlr", "MessageTimeout", RO, 30, instance="Default", unit="s"),
    _i("OCPPCommCtrlr", "MessageAttempts", RW, 3, instance="TransactionEvent", min=1, max=100),
    _i("OCPPCommCtrlr", "MessageAttemptInterval", RW, 60, instance="TransactionEvent", min=0, max=86400, unit="s"),
    Var("OCPPCommCtrlr", "NetworkConfigurationPriority", "SequenceList", RO, "1", values=("1",)),
    _i("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", RO, 5),
    _i("OCPPCommCtrlr", "OfflineThreshold", RW, 60, min=0, max=86400, unit="s"),
    _i("OCPPCommCtrlr", "ResetRetries", RW, 1, min=0, max=10),
    # Part 4 §5.3: the first reconnection after WaitMinimum + up to RandomRange s, doubled RepeatTimes times
    _i("OCPPCommCtrlr", "RetryBackOffRandomRange", RW, 3, min=0, max=3600, unit="s"),
    _i("OCPPCommCtrlr", "RetryBackOffRepeatTimes", RW, 6, min=0, max=20),
    _i("OCPPCommCtrlr", "RetryBackOffWaitMinimum", RW, 1, min=1, max=3600, unit="s"),
    _b("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", RO, False),
    _i("OCPPCommCtrlr", "WebSocketPingInterval", RW, 60, min=0, max=3600, unit="s", reboot=True),
    # --- DeviceDataCtrlr ------------------------------------------------------------------------------
    *[_i("DeviceDataCtrlr", "ItemsPerMessage", RO, 50, instance=m) for m in _MESSAGES],
    *[_i("DeviceDataCtrlr", "BytesPerMessage", RO, 65536, instance=m) for m in _MESSAGES],
    _i("DeviceDataCtrlr", "ConfigurationValueSize", RO, 1000),
    _i("DeviceDataCtrlr", "ReportingValueSize", RO, 2500),
    _i("DeviceDataCtrlr", "ValueSize", RO, 2500),
    # --- ClockCtrlr ------------------------------------------------------------------------------------
    Var("ClockCtrlr", "DateTime", "dateTime", RO, live=True),
    Var("ClockCtrlr", "TimeSource", "SequenceList", RO, "Heartbeat", values=("Heartbeat",)),
    # --- SecurityCtrlr -------------------------------------------------------------------------------
    Var("SecurityCtrlr", "BasicAuthPassword", "string", WO, min=16, max=40),
    _i("SecurityCtrlr", "CertificateEntries", RO, 0, live=True),
    Var("SecurityCtrlr", "Identity", "string", RO, live=True),
    Var("SecurityCtrlr", "OrganizationName", "string", RW, live=True, max=64),
    _i("SecurityCtrlr", "SecurityProfile", RO, 0, live=True),
    _b("SecurityCtrlr", "AdditionalRootCertificateCheck", RO, False),
    _i("SecurityCtrlr", "MaxCertificateChainSize", RO, 10000),
    _i("SecurityCtrlr", "CertSigningWaitMinimum", RW, 60, min=1, max=86400, unit="s"),  # A02.FR.17
    _i("SecurityCtrlr", "CertSigningRepeatTimes", RW, 3, min=0, max=10),  # A02.FR.18
    # --- AuthCtrlr, AuthCacheCtrlr, LocalAuthListCtrlr --------------------------------------------------
    _b("AuthCtrlr", "Enabled", RO, True),
    _b("AuthCtrlr", "AuthorizeRemoteStart", RW, False),
    _b("AuthCtrlr", "LocalAuthorizeOffline", RW, True),
    _b("AuthCtrlr", "LocalPreAuthorize", RW, False),
    _b("AuthCtrlr", "OfflineTxForUnknownIdEnabled", RW, False),
    _b("AuthCtrlr", "DisableRemoteAuthorization", RW, False),
    Var("AuthCtrlr", "MasterPassGroupId", "string", RW, max=36),
    _b("AuthCacheCtrlr", "Available", RO, True),
    _b("AuthCacheCtrlr", "Enabled", RW, True),
    _i("AuthCacheCtrlr", "LifeTime", RW, 604800, min=0, max=31536000, unit="s"),
    Var("AuthCacheCtrlr", "Policy", "OptionList", RO, "FIFO", values=("FIFO",)),
    _b("AuthCacheCtrlr", "DisablePostAuthorize", RW, False),
    _b("LocalAuthListCtrlr", "Available", RO, True),
    _b("LocalAuthListCtrlr", "Enabled", RW, True),
    _i("LocalAuthListCtrlr", "Entries", RO, 0, live=True),
    _i("LocalAuthListCtrlr", "ItemsPerMessage", RO, 250),
    _i("LocalAuthListCtrlr", "BytesPerMessage", RO, 65536),
    _b("LocalAuthListCtrlr", "DisablePostAuthorize", RW, False),
    # --- TxCtrlr ---------------------------------------------------------------------------------------
    _i("TxCtrlr", "EVConnectionTimeOut", RW, 60, min=1, max=3600, unit="s"),
    _b("TxCtrlr", "StopTxOnEVSideDisconnect", RW, True),
    _b("TxCtrlr", "StopTxOnInvalidId", RW, True),
    _i("TxCtrlr", "MaxEnergyOnInvalidId", RW, 0, min=0, max=1_000_000, unit="Wh"),
    Var("TxCtrlr", "TxStartPoint", "MemberList", RW, "PowerPathClosed",
        values=("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")),  # no bay sensor, no signed meter
    Var("TxCtrlr", "TxStopPoint", "MemberList", RW, "PowerPathClosed",
        values=("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")),
    _b("TxCtrlr", "TxBeforeAcceptedEnabled", RO, False),
    # --- SampledDataCtrlr, AlignedDataCtrlr -------------------------------------------------------------
    _b("SampledDataCtrlr", "Available", RO, True),
    _b("SampledDataCtrlr", "Enabled", RW, True),
    Var("SampledDataCtrlr", "TxStartedMeasurands", "MemberList", RW, "Energy.Active.Import.Register", values=MEASURANDS),
    Var("SampledDataCtrlr", "TxUpdatedMeasurands", "MemberList", RW, "Energy.Active.Import.Register", values=MEASURANDS),
    _i("SampledDataCtrlr", "TxUpdatedInterval", RW, 60, min=0, max=86400, unit="s"),
    Var("SampledDataCtrlr", "TxEndedMeasurands", "MemberList", RW, "Energy.Active.Import.Register", values=MEASURANDS),
    _i("SampledDataCtrlr", "TxEndedInterval", RW, 0, min=0, max=86400, unit="s"),
    _b("AlignedDataCtrlr", "Available", RO, True),
    _b("AlignedDataCtrlr", "Enabled", RW, True),
    Var("AlignedDataCtrlr", "Measurands", "MemberList", RW, "Energy.Active.Import.Register", values=MEASURANDS),
    _i("AlignedDataCtrlr", "Interval", RW, 0, min=0, max=86400, unit="s"),
    Var("AlignedDataCtrlr", "TxEndedMeasurands", "MemberList", RW, "", values=MEASURANDS),
    _i("AlignedDataCtrlr", "TxEndedInterval", RW, 0, min=0, max=86400, unit="s"),
    _b("AlignedDataCtrlr", "SendDuringIdle", RW, False),
    # --- ReservationCtrlr, SmartChargingCtrlr -----------------------------------------------------------------
    _b("ReservationCtrlr", "Available", RO, True),
    _b("ReservationCtrlr", "Enabled", RO, True),
    _b("ReservationCtrlr", "NonEvseSpecific", RO, True),
    _b("SmartChargingCtrlr", "Available", RO, True),
    _b("SmartChargingCtrlr", "Enabled", RO, True),
    _i("SmartChargingCtrlr", "Entries", RO, 0, instance="ChargingProfiles", max=16, live=True),
    Var("SmartChargingCtrlr", "LimitChangeSignificance", "decimal", RW, "10", min=0, max=100, unit="Percent"),
    _i("SmartChargingCtrlr", "PeriodsPerSchedule", RO, 48),
    _i("SmartChargingCtrlr", "ProfileStackLevel", RO, 10),
    Var("SmartChargingCtrlr", "RateUnit", "MemberList", RO, "A,W", values=("A", "W")),
    _b("SmartChargingCtrlr", "Phases3to1", RO, False),
]
