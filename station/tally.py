"""Counting what a flood brings, so that it cannot flood the log.

A listener on a building network or a noisy serial line may see thousands of bad
connections or lines a minute. `Tally` logs the first one after a quiet period at
once (WARNING, with its reason), then sums up the rest in one line per period:
the counts by reason and the busiest sources. `flush()` is called by a periodic
task (the MCSP server) or, lazily, by the next `note()` once a period has passed
(a line reader, which has no task of its own).
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger(__name__)


class Tally:
    def __init__(self, who: str, period_s: float = 60.0, logger: logging.Logger | None = None) -> None:
        self.who, self.period_s = who, period_s
        self.log = logger or log  # the lines go out under the listener's own logger when it gives one
        self.reasons: Counter[str] = Counter()  # since the last flush
        self.sources: Counter[str] = Counter()
        self.total: Counter[str] = Counter()  # since start (tests, the bench)
        self._quiet = True
        self._flushed_at: float | None = None

    @property
    def quiet(self) -> bool:
        """Nothing noted since the last flush that found nothing (the next note is logged at once)."""
        return self._quiet

    def note(self, reason: str, source: str = "", now: float | None = None) -> None:
        """One more; `now` (monotonic s) lets a caller without a periodic task flush lazily."""
        self.total[reason] += 1
        if self._quiet:
            self._quiet = False
            self._flushed_at = now
            self.log.warning("%s: %s%s; more of these are summed up every %.0f s", self.who, reason,
                        f" ({source})" if source else "", self.period_s)
            return
        self.reasons[reason] += 1
        if source:
            self.sources[source] += 1
        if now is not None and self._flushed_at is not None and now - self._flushed_at >= self.period_s:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log what was noted since the last flush, in one line."""
        self._flushed_at = now
        if not self.reasons:
            self._quiet = True  # nothing in a whole period: the next one is logged at once
            return
        n = sum(self.reasons.values())
        why = ", ".join(f"{r} {c}" for r, c in self.reasons.most_common(5))
        if len(self.reasons) > 5:
            why += f", {len(self.reasons) - 5} other reasons"
        who = ", ".join(f"{p} {c}" for p, c in self.sources.most_common(5))
        self.log.warning("%s, last %.0f s: %d more (%s)%s", self.who, self.period_s, n, why,
                    f"; from {who}" if who else "")
        self.reasons.clear()
        self.sources.clear()
