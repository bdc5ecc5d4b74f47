"""The torture test: a real station daemon process on emulated hardware, killed with SIGKILL at
seeded random moments and restarted, against the MCSP reference server; then, at the backend's
end, every session billed exactly once and the billed energy equal to the meter's advance.

The engine and its longer run (hundreds of kills) are in bench/torture.py; see docs/durability.md.
"""

from __future__ import annotations

import pytest

from bench.torture import torture


@pytest.mark.timeout(300)
async def test_random_sigkills_lose_no_session_no_wh_and_double_nothing(tmp_path):
    fig = await torture(tmp_path, kills=40, seed=20261122, budget_s=75.0, outages=0.2, kill_range=(0.05, 2.2))
    report = (f"{fig.kills} kills, {fig.sessions} sessions ({fig.power_loss} PowerLoss, {fig.offline_sessions} offline), "
              f"{fig.billed_wh} Wh billed, meter +{fig.meter_advance_wh} Wh, {fig.duration_s} s")
    print("\ntorture: " + report)
    assert fig.failures == [], report + "\n" + "\n".join(fig.failures)
    # The run did what it claims (a busy machine may get through fewer rounds in the budget).
    assert fig.kills >= 15, report
    assert fig.sessions_with_energy >= 5 and fig.power_loss >= 3, report
    assert fig.billed_wh == fig.meter_advance_wh > 0
