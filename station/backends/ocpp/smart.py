"""Smart charging on a station that can only switch: profiles, composite schedule, limit.

Theory of operation
-------------------
Profiles (SetChargingProfile) are checked against the version's limits
(`Rules`: the 1.6 SmartCharging keys, the 2.0.1 SmartChargingCtrlr), kept per
connector (2.0.1: per EVSE, which is the same here: one of each), persisted
(1.6 "ocpp.profiles", 2.0.1 "ocpp201.profiles") and stacked as OCPP 1.6
§3.13 and OCPP 2.0.1 K01/K08 say (the same rules; 2.0.1 profiles are kept in
the 1.6 shape, ocpp201/smart.py converts them):

* at any instant each purpose yields the limit of its valid profile with
  the highest stackLevel whose schedule covers that instant;
* a TxProfile (only while its transaction runs) overrides the
  TxDefaultProfile (one on the connector beats one on connector 0 at the
  same stack level);
* ChargePointMaxProfile caps the result.

`composite()` evaluates that function at every instant where any profile
can change (period starts, schedule ends, validity bounds, recurrences) and
merges equal neighbours: that is GetCompositeSchedule's answer and also what
drives the station (limits.py): the limit in force is handed to the core in
its own unit (`limit_detail_at`: amps to `set_current_limit`, watts to
`set_power_limit`, which the core spreads over the phases the meter sees the
car draw on). With a charge controller the car is offered that current; a
station with only a contactor can honour "zero" (the charging pauses,
SuspendedEVSE) and "not zero", and keeps and reports any other limit. Amps and
watts are compared and converted at a nominal 230 V per phase (numberPhases,
default 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from station.clock import iso, parse_iso

STORE_KEY = "ocpp.profiles"
VOLTS = 230.0
_DAY = 86400
_WEEK = 7 * _DAY


@dataclass(frozen=True)
class Rules:
    """What a profile may be here (1.6: the SmartCharging keys; 2.0.1: SmartChargingCtrlr)."""

    connectors: int = 1
    max_stack_level: int = 10
    rate_units: frozenset[str] = frozenset({"A", "W"})  # "A" amps, "W" watts
    max_periods: int = 48
    max_installed: int = 16


def to_watts(limit: float, unit: str, phases: int) -> float:
    return limit if unit == "W" else limit * VOLTS * phases


def from_watts(watts: float, unit: str, phases: int) -> float:
    return watts if unit == "W" else watts / (VOLTS * phases)


class Profiles:
    """The installed profiles of a one-connector charge point."""

    def __init__(self, store: Any, rules: Rules, store_key: str = STORE_KEY) -> None:
        self.store = store
        self.rules = rules
        self.store_key = store_key
        saved = store.get_json(store_key, None) if store is not None else None
        # each: {"connectorId": int, "profile": csChargingProfiles (camelCase)}
        self.installed: list[dict[str, Any]] = list(saved or [])

    def _save(self) -> None:
        if self.store is not None:
            self.store.put_json(self.store_key, self.installed)

    # -- SetChargingProfile / ClearChargingProfile -------------------------------
    def set(self, connector_id: int, profile: dict[str, Any], tx_id: int | str | None) -> str:
        purpose = profile["chargingProfilePurpose"]
        schedule = profile["chargingSchedule"]
        periods = schedule["chargingSchedulePeriod"]
        rules = self.rules
        if connector_id > rules.connectors or connector_id < 0:
            return "Rejected"
        if purpose == "ChargePointMaxProfile" and connector_id != 0:
            return "Rejected"
        if purpose == "TxProfile":
            if connector_id == 0 or tx_id is None:
                return "Rejected"  # a TxProfile needs a running transaction on that connector
            if profile.get("transactionId") is not None and profile["transactionId"] != tx_id:
                return "Rejected"
            profile = {**profile, "transactionId": tx_id}
        if profile["stackLevel"] < 0 or profile["stackLevel"] > rules.max_stack_level:
            return "Rejected"
        if schedule["chargingRateUnit"] not in rules.rate_units:
            return "Rejected"
        if not periods or len(periods) > rules.max_periods:
            return "Rejected"
        starts = [p["startPeriod"] for p in periods]
        if starts[0] != 0 or starts != sorted(set(starts)) or any(p["limit"] < 0 for p in periods):
            return "Rejected"
        if profile["chargingProfileKind"] == "Recurring" and not profile.get("recurrencyKind"):
            return "Rejected"
        if profile["chargingProfileKind"] in ("Absolute", "Recurring") and not schedule.get("startSchedule"):
            if profile["chargingProfileKind"] == "Recurring":
                return "Rejected"
        kept = [p for p in self.installed
                if p["profile"]["chargingProfileId"] != profile["chargingProfileId"]
                and not (p["connectorId"] == connector_id
                         and p["profile"]["stackLevel"] == profile["stackLevel"]
                         and p["profile"]["chargingProfilePurpose"] == purpose)]
        if len(kept) >= rules.max_installed:
            return "Rejected"
        if not schedule.get("startSchedule") and profile["chargingProfileKind"] == "Absolute":
            # An absolute schedule without a start begins when it is received.
            profile = {**profile, "chargingSchedule": {**schedule, "startSchedule": iso(datetime.now(UTC))}}
        kept.append({"connectorId": connector_id, "profile": profile})
        self.installed = kept
        self._save()
        return "Accepted"

    def clear(self, profile_id: int | None, connector_id: int | None, purpose: str | None,
              stack_level: int | None) -> str:
        def matches(p: dict[str, Any]) -> bool:
            if profile_id is not None:
                return p["profile"]["chargingProfileId"] == profile_id
            return ((connector_id is None or p["connectorId"] == connector_id)
                    and (purpose is None or p["profile"]["chargingProfilePurpose"] == purpose)
                    and (stack_level is None or p["profile"]["stackLevel"] == stack_level))

        kept = [p for p in self.installed if not matches(p)]
        if len(kept) == len(self.installed):
            return "Unknown"
        self.installed = kept
        self._save()
        return "Accepted"

    def install_tx_profile(self, connector_id: int, profile: dict[str, Any]) -> None:
        """The TxProfile of a RemoteStartTransaction: for the transaction it starts."""
        self.end_transaction()
        self.installed.append({"connectorId": connector_id, "profile": profile})
        self._save()

    def end_transaction(self) -> None:
        """TxProfiles live as long as their transaction."""
        kept = [p for p in self.installed if p["profile"]["chargingProfilePurpose"] != "TxProfile"]
        if len(kept) != len(self.installed):
            self.installed = kept
            self._save()

    # -- evaluation -------------------------------------------------------------------
    def _schedule_start(self, p: dict[str, Any], at: datetime, tx_start: datetime | None) -> datetime | None:
        prof = p["profile"]
        sched = prof["chargingSchedule"]
        kind = prof["chargingProfileKind"]
        if kind == "Relative":
            return tx_start if tx_start is not None else None
        start = parse_iso(sched["startSchedule"]) if sched.get("startSchedule") else None
        if start is None:
            return None
        if kind == "Recurring":
            period = _DAY if prof.get("recurrencyKind") == "Daily" else _WEEK
            if at < start:
                return None
            cycles = int((at - start).total_seconds() // period)
            return start + timedelta(seconds=cycles * period)
        return start

    def _limit_of(self, p: dict[str, Any], at: datetime, tx_start: datetime | None
                  ) -> tuple[float, int, float | None] | None:
        """(watts, phases, amps: the limit as given when in A, else None) of one profile at `at`, or None
        when it says nothing then."""
        prof = p["profile"]
        if prof.get("validFrom") and at < parse_iso(prof["validFrom"]):
            return None
        if prof.get("validTo") and at >= parse_iso(prof["validTo"]):
            return None
        start = self._schedule_start(p, at, tx_start)
        if start is None or at < start:
            return None
        sched = prof["chargingSchedule"]
        offset = (at - start).total_seconds()
        if sched.get("duration") is not None and offset >= sched["duration"]:
            return None
        chosen = None
        for period in sched["chargingSchedulePeriod"]:
            if period["startPeriod"] <= offset + 1e-6:
                chosen = period
        if chosen is None:
            return None
        phases = chosen.get("numberPhases") or 3
        unit, limit = sched["chargingRateUnit"], float(chosen["limit"])
        return to_watts(limit, unit, phases), phases, limit if unit == "A" else None

    def _best(self, purpose: str, connectors: tuple[int, ...], at: datetime,
              tx_start: datetime | None, tx_id: int | str | None) -> tuple[float, int, float | None] | None:
        candidates = []
        for p in self.installed:
            prof = p["profile"]
            if prof["chargingProfilePurpose"] != purpose or p["connectorId"] not in connectors:
                continue
            if purpose == "TxProfile" and (tx_id is None or prof.get("transactionId") not in (None, tx_id)):
                continue
            value = self._limit_of(p, at, tx_start)
            if value is not None:
                # higher stack level first; at equal level the connector's own profile
                candidates.append((prof["stackLevel"], p["connectorId"] != 0, value))
        if not candidates:
            return None
        return max(candidates, key=lambda c: (c[0], c[1]))[2]

    def limit_at(self, at: datetime, connector_id: int = 1, tx_start: datetime | None = None,
                 tx_id: int | str | None = None) -> tuple[float, int] | None:
        """The limit in watts (and phases) at `at`, or None when nothing limits."""
        value = self.limit_detail_at(at, connector_id, tx_start, tx_id)
        return None if value is None else (value[0], value[1])

    def limit_detail_at(self, at: datetime, connector_id: int = 1, tx_start: datetime | None = None,
                        tx_id: int | str | None = None) -> tuple[float, int, float | None] | None:
        """The limit at `at` as (watts, phases, amps when the winning profile is in A), or None."""
        cap = self._best("ChargePointMaxProfile", (0,), at, tx_start, tx_id)
        tx = None
        if connector_id > 0 and tx_id is not None:
            tx = self._best("TxProfile", (connector_id,), at, tx_start, tx_id)
        if tx is None:
            tx = self._best("TxDefaultProfile", (connector_id, 0) if connector_id else (0,), at, tx_start, tx_id)
        if cap is None:
            return tx
        if tx is None:
            return cap
        return min(cap, tx, key=lambda v: v[0])

    def _breakpoints(self, t0: datetime, t1: datetime, tx_start: datetime | None) -> list[datetime]:
        points = {t0}
        for p in self.installed:
            prof = p["profile"]
            sched = prof["chargingSchedule"]
            for key in ("validFrom", "validTo"):
                if prof.get(key):
                    points.add(parse_iso(prof[key]))
            starts: list[datetime] = []
            if prof["chargingProfileKind"] == "Recurring":
                first = self._schedule_start(p, max(t0, parse_iso(sched["startSchedule"])), tx_start)
                period = _DAY if prof.get("recurrencyKind") == "Daily" else _WEEK
                while first is not None and first < t1:
                    starts.append(first)
                    first += timedelta(seconds=period)
                if first is not None and starts and starts[0] > t0:
                    starts.insert(0, starts[0] - timedelta(seconds=period))
            else:
                s = self._schedule_start(p, t0, tx_start)
                if s is not None:
                    starts.append(s)
            for s in starts:
                for period in sched["chargingSchedulePeriod"]:
                    points.add(s + timedelta(seconds=period["startPeriod"]))
                if sched.get("duration") is not None:
                    points.add(s + timedelta(seconds=sched["duration"]))
        return sorted(t for t in points if t0 <= t < t1)

    def composite(self, connector_id: int, duration: int, unit: str | None, now: datetime,
                  tx_start: datetime | None = None, tx_id: int | str | None = None) -> dict[str, Any] | None:
        """GetCompositeSchedule's chargingSchedule, or None when no profile limits the window."""
        t0 = now.replace(microsecond=0)
        t1 = t0 + timedelta(seconds=duration)
        out_unit = unit or "A"
        periods: list[dict[str, Any]] = []
        for at in self._breakpoints(t0, t1, tx_start):
            value = self.limit_at(at, connector_id, tx_start, tx_id)
            if value is None:
                continue
            watts, phases = value
            limit = round(from_watts(watts, out_unit, phases), 1)
            start = int((at - t0).total_seconds())
            if periods and periods[-1]["limit"] == limit and periods[-1].get("numberPhases") == phases:
                continue
            if periods and periods[-1]["startPeriod"] == start:
                periods.pop()
            periods.append({"startPeriod": start, "limit": limit, "numberPhases": phases})
        if not periods:
            return None
        return {"duration": duration, "startSchedule": iso(t0), "chargingRateUnit": out_unit,
                "chargingSchedulePeriod": periods}

    def next_change(self, now: datetime, tx_start: datetime | None, horizon_s: float = 3600) -> datetime | None:
        points = [t for t in self._breakpoints(now, now + timedelta(seconds=horizon_s), tx_start) if t > now]
        return min(points) if points else None


LimitSink = Callable[[float | None], None]
