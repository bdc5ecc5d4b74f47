"""Torture: SIGKILL a real station daemon at random moments, restart it, check at the backend.

    python bench/torture.py --kills 300 --seed 1 --backend mcsp|ocpp|ocpp201 [--outages 0.3] [--budget 1800]

The command line of the kill test. The engine (the rounds, the kills, the checks at the MCSP
server's ledger) is scripts/harness/torture.py, and the OCPP judges are torture_ocpp.py and
torture_ocpp201.py beside it: the tests run the same engine (tests/test_torture.py), so it lives
where both may import it. docs/durability.md tells what each run proves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench  # noqa: E402, F401 - puts scripts/harness on sys.path, ahead of this folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--backend", choices=("mcsp", "ocpp", "ocpp201"), default="mcsp")
    p.add_argument("--outages", type=float, default=0.25, help="probability of a backend outage per round")
    p.add_argument("--budget", type=float, default=3600.0, help="seconds at most for the killing rounds")
    p.add_argument("--max-delay", type=float, default=4.0, help="kill delays are uniform in [0.05, this] s")
    p.add_argument("--aim", type=float, default=0.0,
                   help="OCPP: probability that a round's kill is aimed at a StartTransaction in flight")
    p.add_argument("--aim-ms", type=float, default=20.0,
                   help="aimed kills land uniformly in [0, this] ms after the central system got the StartTransaction")
    p.add_argument("--cs-latency-ms", type=float, default=0.0,
                   help="OCPP: the central system answers each StartTransaction this much later (it opens the "
                        "transaction at once)")
    p.add_argument("--workdir", help="keep everything here (default: a new temporary directory)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import tempfile

    from torture import torture  # scripts/harness/torture.py (bench/__init__.py put it first on sys.path)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="station-torture-"))

    def interrupted(signum, frame):  # SIGTERM like ^C: the running station process is killed too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    fig = asyncio.run(torture(work, args.kills, args.seed, backend=args.backend, budget_s=args.budget,
                              outages=args.outages, kill_range=(0.05, args.max_delay), aim=args.aim,
                              aim_ms=args.aim_ms, cs_latency_ms=args.cs_latency_ms,
                              say=lambda t: print(t, flush=True)))
    if args.json:
        print(json.dumps(asdict(fig), indent=2))
    else:
        print(f"seed {fig.seed}: {fig.kills} kills in {fig.rounds} rounds ({fig.early_exits} ended before their kill,"
              f" {fig.outages} with a backend outage), {fig.duration_s} s")
        print(f"journal: {fig.sessions} sessions ({fig.sessions_with_energy} with energy, {fig.power_loss} closed by"
              f" PowerLoss, {fig.offline_sessions} authorized offline, {fig.estimated} estimated), "
              f"{fig.aborted_taps} taps aborted, {fig.refused_taps} refused")
        if fig.backend == "ocpp201":
            print(f"central system (2.0.1): {fig.cs_transactions} transactions in {fig.cs_events} TransactionEvents "
                  f"({fig.repeated_events} sent again after a kill, all identical; {fig.offline_events} offline; "
                  f"{fig.seq_gaps} seqNo gaps), {fig.schema_failures} schema failures, {fig.billed_wh} Wh billed; "
                  f"meter advanced {fig.meter_advance_wh} Wh")
        elif fig.backend == "ocpp":
            print(f"central system: {fig.cs_transactions} transactions, {fig.duplicate_starts} duplicate "
                  f"StartTransactions ({fig.duplicates_after_kill} after a kill, {fig.aimed_duplicates} of them after "
                  f"one of the {fig.aimed_kills} aimed kills; {fig.duplicates_after_drop} after an outage's drop; the "
                  f"station sent {fig.resent_starts} StartTransactions again after one without an answer), "
                  f"{fig.repeated_stops} repeated StopTransactions, {fig.schema_failures} schema failures, "
                  f"{fig.open_at_cs} transactions left open (the station names {fig.named_open}; "
                  f"{fig.duplicates_stopped} duplicates it stopped at 0 Wh; latency {fig.cs_latency_ms:g} ms), "
                  f"window from the central system's receipt to the journaled transactionId (ms, median/95%/max) "
                  f"{fig.window_ms}, "
                  f"{fig.billed_wh} Wh billed; meter advanced {fig.meter_advance_wh} Wh")
        else:
            print(f"backend: {fig.ledger_rows} ledger rows ({fig.ledger_zero_rows} of taps that never charged), "
                  f"{fig.billed_wh} Wh billed; meter advanced {fig.meter_advance_wh} Wh")
        print(f"work directory: {work}")
        for f in fig.failures:
            print(f"FAILED: {f}")
        print("OK: nothing lost, nothing doubled" if fig.ok else f"{len(fig.failures)} failure(s)")
    return 0 if fig.ok else 1


if __name__ == "__main__":
    sys.exit(main())
