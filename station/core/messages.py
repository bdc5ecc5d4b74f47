"""Every text the LCD shows, in English and German, for 16x2 and 20x4 screens.

Theory of operation
-------------------
`screen(key, lang, cols, rows, **fields)` returns exactly `rows` strings,
none longer than `cols`. It is a pure function: the core decides *what* to
say (a key and its fields), this module decides *how* it reads on a given
screen. A two-row screen gets the terse layout, a four-row screen the
spelled-out one; where a phrase has several wordings (a tuple below, longest
first), the longest that fits the width is taken, so a 20-column screen says
"Fahrzeug anschließen" where a 16-column one says "Auto anschließen".

Every key accepts `offline=True`: the backend link is down, and the screen
says so: on a four-row screen as a full line ("Backend offline") on a free
row; else as a right-aligned "offline" on the last row with room; else (two
rows, both full) the screen's least important row gives way to the full
line. Two-row screens about something else (another card, storage
refused, a fault) show no marker rather than suggest the link as the cause.

Numbers follow the language: "12.345 kWh" / "12,345 kWh". Energy is
truncated, never rounded up: the screen must not show more than was
delivered.

Keys and their fields (all fields optional unless marked):
  booting          name
  available        name (station name)
  authorizing      -
  accepted         owner (apartment or name of the tag)
  plug_in          owner (tapped first: plug in now)
  tap_card         - (plugged in first: tap now)
  refused          message (backend's text, shown verbatim), status (OCPP idTagInfo
                   status: Blocked, Expired, Invalid, ConcurrentTx)
  other_card       -
  charging         energy_wh (int), power_w, elapsed_s
  suspended_ev     energy_wh, elapsed_s
  suspended_evse   energy_wh, elapsed_s
  finishing        energy_wh, elapsed_s, unplug (bool: ask to unplug)
  no_power_timeout energy_wh
  reserved         until (text, e.g. "18:30")
  unavailable      -
  faulted          reason: "meter", "reader", "contactor", "welded", "storage" (also
                   PowerMeterFailure, ReaderFailure, ContactorOpen, ContactorWelded,
                   ContactorFeedback, Storage), the pilot's and the charge controller's
                   (ResidualCurrent, DiodeCheck, VentilationRequired, PilotError, CableError,
                   ControllerFailure, ControllerSetup, ...),
                   or any other text (shown as is)
  offline          cached (bool, default True: known cards still work)
  storage_refused  -
  meter_fault      - (a tap refused because the meter is faulty)

Fields a screen does not use are ignored, so the core may pass one set
(name, offline, energy_wh, power_w, ...) to every key.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

LANGUAGES = ("en", "de")

Phrase = str | tuple[str, ...]

# Phrases per language. A tuple lists wordings longest first; `_pick` takes
# the longest that fits.
_TEXT: dict[str, dict[str, Phrase]] = {
    "en": {
        "starting": "Starting...",
        "ready": "Ready",
        "tap": ("Tap card to charge", "Tap card"),
        "checking": "Checking card",
        "wait": "Please wait",
        "accepted": "Card accepted",
        "starting_charge": "Starting charge",
        "plug_in": "Plug in car",
        "connected": "Car connected",
        "meter_error": "Meter error",
        "refused": "Card refused",
        "not_authorized": "Not authorized",
        "blocked": "Card blocked",
        "expired": "Card expired",
        "invalid": "Card not valid",
        "concurrent": ("Card already in use", "Card in use"),
        "other_s1": "Card not valid",
        "other_s2": "for this session",
        "other_1": "Card not valid for",
        "other_2": "this session",
        "other_3": ("Someone is charging", "Session running"),
        "charging": "Charging",
        "power": "Power",
        "energy": "Energy",
        "time": "Time",
        "susp_ev": ("Car not charging", "Car paused"),
        "susp_ev_1": "Connected, car is",
        "susp_ev_2": "not drawing power",
        "susp_evse": "Paused by limit",
        "susp_evse_1": "Charging paused",
        "susp_evse_2": "by station limit",
        "finished": ("Charging finished", "Session ended"),
        "unplug": ("Please unplug car", "Unplug car"),
        "no_power_1": ("Car drew no power", "No power drawn"),
        "no_power_2": "Session ended",
        "reserved": "Reserved",
        "reserved_until": ("Reserved until {until}", "Reserved {until}"),
        "out_of_service": "Out of service",
        "not_available": "Not available",
        "fault": "Fault",
        "call_service": ("Please call service", "Call service"),
        "fault_meter": "Meter error",
        "fault_reader": ("Card reader error", "Reader error"),
        "fault_contactor": "Contactor error",
        "fault_welded": "Contactor welded",
        "fault_storage": "Storage error",
        "fault_rcd": "Residual current",
        "fault_diode": ("Car diode missing", "Car diode error"),
        "fault_ventilation": ("Ventilation needed", "Vent. required"),
        "fault_pilot": ("Pilot signal error", "Pilot error"),
        "fault_cable": "Cable error",
        "fault_controller": "Controller error",
        "fault_controller_setup": ("Controller set-up", "Controller setup"),
        "storage_full": "Storage full",
        "storage_read_only": ("Storage read-only", "Storage locked"),
        "backend_offline": "Backend offline",
        "known_only": "Known cards only",
        "try_later": "Try again later",
        "offline_marker": "offline",
        "cannot_record": "Cannot record",
        "the_session": "the session",
        "charging_refused": "Charging refused",
    },
    "de": {
        "starting": "Startet...",
        "ready": "Bereit",
        "tap": "Karte vorhalten",
        "checking": ("Karte wird geprüft", "Prüfe Karte"),
        "wait": "Bitte warten",
        "accepted": "Karte akzeptiert",
        "starting_charge": ("Ladevorgang startet", "Ladung startet"),
        "plug_in": ("Fahrzeug anschließen", "Auto anschließen"),
        "connected": ("Fahrzeug verbunden", "Auto verbunden"),
        "meter_error": "Zählerfehler",
        "refused": "Karte abgelehnt",
        "not_authorized": "Nicht berechtigt",
        "blocked": "Karte gesperrt",
        "expired": "Karte abgelaufen",
        "invalid": "Karte ungültig",
        "concurrent": ("Karte bereits aktiv", "Karte schon aktiv"),
        "other_s1": "Karte ungültig",
        "other_s2": "für diese Ladung",
        "other_1": ("Karte ungültig für", "Karte ungültig"),
        "other_2": ("diesen Ladevorgang", "für diese Ladung"),
        "other_3": ("Anderer Nutzer lädt", "Ladung läuft"),
        "charging": ("Ladevorgang", "Lädt"),
        "power": "Leistung",
        "energy": "Energie",
        "time": "Dauer",
        "susp_ev": "Auto lädt nicht",
        "susp_ev_1": "Fahrzeug nimmt",
        "susp_ev_2": "keine Leistung auf",
        "susp_evse": "Pausiert (Limit)",
        "susp_evse_1": "Ladevorgang",
        "susp_evse_2": "pausiert (Limit)",
        "finished": ("Ladevorgang beendet", "Ladung beendet"),
        "unplug": ("Bitte Auto abstecken", "Auto abstecken"),
        "no_power_1": ("Fahrzeug lädt nicht", "Kein Ladestrom"),
        "no_power_2": ("Ladevorgang beendet", "Ladung beendet"),
        "reserved": "Reserviert",
        "reserved_until": ("Reserviert bis {until}", "Reserviert {until}"),
        "out_of_service": "Außer Betrieb",
        "not_available": "Nicht verfügbar",
        "fault": "Störung",
        "call_service": ("Bitte Service rufen", "Service rufen"),
        "fault_meter": "Zählerfehler",
        "fault_reader": ("Kartenleser-Fehler", "Leserfehler"),
        "fault_contactor": "Schützfehler",
        "fault_welded": "Schütz verklebt",
        "fault_storage": "Speicherfehler",
        "fault_rcd": ("Fehlerstrom (FI)", "Fehlerstrom"),
        "fault_diode": ("Fahrzeugdiode fehlt", "Diodenfehler"),
        "fault_ventilation": ("Belüftung gefordert", "Belüftung nötig"),
        "fault_pilot": ("Pilotsignal-Fehler", "Pilotfehler"),
        "fault_cable": "Kabelfehler",
        "fault_controller": ("Ladesteuerungsfehler", "Steuerungsfehler"),
        "fault_controller_setup": ("Steuerung einrichten", "Steuerung einr."),
        "storage_full": "Speicher voll",
        "storage_read_only": ("Speicher nur lesbar", "Schreibschutz"),
        "backend_offline": "Server offline",
        "known_only": ("Nur bekannte Karten", "Nur bek. Karten"),
        "try_later": "Später versuchen",
        "offline_marker": "offline",
        "cannot_record": "Speicherfehler",
        "the_session": "Laden nicht möglich",
        "charging_refused": "Laden abgelehnt",
    },
}

# Fault reasons by code, with the OCPP error codes and vendor codes the core uses as aliases.
_FAULTS = {
    "meter": "meter", "powermeterfailure": "meter",
    "reader": "reader", "readerfailure": "reader",
    "contactor": "contactor", "contactorfeedback": "contactor", "contactoropen": "contactor",
    "welded": "welded", "contactorwelded": "welded",
    "storage": "storage", "journalerror": "storage",
    "journalfull": "full", "journalreadonly": "read_only",
    # the car's pilot and the charge controller (station/core/pilot.py)
    "residualcurrent": "rcd", "groundfailure": "rcd", "diodecheck": "diode", "ventilationrequired": "ventilation",
    "piloterror": "pilot", "cableerror": "cable", "controllercontactor": "contactor",
    "controllerfailure": "controller", "controllerunavailable": "controller", "controllerfault": "controller",
    "controllersetup": "controller_setup",
}
_STATUSES = {"blocked": "blocked", "expired": "expired", "invalid": "invalid",
             "concurrenttx": "concurrent", "concurrent": "concurrent"}


# --- formatting ----------------------------------------------------------------------------


def _decimal(text: str, lang: str) -> str:
    return text.replace(".", ",") if lang == "de" else text


def format_energy(wh: int | None, lang: str = "en") -> str:
    """Energy so far, truncated: '850 Wh', '12.345 kWh', '123.45 kWh', '1234.5 kWh'."""
    if wh is None:
        return "-- kWh"
    wh = int(wh)
    sign, wh = ("-", -wh) if wh < 0 else ("", wh)
    if wh < 1000:
        text = f"{wh} Wh"
    elif wh < 100_000:
        text = f"{wh // 1000}.{wh % 1000:03d} kWh"
    elif wh < 1_000_000:
        text = f"{wh // 1000}.{wh % 1000 // 10:02d} kWh"
    else:
        text = f"{wh // 1000}.{wh % 1000 // 100} kWh"
    return sign + _decimal(text, lang)


def format_power(w: float | None, lang: str = "en") -> str:
    """'850 W', '7.4 kW'; '' when unknown."""
    if w is None:
        return ""
    if abs(w) < 1000:
        return f"{round(w)} W"
    return _decimal(f"{w / 1000:.1f} kW", lang)


def format_duration(seconds: float | None) -> str:
    """'0:05:07' (hours:minutes:seconds); '' when unknown."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --- layout helpers ----------------------------------------------------------------------------


