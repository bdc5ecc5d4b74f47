"""The delivery discipline of transaction messages, the same in both versions: one try per delivery.

A transaction message goes out once per `Backend.deliver` (one CALL, bounded by
the response timeout); the deliverer, not the version, waits between tries and
counts them in the outbox (station/core/delivery.py), so the count survives a
restart and a slow central system never keeps one delivery for minutes. A try
the central system does not process (a CALLERROR, no answer, an answer that
breaks the schema) ends the delivery with RetryLater, after `interval_s` x the
tries so far (OCPP 1.6 §4.7 TransactionMessageRetryInterval; OCPP 2.0.1
E13.FR.03 MessageAttemptInterval[TransactionEvent]); after the last of
`attempts` tries (TransactionMessageAttempts; E13.FR.02 MessageAttempts
[TransactionEvent]) with Undeliverable, and the deliverer holds the message for
the operator (station/held.py) while the next one goes. A lost link is not a
try: BackendOffline, and the same message is offered again once it is back.
What a version keeps before giving up (1.6: the transactions that may remain
open; 2.0.1: the event, for an identical resend) is its own.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from station.core.model import OutboxItem
from station.errors import RetryLater, Undeliverable

log = logging.getLogger(__name__)


def last_try(item: OutboxItem, attempts: int) -> bool:
    """This delivery is the message's last try."""
    return item.attempts + 1 >= attempts


def failed_try(action: str, item: OutboxItem, problem: str, *, attempts: int, interval_s: float) -> NoReturn:
    """The central system did not process this try: RetryLater after `interval_s` x tries so far, or
    Undeliverable once `attempts` tries failed."""
    tries = item.attempts + 1
    log.warning("%s (try %d of %d)", problem, tries, attempts)
    if tries >= attempts:
        raise Undeliverable(f"{action} not processed after {tries} tries (last: {problem})")
    raise RetryLater(f"{problem} (try {tries} of {attempts})", interval_s * tries)
