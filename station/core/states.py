"""The charging cycle, on one screen.

Which state the connector may go to, and on which trigger, is this table.
The states are those of an OCPP 1.6 connector (ChargePointStatus), so every
backend reports them as they are. The connector machine
(station/core/connector.py) fires the triggers as events arrive and decides
everything around them, without I/O; `station diagram` draws this table.

The cycle without a control pilot (a contactor and a kWh meter only):

    Available --tap--> Preparing --accepted--> SuspendedEV <--> Charging
        ^                  |                        |  (power above/below threshold)
        |               refused                 same card / stop button / unplug
        +------------------+                        v
        +--------------------------------------- Finishing

Preparing also means "plugged in, waiting for a card" when the station has an
EV-connected input or a control pilot. With a control pilot (a charge
controller) `draw` and `idle` follow the car's state C/D and B instead of the
power. SuspendedEVSE is a pause ordered by the station side (a charging limit
of 0, or with a charge controller less than its minimum current). Faulted and
Unavailable are reachable from anywhere; a fault during a session first ends
the session (the machine decides that).
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


A, P, C, SEV, SEVSE, F, R, U, X = (
    State.AVAILABLE, State.PREPARING, State.CHARGING, State.SUSPENDED_EV, State.SUSPENDED_EVSE,
    State.FINISHING, State.RESERVED, State.UNAVAILABLE, State.FAULTED,
)
IN_SESSION = (C, SEV, SEVSE)
IDLE = (A, R)

# trigger       from                  to     when (a condition on the charger, optional)
TRANSITIONS: list[dict] = [
    dict(trigger="plug",      source=A,                  dest=P),     # at Reserved, only the reserved card starts
    dict(trigger="tap",       source=[A, R, P],          dest=P),
    dict(trigger="abandon",   source=P,                  dest=P, conditions="ev_plugged"),  # refused or timed out, plugged
    dict(trigger="abandon",   source=P,                  dest=A, unless="reserved"),
    dict(trigger="abandon",   source=P,                  dest=R),
    dict(trigger="begin",     source=P,                  dest=SEV),   # authorized: session journaled, contactor closed
    dict(trigger="draw",      source=SEV,                dest=C),     # the car draws power
    dict(trigger="idle",      source=C,                  dest=SEV),   # the car stops drawing
    dict(trigger="pause",     source=[C, SEV],           dest=SEVSE), # station-side limit of 0 W
    dict(trigger="resume",    source=SEVSE,              dest=SEV),
    dict(trigger="end",       source=list(IN_SESSION),   dest=F),     # session closed in the journal
    dict(trigger="release",   source=F,                  dest=A, unless="reserved"),  # unplugged, or shown long enough
    dict(trigger="release",   source=F,                  dest=R),
    dict(trigger="hold",      source=A,                  dest=R),     # a reservation arrives
    dict(trigger="unhold",    source=R,                  dest=A),     # it expires or is cancelled
    dict(trigger="disable",   source=[A, R, P, F, X],    dest=U),
    dict(trigger="enable",    source=U,                  dest=A),
    dict(trigger="fault",     source=[A, R, P, F, U],    dest=X),     # sessions are ended before this
    dict(trigger="recover",   source=X,                  dest=A),
]


def mermaid() -> str:
    """A Mermaid state diagram generated from TRANSITIONS."""
    lines = ["stateDiagram-v2", f"    [*] --> {A.value}"]
    for t in TRANSITIONS:
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        label = t["trigger"]
        if "conditions" in t:
            label += f" [{t['conditions']}]"
        if "unless" in t:
            label += f" [not {t['unless']}]"
        for s in sources:
            lines.append(f"    {s.value} --> {t['dest'].value}: {label}")
    return "\n".join(lines) + "\n"


def dot() -> str:
    """The same diagram in Graphviz DOT (docs/states.svg is rendered from it)."""
    edges: dict[tuple[str, str], list[str]] = {}
    for t in TRANSITIONS:
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        for s in sources:
            edges.setdefault((s.value, t["dest"].value), []).append(t["trigger"])
    lines = ["digraph charging {", '  rankdir=LR; node [shape=box, style=rounded, fontname="sans"];',
             '  edge [fontname="sans", fontsize=10];']
    for (s, d), triggers in edges.items():
        lines.append(f'  "{s}" -> "{d}" [label="{", ".join(sorted(set(triggers)))}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