class _Ctx:
    def __init__(self, lang: str, cols: int, rows: int) -> None:
        self.lang, self.cols, self.rows = lang, cols, rows
        self.big = rows >= 4
        self.offline = False
        self.texts = _TEXT[lang]

    def t(self, name: str, width: int | None = None, **fmt: Any) -> str:
        """The longest wording of phrase `name` that fits `width` (default: the screen)."""
        return _pick(self.texts[name], self.cols if width is None else width, **fmt)

    def lr(self, left: str, right: str, width: int | None = None) -> str:
        """`left` and `right` on one line, right-aligned; right dropped if it cannot fit."""
        width = self.cols if width is None else width
        if not right:
            return left
        if len(left) + 1 + len(right) > width:
            return left
        return left + right.rjust(width - len(left))

    def lr_phrase(self, name: str, right: str) -> str:
        """Phrase `name` on the left, taking the longest wording that leaves room for `right`."""
        room = self.cols - (len(right) + 1 if right else 0)
        return self.lr(self.t(name, room), right)

    def energy(self, wh: int | None) -> str:
        return format_energy(wh, self.lang)

    def labelled(self, label: str, value: str) -> str:
        """'Energy 12.345 kWh', or just the value when the label does not fit."""
        line = f"{self.t(label)} {value}"
        return line if len(line) <= self.cols else value


