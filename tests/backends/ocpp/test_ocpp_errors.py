"""Errors the 1.6 way: malformed frames get 1.6 codes and the connection survives."""

from __future__ import annotations

import json

import pytest
from ocpp.v16 import call


async def _raw_call(csms, frame: str | bytes, uid: str) -> list:
    await csms.send_raw(frame)
    return await csms.wait_answer(uid)


async def _still_alive(csms, rig) -> None:
    result = await csms.call(call.GetLocalListVersion())
    assert isinstance(result.list_version, int)
    assert rig.backend.online


@pytest.mark.parametrize("payload, code", [
    ({}, "FormationViolation"),  # missing required field
    ({"type": 5}, "TypeConstraintViolation"),  # mistyped (OCPP-J 1.6 §4.2.3)
    ({"type": "Soft", "extra": 1}, "FormationViolation"),  # unknown property
    ({"type": "Lukewarm"}, "PropertyConstraintViolation"),  # value outside the enum
])
async def test_schema_errors_get_16_codes(csms, rig, payload, code):
    answer = await _raw_call(csms, json.dumps([2, "e1", "Reset", payload]), "e1")
    assert answer[0] == 4 and answer[2] == code
    assert not any(c[0] == "reset" for c in rig.station.calls)
    await _still_alive(csms, rig)


async def test_mistyped_field_is_type_constraint_violation(csms, rig):
    """OCPP-J 1.6 §4.2.3: a field of the wrong type is TypeConstraintViolation."""
    answer = await _raw_call(csms, json.dumps([2, "e11", "UnlockConnector", {"connectorId": "one"}]), "e11")
    assert answer[0] == 4 and answer[2] == "TypeConstraintViolation"
    assert "connectorId" in answer[3]
    assert not any(c[0] == "unlock" for c in rig.station.calls)
    await _still_alive(csms, rig)


async def test_payload_not_an_object(csms, rig):
    answer = await _raw_call(csms, json.dumps([2, "e2", "Reset", ["Soft"]]), "e2")
    assert answer[2] == "FormationViolation"
    await _still_alive(csms, rig)


async def test_bad_date_time_is_formation_violation(csms, rig):
    frame = json.dumps([2, "e3", "ReserveNow", {"connectorId": 1, "expiryDate": "tomorrow", "idTag": "A",
                                                 "reservationId": 1}])
    answer = await _raw_call(csms, frame, "e3")
    assert answer[2] == "FormationViolation"
    assert not any(c[0] == "reserve" for c in rig.station.calls)


async def test_unknown_action_is_not_implemented(csms, rig):
    answer = await _raw_call(csms, json.dumps([2, "e4", "MakeCoffee", {}]), "e4")
    assert answer[2] == "NotImplemented"
    await _still_alive(csms, rig)


async def test_known_but_unsupported_action_is_not_supported(csms, rig):
    # A 1.6 action a charge point does not take (it is one the charge point sends).
    answer = await _raw_call(csms, json.dumps([2, "e5", "Authorize", {"idTag": "ABCDEF"}]), "e5")
    assert answer[2] == "NotSupported"
    await _still_alive(csms, rig)


async def test_non_json_frame_with_readable_id_is_generic_error(csms, rig):
    answer = await _raw_call(csms, '[2, "e6", "Reset", {"type": "Soft"', "e6")
    assert answer[2] == "GenericError"
    await _still_alive(csms, rig)


async def test_non_utf8_frame(csms, rig):
    answer = await _raw_call(csms, b'[2,"e7","Reset",{"type":"\xff\xfe"}]', "e7")
    assert answer[2] == "GenericError"
    await _still_alive(csms, rig)


async def test_garbage_without_id_is_ignored(csms, rig):
    for frame in ("hello", "{}", "[]", "[9]", '{"a": 1}', "\x00\x01", "[2]", "[3, 5]"):
        await csms.send_raw(frame)
    await _still_alive(csms, rig)


async def test_wrong_element_count(csms, rig):
    answer = await _raw_call(csms, json.dumps([2, "e8", "Reset"]), "e8")
    assert answer[2] == "FormationViolation"


async def test_unknown_message_type_with_id(csms, rig):
    answer = await _raw_call(csms, json.dumps([7, "e9", "Reset", {}]), "e9")
    assert answer[2] == "GenericError"


async def test_reply_to_no_call_is_ignored(csms, rig):
    await csms.send_raw(json.dumps([3, "never-asked", {"currentTime": "2026-01-01T00:00:00Z"}]))
    await csms.send_raw(json.dumps([4, "never-asked", "GenericError", "", {}]))
    await _still_alive(csms, rig)
    # and the next CALL of the charge point still gets its own answer
    n = len(csms.received)
    await rig.backend.heartbeat()
    await csms.wait_for("Heartbeat", after=n)
    assert rig.backend.online


async def test_reused_message_ids_from_central_system(csms, rig):
    """A central system that uses id "1" for every CALL still gets every CALL answered."""
    for frame in ([2, "1", "GetLocalListVersion", {}], [2, "1", "ClearCache", {}]):
        before = len([f for d, f in csms.frames if d == "in"])
        await csms.send_raw(json.dumps(frame))
        for _ in range(300):
            answers = [json.loads(f) for d, f in csms.frames[:] if d == "in"][before:]
            if any(a[0] == 3 and a[1] == "1" for a in answers if isinstance(a, list)):
                break
            import asyncio
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("no answer")
    await _still_alive(csms, rig)


async def test_handler_failure_is_internal_error_and_link_survives(csms, rig):
    async def broken(*a, **k):
        raise RuntimeError("boom")
    rig.station.set_available = broken
    answer = await _raw_call(csms, json.dumps([2, "e10", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}]), "e10")
    assert answer[2] == "InternalError"
    await _still_alive(csms, rig)
