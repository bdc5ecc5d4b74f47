"""The OCPP side of the privileged updater: hand a checked release over, and report what the updater did.

Where scripts/install-pi installed the updater (the spool exists; see
station/services/handover.py), a firmware job does not run pip itself: after
its own checks and `Installing`, it writes the release into the spool and
waits. The updater checks everything again as root, installs, writes its
result and restarts the station; the new daemon reads the result when it
boots (`collect`, before the end states still to send) and the job's end
state goes out as any end state that could not be sent before a restart
(`Jobs.keep_end`, then `send_pending`). If the daemon still runs when it
should not (no updater took the release, or it gave no result in time) the
job reports the failure itself.

The journal keeps which request was handed over (`HANDOVER_KEY`), so that a
hand-over cut short by a power failure still ends with InstallationFailed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from station.services.lazy import lazy

if TYPE_CHECKING:
    from station.services import handover
else:
    handover = lazy("station.services.handover")

log = logging.getLogger(__name__)

HANDOVER_KEY = "ocpp.firmware_handover"  # {kind, requestId} of the release the updater has


class Jobs(Protocol):
    """What this needs of station/backends/ocpp/jobs.py (which imports this module)."""

    b: Any

    def _refused(self, name: str, data: bytes) -> str | None: ...

    async def _restart(self) -> None: ...

    def keep_end(self, kind: str | None, request_id: int | None, status: str) -> None: ...

    async def send_pending(self) -> None: ...


def _spool(jobs: Jobs) -> Path:
    return handover.spool_dir(jobs.b.config.station.state_dir)


async def hand_over(jobs: Jobs, name: str, data: bytes, request: dict[str, Any]) -> bool:
    """Give a release to the updater and wait; True once its end state is dealt with. False: no updater is
    installed, or the daemon's own check refuses the release (the caller goes on as without an updater)."""
    spool = _spool(jobs)
    if not handover.available(spool) or jobs._refused(name, data):
        return False
    record = {"kind": request["kind"], "requestId": request.get("requestId")}
    jobs.b.store.put_json(HANDOVER_KEY, record)
    try:
        await asyncio.to_thread(handover.hand_over, spool, data, request)
    except OSError as exc:
        log.error("firmware %s cannot be handed to the updater: %s", name, exc)
        result: dict[str, Any] = {"status": "InstallationFailed", "reason": f"spool {spool}: {exc}"}
    else:
        log.info("firmware %s handed to the updater (station-update.service), which restarts the station", name)
        b = jobs.b
        result = await handover.wait(spool, b.scaled(handover.TAKE_S), b.scaled(handover.RESULT_S), b.scaled(1.0))
    installed = _accept(jobs, spool, record, result)
    await jobs.send_pending()
    if installed:
        await jobs._restart()
    return True


def collect(jobs: Jobs) -> None:
    """At a boot: the updater's result, kept as the end state still to send."""
    spool = _spool(jobs)
    record = jobs.b.store.get_json(HANDOVER_KEY, None)
    result = handover.read_result(spool)
    if result is None:
        if not record or handover.waiting(spool):
            return  # nothing handed over, or the updater has yet to take it (and restarts us when done)
        result = {"status": "InstallationFailed", "reason": "the updater left no result (interrupted?)"}
    _accept(jobs, spool, record or {"kind": result.get("kind"), "requestId": result.get("requestId")}, result)


def _accept(jobs: Jobs, spool: Path, record: dict[str, Any], result: dict[str, Any]) -> bool:
    """Keep the end state to send (before the result file goes: a restart in between loses nothing)."""
    status = result["status"]
    if status == "Installed":
        jobs.b.security.event("FirmwareUpdated", f"station {result.get('version') or ''} installed by the updater")
    else:
        log.error("firmware not installed (%s): %s", status, result.get("reason"))
    jobs.keep_end(record.get("kind"), record.get("requestId"), status)
    handover.remove_result(spool)
    jobs.b.store.put_json(HANDOVER_KEY, None)
    return status == "Installed"