def _pick(phrase: Phrase, width: int, **fmt: Any) -> str:
    options = (phrase,) if isinstance(phrase, str) else phrase
    options = tuple(o.format(**fmt) for o in options) if fmt else options
    for option in options:
        if len(option) <= width:
            return option
    return options[-1]


def _wrap(text: str, width: int, max_lines: int) -> list[str]:
    """Word-wrap `text`; what does not fit ends in '..'."""
    text = " ".join(str(text).split())
    if not text or max_lines <= 0:
        return []
    return textwrap.wrap(text, width, max_lines=max_lines, placeholder="..", break_on_hyphens=True) or [text[:width]]


# --- the screens ---------------------------------------------------------------------------------


def _booting(c: _Ctx, name: str = "", **_: Any) -> list[str]:
    return [name or "", c.t("starting")]


def _available(c: _Ctx, name: str = "", **_: Any) -> list[str]:
    if c.big:
        return [name, c.t("ready"), c.t("tap")]
    return [name or c.t("ready"), c.t("tap")]


def _authorizing(c: _Ctx, **_: Any) -> list[str]:
    return [c.t("checking"), c.t("wait")]


def _accepted(c: _Ctx, owner: str | None = None, **_: Any) -> list[str]:
    if c.big:
        return [c.t("accepted"), owner or "", c.t("starting_charge")]
    return [c.t("accepted"), owner or c.t("starting_charge")]


