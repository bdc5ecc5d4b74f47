"""One exception tree for the station.

Every error says what is wrong and where. Errors caused by the other side of
a link (a meter, a backend) are kept apart from our own misuse, as h11 keeps
RemoteProtocolError apart from LocalProtocolError.
"""

from __future__ import annotations


class StationError(Exception):
    """Base of every error raised on purpose by station."""


class ConfigError(StationError):
    """A configuration file is unreadable or invalid; the message names file and key."""

    def __init__(self, file: str, key: str | None, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class HardwareError(StationError):
    """A hardware port failed (bus error, missing device)."""


class ModbusError(HardwareError):
    """A Modbus device did not answer or answered nonsense (the meter, the charge controller).

    `kind` tells the failures apart: "port" (the serial port or socket cannot be
    opened), "timeout" (no reply at all), "crc" (a reply with a wrong checksum),
    "garbled" (bytes that are no Modbus frame), "exception" (a Modbus exception
    reply), "decode" (registers that make no reading), "other". `hint` is what to
    check next, for people (may be empty). `code` is the Modbus exception code of
    an "exception" (else None).
    """

    def __init__(self, message: str, *, kind: str = "other", hint: str = "", code: int | None = None) -> None:
        self.kind, self.hint, self.code = kind, hint, code
        super().__init__(message)


class MeterError(ModbusError):
    """The kWh meter did not answer or answered nonsense (see ModbusError for `kind` and `hint`)."""


class ControllerError(ModbusError):
    """The charge controller (control pilot board) did not answer, answered nonsense, or refused
    a request (see ModbusError for `kind` and `hint`)."""


class ReaderError(HardwareError):
    """The RFID reader cannot be reached."""


class ContactorError(HardwareError):
    """The contactor did not follow its command (did not close, or welded)."""


class StorageError(StationError):
    """The journal cannot be written: the station must not charge without a record."""


class BackendError(StationError):
    """Base of backend errors."""


class BackendOffline(BackendError):
    """The backend cannot be reached now; the caller retries later."""


class RetryLater(BackendOffline):
    """The backend did not process a queued message (no answer, an error, nonsense): offer the
    same message again after `delay_s`, counting this as one of its tries (`OutboxItem.attempts`)."""

    def __init__(self, message: str, delay_s: float) -> None:
        self.delay_s = delay_s
        super().__init__(message)


class Undeliverable(BackendError):
    """The backend did not process a queued message in all its tries: it leaves the queue but is
    kept undelivered, with this reason, for the operator (`station sessions --resend`)."""


class ProtocolError(BackendError):
    """A peer broke a protocol. `remote` is True when the peer is at fault."""

    def __init__(self, message: str, *, remote: bool = True) -> None:
        self.remote = remote
        super().__init__(message)


class ScenarioError(StationError):
    """A scenario file is invalid or one of its expectations failed."""
