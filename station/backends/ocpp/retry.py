"""The delivery discipline of transaction messages, the same in both versions: tries, and the wait between.

A transaction message the central system does not process (a CALLERROR, no
answer, or an answer that breaks the schema) is tried `attempts` times,
waiting `interval_s` x the number of earlier tries in between (OCPP 1.6
§4.7 TransactionMessageAttempts / TransactionMessageRetryInterval; OCPP
2.0.1 E13 "Transaction-related message not accepted by CSMS", E13.FR.02/03:
OCPPCommCtrlr.MessageAttempts and MessageAttemptInterval of instance
TransactionEvent). Then the caller decides (1.6 keeps a StartTransaction and
moves on with the rest; 2.0.1 moves on). A lost link is not a try: it raises LinkDown and the deliverer
offers the same message again once the link is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from station.backends.ocppj.rpc import CallFailed, InvalidResponse, LinkDown

log = logging.getLogger(__name__)


class Exhausted(Exception):
    """Every try failed."""


async def transaction_call(request: Callable[[], Awaitable[dict[str, Any]]], action: str, *, attempts: int,
                           interval_s: Callable[[int], float],
                           before_send: Callable[[], None] | None = None,
                           salvage: Callable[[InvalidResponse], dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """`request()` up to `attempts` times, `interval_s(n)` seconds after the n-th failed try; `before_send()`
    runs before each try; `salvage(exc)` may still make use of an off-schema answer (else None)."""
    for n in range(attempts):
        if before_send is not None:
            before_send()
        try:
            return await request()
        except InvalidResponse as exc:
            answer = salvage(exc) if salvage is not None else None
            if answer is not None:
                return answer
            log.warning("%s (try %d of %d)", exc, n + 1, attempts)
        except LinkDown:
            raise
        except CallFailed as exc:
            log.warning("%s (try %d of %d)", exc, n + 1, attempts)
        if n + 1 < attempts:
            await asyncio.sleep(interval_s(n + 1))
    raise Exhausted(f"{action} not processed after {attempts} tries")