def _plug_in(c: _Ctx, owner: str | None = None, **_: Any) -> list[str]:
    if c.big:
        return [c.t("accepted"), owner or "", c.t("plug_in")]
    return [c.t("accepted"), c.t("plug_in")]


def _tap_card(c: _Ctx, **_: Any) -> list[str]:
    return [c.t("connected"), c.t("tap")]


def _meter_fault(c: _Ctx, **_: Any) -> list[str]:
    return [c.t("meter_error"), c.t("charging_refused")]


def _refused(c: _Ctx, message: str | None = None, status: str | None = None, **_: Any) -> list[str]:
    title = c.t("refused")
    kind = _STATUSES.get(str(status).lower()) if status else None
    detail = c.t(kind) if kind else c.t("not_authorized")
    message = " ".join(str(message).split()) if message else ""
    if not message:
        return [title, detail]
    if c.big:
        return [title, *_wrap(message, c.cols, c.rows - 1)]
    if len(message) <= c.cols:
        return [title, message]
    if c.offline:  # the refusal is likely the link's fault: say so, and as much of the text as fits
        return [c.t("backend_offline"), *_wrap(message, c.cols, c.rows - 1)]
    # Two rows and a long text: the backend's words explain more than our title.
    return _wrap(message, c.cols, c.rows)


