"""OCPP 2.0.1 smart charging (K01, K05, K08, K09, K10) on the shared profile arithmetic.

The stacking, the recurrences, the composite schedule and the power limit are
station/backends/ocpp/smart.py and limits.py, shared with 1.6, so a 2.0.1
profile limits the station exactly as the same 1.6 profile does. A 2.0.1
ChargingProfileType is converted to the 1.6 shape they work on (id ->
chargingProfileId, ChargingStationMaxProfile -> ChargePointMaxProfile, its one
chargingSchedule, evseId -> connectorId) and kept with its original, which
GetChargingProfiles reports. What 2.0.1 adds is checked here:

* ChargingStationExternalConstraints may not be set or cleared by the
  central system (K01.FR.22, K10.FR.06/09);
* one chargingSchedule (K01.FR.34: no ISO 15118 here), its first period at
  0 and the periods in order (K01.FR.31/35), startSchedule for Absolute and
  Recurring and none for Relative (K01.FR.40/41), no Relative
  ChargingStationMaxProfile (K01.FR.38);
* a TxProfile needs a running transaction with that transactionId
  (K01.FR.09/33), only on EVSE 1 (K01.FR.16); an unknown EVSE is Rejected
  (K01.FR.28); a rate unit outside SmartChargingCtrlr.RateUnit is Rejected
  (K01.FR.26); numberPhases above the meter's phases is Rejected (K01.FR.45),
  phaseToUse is Rejected (no phase switching, K01.FR.48).
"""

from __future__ import annotations

from typing import Any

from station.backends.ocpp.smart import Profiles, Rules

STORE_KEY = "ocpp201.profiles"
_PURPOSES = {"ChargingStationMaxProfile": "ChargePointMaxProfile"}
_BACK = {v: k for k, v in _PURPOSES.items()}


def internal(profile: dict[str, Any]) -> dict[str, Any]:
    """A 2.0.1 ChargingProfileType in the 1.6 shape of the shared arithmetic."""
    schedule = {k: v for k, v in profile["chargingSchedule"][0].items() if k not in ("id", "salesTariff",
                                                                                      "minChargingRate")}
    out = {"chargingProfileId": profile["id"], "stackLevel": profile["stackLevel"],
           "chargingProfilePurpose": _PURPOSES.get(profile["chargingProfilePurpose"], profile["chargingProfilePurpose"]),
           "chargingProfileKind": profile["chargingProfileKind"], "chargingSchedule": schedule}
    for key in ("recurrencyKind", "validFrom", "validTo", "transactionId"):
        if profile.get(key) is not None:
            out[key] = profile[key]
    return out


class Smart:
    """The installed 2.0.1 profiles (each kept with its original under "original")."""

    def __init__(self, store: Any, rules: Rules, phases: int = 3) -> None:
        self.profiles = Profiles(store, rules, STORE_KEY)
        self.phases = phases

    def problem(self, evse_id: int, profile: dict[str, Any], tx_id: str | None) -> str | None:
        """Why a SetChargingProfile is Rejected (a reasonCode), or None."""
        purpose, kind = profile["chargingProfilePurpose"], profile["chargingProfileKind"]
        schedules = profile["chargingSchedule"]
        if purpose == "ChargingStationExternalConstraints":
            return "InvalidValue"  # K01.FR.22
        if evse_id not in (0, 1):
            return "UnknownEvse"  # K01.FR.28
        if len(schedules) != 1:
            return "InvalidSchedule"  # K01.FR.34
        schedule = schedules[0]
        if kind == "Relative" and schedule.get("startSchedule"):
            return "InvalidSchedule"  # K01.FR.41
        if kind in ("Absolute", "Recurring") and not schedule.get("startSchedule"):
            return "InvalidSchedule"  # K01.FR.40
        if purpose == "ChargingStationMaxProfile" and (kind == "Relative" or evse_id != 0):
            return "InvalidValue"  # K01.FR.38; the station's maximum is set on EVSE 0
        if purpose == "TxProfile":
            if evse_id != 1:
                return "InvalidValue"  # K01.FR.16
            if tx_id is None or profile.get("transactionId") not in (None, tx_id):
                return "TxNotFound"  # K01.FR.09/33
        for period in schedule["chargingSchedulePeriod"]:
            if period.get("phaseToUse") is not None:
                return "InvalidValue"  # K01.FR.48: no phase switching
            if (period.get("numberPhases") or 3) > self.phases:
                return "InvalidValue"  # K01.FR.45
        return None

    def set(self, evse_id: int, profile: dict[str, Any], tx_id: str | None) -> str:
        converted = internal(profile)
        status = self.profiles.set(evse_id, converted, tx_id)
        if status == "Accepted":
            for p in self.profiles.installed:
                if p["profile"]["chargingProfileId"] == profile["id"]:
                    p["original"] = profile if tx_id is None or purpose_of(profile) != "TxProfile" \
                        else {**profile, "transactionId": tx_id}
            self.profiles._save()
        return status

    def install_tx_profile(self, profile: dict[str, Any]) -> None:
        """The TxProfile of a RequestStartTransaction (K05.FR.03), for the transaction it starts."""
        self.profiles.install_tx_profile(1, internal(profile))
        self.profiles.installed[-1]["original"] = profile
        self.profiles._save()

    def clear(self, profile_id: int | None, criteria: dict[str, Any] | None) -> str:
        """ClearChargingProfile: Accepted, or Unknown when nothing matched (K10.FR.01)."""
        criteria = criteria or {}
        purpose = criteria.get("chargingProfilePurpose")
        return self.profiles.clear(profile_id, criteria.get("evseId"), _PURPOSES.get(purpose, purpose) if purpose else None,
                                   criteria.get("stackLevel"))

    def report(self, evse_id: int | None, criteria: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """GetChargingProfiles: (evseId, original profile) of the installed profiles matching every criterion
        given (K09.FR.03-06). The limit source of every profile here is CSO."""
        ids = criteria.get("chargingProfileId")
        sources = criteria.get("chargingLimitSource")
        out = []
        for p in self.profiles.installed:
            original = p.get("original") or {}
            if not original or (evse_id is not None and p["connectorId"] != evse_id):
                continue
            if ids and original["id"] not in ids:
                continue
            if criteria.get("stackLevel") is not None and original["stackLevel"] != criteria["stackLevel"]:
                continue
            purpose = criteria.get("chargingProfilePurpose")
            if purpose and original["chargingProfilePurpose"] != purpose:
                continue
            if sources and "CSO" not in sources:
                continue
            out.append((p["connectorId"], original))
        return out

    @property
    def count(self) -> int:
        return len(self.profiles.installed)


def purpose_of(profile: dict[str, Any]) -> str:
    return str(profile["chargingProfilePurpose"])


def composite_201(schedule: dict[str, Any] | None, evse_id: int, duration: int, unit: str,
                  start: str) -> dict[str, Any]:
    """The shared composite schedule as a 2.0.1 CompositeScheduleType (an empty period list is one period of
    no limit: the station charges at what it can, as K08.FR.06 asks for the TxDefaultProfile case)."""
    periods = schedule["chargingSchedulePeriod"] if schedule else []
    return {"evseId": evse_id, "duration": duration, "scheduleStart": start, "chargingRateUnit": unit,
            "chargingSchedulePeriod": periods}


__all__ = ["Smart", "composite_201", "internal", "_BACK"]
