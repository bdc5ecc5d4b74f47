"""Unit tests of the OCPP pieces without a link: keys, lists, profiles, timing, idempotent delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from station.backends.ocpp.smart import Profiles
from station.backends.ocpp16 import metering
from station.backends.ocpp16.authz import AuthCache, LocalList, effective_status
from station.backends.ocpp16.chargepoint import rules
from station.backends.ocpp16.confkeys import KEYS, ConfigurationKeys
from station.backends.ocppj.schema import OCPP16
from station.core.model import MessageKind, MeterReading
from station.store import Store

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path)
    yield s
    s.close()


def test_every_key_default_is_valid_and_round_trips(store):
    keys = ConfigurationKeys(store, lambda: frozenset({metering.ENERGY, "Voltage"}))
    for name, key in KEYS.items():
        if not key.readonly:
            assert keys.change(name, key.default) == "Accepted", name
    reported, unknown = keys.report(None)
    assert len(reported) == len(KEYS) and not unknown


def test_keys_persist_and_readonly_is_not_restored_from_store(store):
    keys = ConfigurationKeys(store, lambda: frozenset())
    assert keys.change("heartbeatinterval", "42") == "Accepted"  # case-insensitive name
    store.put_json("ocpp.config", {**store.get_json("ocpp.config"), "NumberOfConnectors": "9"})
    again = ConfigurationKeys(store, lambda: frozenset())
    assert again.get("HeartbeatInterval") == "42"
    assert again.get("NumberOfConnectors") == "1"


def test_measurand_lists_limited_to_the_meter():
    only_energy = ConfigurationKeys(None, lambda: metering.ocpp_measurands({"energy"}))
    assert only_energy.change("MeterValuesSampledData", "Energy.Active.Import.Register,Voltage") == "Rejected"
    full = ConfigurationKeys(None, lambda: metering.ocpp_measurands({"energy", "voltage", "current", "power"}))
    assert full.change("MeterValuesSampledData", "Energy.Active.Import.Register,Voltage") == "Accepted"
    assert full.change("MeterValuesSampledData", ",".join(["Voltage"] * 9)) == "Rejected"  # MaxLength 8


def test_local_list_differential_needs_a_newer_version(store):
    ll = LocalList(store)
    assert ll.update(3, "Full", [{"idTag": "aa", "idTagInfo": {"status": "Accepted"}}], 10, 10) == "Accepted"
    assert ll.get("AA")["status"] == "Accepted"  # case-insensitive tags
    assert ll.update(3, "Differential", [{"idTag": "bb", "idTagInfo": {"status": "Accepted"}}], 10, 10) == "VersionMismatch"
    assert ll.update(4, "Differential", [{"idTag": "aa"}], 10, 10) == "Accepted"
    assert ll.get("aa") is None and LocalList(store).version == 4


def test_cache_expiry_and_bound(store):
    cache = AuthCache(store)
    cache.put("T1", {"status": "Accepted", "expiryDate": "2026-01-01T00:00:00Z"})
    assert effective_status(cache.get("t1"), T0) == "Expired"
    for i in range(1005):
        cache.put(f"X{i}", {"status": "Accepted"})
    assert len(AuthCache(store).entries) == 1000


def test_next_aligned_counts_from_midnight():
    now = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)
    assert metering.next_aligned(now, 900) == datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    assert metering.next_aligned(datetime(2026, 11, 22, 23, 59, 0, tzinfo=UTC), 3600) == \
        datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    assert metering.next_sampled(100.0, 125.0, 10.0) == 130.0


def test_sampled_values_are_schema_valid_with_integer_wh():
    reading = MeterReading(energy_wh=12345, power_w=7350.25, voltage_v=(230.0, 231.0, 229.5),
                           current_a=(10.7, 10.6, 10.8))
    measurands = metering.ocpp_measurands({"energy", "power", "voltage", "current"})
    values = metering.sampled_values(reading, sorted(measurands), "Sample.Periodic")
    payload = {"connectorId": 1, "transactionId": 5, "meterValue": [{"timestamp": "2026-11-22T10:00:00.000Z",
                                                                     "sampledValue": values}]}
    assert OCPP16.check("MeterValues", payload, response=False) is None
    assert [v["value"] for v in values if v["measurand"] == metering.ENERGY] == ["12345"]


def _profile(pid, purpose, kind, periods, stack=0, unit="A", start=None, recurrency=None, duration=None):
    schedule = {"chargingRateUnit": unit, "chargingSchedulePeriod": periods}
    if start:
        schedule["startSchedule"] = start
    if duration is not None:
        schedule["duration"] = duration
    p = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
         "chargingProfileKind": kind, "chargingSchedule": schedule}
    if recurrency:
        p["recurrencyKind"] = recurrency
    return p


def test_recurring_daily_profile_composite(store):
    keys = ConfigurationKeys(None, lambda: frozenset())
    profiles = Profiles(store, rules(keys))
    # every day from 06:00: 0 A for two hours (night tariff ends), then 16 A
    daily = _profile(1, "TxDefaultProfile", "Recurring", [{"startPeriod": 0, "limit": 0},
                                                           {"startPeriod": 7200, "limit": 16}],
                     start="2026-01-01T06:00:00Z", recurrency="Daily")
    assert profiles.set(1, daily, None) == "Accepted"
    at = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    schedule = profiles.composite(1, 6 * 3600, "A", at)
    got = [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]
    assert got == [(0, 16), (3600, 0), (3 * 3600, 16)]


def test_relative_profile_starts_with_the_transaction_and_cap_applies(store):
    keys = ConfigurationKeys(None, lambda: frozenset())
    profiles = Profiles(store, rules(keys))
    rel = _profile(2, "TxProfile", "Relative", [{"startPeriod": 0, "limit": 11000}, {"startPeriod": 600, "limit": 0}],
                   unit="W")
    assert profiles.set(1, rel, None) == "Rejected"  # no transaction
    assert profiles.set(1, rel, 77) == "Accepted"
    cap = _profile(3, "ChargePointMaxProfile", "Absolute", [{"startPeriod": 0, "limit": 10}],
                   start="2026-01-01T00:00:00Z")
    assert profiles.set(0, cap, 77) == "Accepted"
    tx_start = T0 - timedelta(seconds=300)
    assert profiles.limit_at(T0, 1, tx_start, 77) == (6900.0, 3)  # 10 A x 230 V x 3 caps 11 kW
    assert profiles.limit_at(T0 + timedelta(seconds=301), 1, tx_start, 77) == (0.0, 3)
    profiles.end_transaction()
    assert profiles.limit_at(T0, 1, tx_start, 77) == (6900.0, 3)
    assert Profiles(store, keys).installed == profiles.installed  # persisted


async def test_start_is_not_sent_twice(csms, rig):
    """A START delivered before a crash (not yet confirmed in the outbox) is not sent again."""
    session = rig.station.begin("AABBCCDD")
    await csms.wait_for("StartTransaction")
    await rig.idle()
    item = type("Item", (), {"kind": MessageKind.START, "payload": {}, "seq": 999})()
    fresh = rig.store.session(session.id)
    fresh.backend_session_id = None  # as if the process died before the outbox recorded the answer
    result = await rig.backend.deliver(item, fresh)
    assert result.backend_session_id == "101"
    assert len(csms.calls("StartTransaction")) == 1


def test_kept_samples_thin_out_when_full(store):
    """Store.add_sample keeps at most `keep` per session: when full, every second kept one is dropped
    (the first one stays). Worked by hand for keep=4 and samples 1..7:
    [1,2,3,4] -> 5 arrives: drop 2,4 -> [1,3,5]; 6 -> [1,3,5,6]; 7 arrives: drop 3,6 -> [1,5,7]."""
    for n in range(1, 8):
        store.add_sample(42, {"n": n}, keep=4)
    store.add_sample(43, {"n": 99}, keep=4)
    assert [s["n"] for s in store.samples(42)] == [1, 5, 7]
    store.drop_samples(42)
    assert store.samples(42) == [] and store.samples(43) == [{"n": 99}]