def _other_card(c: _Ctx, **_: Any) -> list[str]:
    if c.big:
        return [c.t("other_1"), c.t("other_2"), c.t("other_3")]
    return [c.t("other_s1"), c.t("other_s2")]


def _charging(c: _Ctx, energy_wh: int | None = None, power_w: float | None = None,
              elapsed_s: float | None = None, **_: Any) -> list[str]:
    power = format_power(power_w, c.lang)
    if c.big:
        lines = [c.t("charging"), c.labelled("energy", c.energy(energy_wh))]
        lines.append(c.labelled("power", power) if power else "")
        if elapsed_s is not None:
            lines.append(c.labelled("time", format_duration(elapsed_s)))
        return lines
    return [c.lr_phrase("charging", power), c.lr(c.energy(energy_wh), format_duration(elapsed_s))]


def _suspended_ev(c: _Ctx, energy_wh: int | None = None, elapsed_s: float | None = None, **_: Any) -> list[str]:
    if c.big:
        return [c.t("susp_ev_1"), c.t("susp_ev_2"), c.labelled("energy", c.energy(energy_wh))]
    return [c.t("susp_ev"), c.lr(c.energy(energy_wh), format_duration(elapsed_s))]


def _suspended_evse(c: _Ctx, energy_wh: int | None = None, elapsed_s: float | None = None, **_: Any) -> list[str]:
    if c.big:
        return [c.t("susp_evse_1"), c.t("susp_evse_2"), c.labelled("energy", c.energy(energy_wh))]
    return [c.t("susp_evse"), c.lr(c.energy(energy_wh), format_duration(elapsed_s))]


def _finishing(c: _Ctx, energy_wh: int | None = None, elapsed_s: float | None = None,
               unplug: bool = False, **_: Any) -> list[str]:
    if c.big:
        lines = [c.t("finished"), c.labelled("energy", c.energy(energy_wh))]
        if elapsed_s is not None:
            lines.append(c.labelled("time", format_duration(elapsed_s)))
        if unplug:
            lines.append(c.t("unplug"))
        return lines
    return [c.t("finished"), c.t("unplug") if unplug else c.energy(energy_wh)]


def _no_power_timeout(c: _Ctx, energy_wh: int | None = None, **_: Any) -> list[str]:
    lines = [c.t("no_power_1"), c.t("no_power_2")]
    if c.big and energy_wh is not None:
        lines.append(c.labelled("energy", c.energy(energy_wh)))
    return lines


def _reserved(c: _Ctx, until: str | None = None, **_: Any) -> list[str]:
    title = c.t("reserved_until", until=until) if until else c.t("reserved")
    return [title, c.t("tap")]


def _unavailable(c: _Ctx, **_: Any) -> list[str]:
    return [c.t("out_of_service"), c.t("not_available")]


def _faulted(c: _Ctx, reason: str | None = None, **_: Any) -> list[str]:
    key = _FAULTS.get(str(reason).lower().replace("_", "").replace(" ", "")) if reason else None
    if key:
        detail = [c.t(f"fault_{key}")]
    elif reason:
        detail = _wrap(str(reason), c.cols, c.rows - 1 - (1 if c.big else 0))
    else:
        detail = [c.t("call_service")]
    lines = [c.t("fault"), *detail]
    if c.big and reason:
        lines.append(c.t("call_service"))
    return lines


def _offline(c: _Ctx, cached: bool = True, **_: Any) -> list[str]:
    return [c.t("backend_offline"), c.t("known_only") if cached else c.t("try_later")]


def _storage_refused(c: _Ctx, **_: Any) -> list[str]:
    if c.big:
        return [c.t("cannot_record"), c.t("the_session"), c.t("charging_refused")]
    return [c.t("cannot_record"), c.t("charging_refused")]


