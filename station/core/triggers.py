"""The methods `transitions` binds on the connector machine, declared so that mypy knows them.

The machine (station/core/connector_state.py) is built with `Machine(...,
model_override=True)`: transitions then binds exactly the names declared here
and nothing else, so a trigger in the table that is not declared here is not
bound at all (and tests/core/test_charger_parts.py fails). Each body only runs if transitions did
not bind the name.
"""

from __future__ import annotations

from typing import Any

from station.core.states import State


def _unbound() -> bool:
    raise NotImplementedError("bound by transitions.Machine(model_override=True)")


class Triggers:
    state: State

    def trigger(self, name: str, *args: Any, **kwargs: Any) -> bool: return _unbound()
    def may_trigger(self, name: str, *args: Any, **kwargs: Any) -> bool: return _unbound()
    def plug(self) -> bool: return _unbound()
    def may_plug(self) -> bool: return _unbound()
    def tap(self) -> bool: return _unbound()
    def may_tap(self) -> bool: return _unbound()
    def abandon(self) -> bool: return _unbound()
    def may_abandon(self) -> bool: return _unbound()
    def begin(self) -> bool: return _unbound()
    def may_begin(self) -> bool: return _unbound()
    def draw(self) -> bool: return _unbound()
    def may_draw(self) -> bool: return _unbound()
    def idle(self) -> bool: return _unbound()
    def may_idle(self) -> bool: return _unbound()
    def pause(self) -> bool: return _unbound()
    def may_pause(self) -> bool: return _unbound()
    def resume(self) -> bool: return _unbound()
    def may_resume(self) -> bool: return _unbound()
    def end(self) -> bool: return _unbound()
    def may_end(self) -> bool: return _unbound()
    def release(self) -> bool: return _unbound()
    def may_release(self) -> bool: return _unbound()
    def hold(self) -> bool: return _unbound()
    def may_hold(self) -> bool: return _unbound()
    def unhold(self) -> bool: return _unbound()
    def may_unhold(self) -> bool: return _unbound()
    def disable(self) -> bool: return _unbound()
    def may_disable(self) -> bool: return _unbound()
    def enable(self) -> bool: return _unbound()
    def may_enable(self) -> bool: return _unbound()
    def fault(self) -> bool: return _unbound()
    def may_fault(self) -> bool: return _unbound()
    def recover(self) -> bool: return _unbound()
    def may_recover(self) -> bool: return _unbound()
    def is_AVAILABLE(self) -> bool: return _unbound()
    def is_PREPARING(self) -> bool: return _unbound()
    def is_CHARGING(self) -> bool: return _unbound()
    def is_SUSPENDED_EV(self) -> bool: return _unbound()
    def is_SUSPENDED_EVSE(self) -> bool: return _unbound()
    def is_FINISHING(self) -> bool: return _unbound()
    def is_RESERVED(self) -> bool: return _unbound()
    def is_UNAVAILABLE(self) -> bool: return _unbound()
    def is_FAULTED(self) -> bool: return _unbound()