def _storage_fault(c: _Ctx, reason: str | None = None, **_: Any) -> list[str]:
    """Idle with a journal that cannot be written: the station refuses sessions and says why."""
    kind = _FAULTS.get(str(reason).lower()) if reason else None
    title = c.t(f"storage_{kind}") if kind in ("full", "read_only") else c.t("fault_storage")
    if c.big and c.t("cannot_record") != title:
        return [c.t("cannot_record"), title, c.t("charging_refused")]
    return [title, c.t("charging_refused")]


_SCREENS: dict[str, Callable[..., list[str]]] = {
    "booting": _booting,
    "available": _available,
    "authorizing": _authorizing,
    "accepted": _accepted,
    "plug_in": _plug_in,
    "tap_card": _tap_card,
    "refused": _refused,
    "other_card": _other_card,
    "charging": _charging,
    "suspended_ev": _suspended_ev,
    "suspended_evse": _suspended_evse,
    "finishing": _finishing,
    "no_power_timeout": _no_power_timeout,
    "reserved": _reserved,
    "unavailable": _unavailable,
    "faulted": _faulted,
    "offline": _offline,
    "storage_refused": _storage_refused,
    "storage_fault": _storage_fault,
    "meter_fault": _meter_fault,
}

KEYS: tuple[str, ...] = tuple(_SCREENS)


def _compose(key: str, lang: str, cols: int, rows: int, fields: dict[str, Any]) -> list[str]:
    """The lines as laid out, before the final cut (tests check these fit)."""
    if key not in _SCREENS:
        raise KeyError(f"no LCD message {key!r}; known: {', '.join(KEYS)}")
    if lang not in _TEXT:
        raise ValueError(f"no LCD texts for language {lang!r}; known: {', '.join(LANGUAGES)}")
    if cols < 8 or rows < 1:
        raise ValueError(f"LCD size {cols}x{rows} is too small")
    fields = dict(fields)
    offline = bool(fields.pop("offline", False))
    ctx = _Ctx(lang, cols, rows)
    ctx.offline = offline
    lines = [line.rstrip() for line in _SCREENS[key](ctx, **fields)][:rows]
    lines += [""] * (rows - len(lines))
    if offline and key != "offline":
        lines = _mark_offline(ctx, key, lines)
    return lines


# On a 2-row screen without room for the marker, this row gives way to the
# full "Backend offline" line. None: a 2-row screen about something else (a
# fault, another card, storage), where "offline" would read as its cause,
# shows no marker.
_SPARE_ROW: dict[str, int | None] = {
    "booting": 0, "available": 0, "authorizing": 1, "accepted": 1, "plug_in": 0, "refused": 0,
    "other_card": None, "charging": 0, "suspended_ev": 1, "suspended_evse": 1, "finishing": 0,
    "no_power_timeout": 1, "reserved": 1, "unavailable": 1, "faulted": None, "offline": None,
    "storage_refused": None, "storage_fault": None, "tap_card": 0, "meter_fault": None,
}


def _mark_offline(c: _Ctx, key: str, lines: list[str]) -> list[str]:
    full, marker = c.t("backend_offline"), c.t("offline_marker")
    if full in lines or (not c.big and _SPARE_ROW.get(key) is None):
        return lines
    empty = [i for i, line in enumerate(lines) if not line.strip()]
    if empty and (c.big or len(lines) > 2):
        lines[empty[-1]] = full
        return lines
    for i in reversed(range(len(lines))):
        # Two spaces at least, so the marker does not read as part of the sentence.
        if len(lines[i]) + 2 + len(marker) <= c.cols:
            lines[i] = c.lr(lines[i], marker)
            return lines
    spare = len(lines) - 1 if len(lines) > 2 else _SPARE_ROW.get(key)
    if spare is not None:
        lines[spare] = full
    return lines


def screen(key: str, lang: str, cols: int, rows: int, **fields: Any) -> list[str]:
    """The LCD lines for `key`: exactly `rows` strings, each at most `cols` long.

    Raises KeyError for an unknown key, ValueError for an unknown language.
    """
    return [line[:cols].rstrip() for line in _compose(key, lang, cols, rows, fields)]
