"""The one entry point: run every benchmark, write docs/benchmarks.md and bench/results.json.

    python -m bench            # full run (about 30 minutes on a 2-core machine)
    python -m bench --quick    # smoke run, under a minute, same figures with fewer samples
    python bench/run.py --only rfid,meter

Each benchmark is a module `bench/b_*.py` with `run(quick) -> Result`;
`bench.report` turns the results into the Markdown page, with each target
of issue 6 and where it stands.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report  # noqa: E402
from bench.common import ROOT, Result, dump_json, library_versions, machine  # noqa: E402

ORDER = ("rfid", "meter", "replay", "tap", "process", "idle", "ocpp_peer", "ocpp_versions", "status_page", "safety",
         "mcsp_server", "controller", "sharing", "limit")
MODULES = {"rfid": "b_rfid", "meter": "b_meter", "replay": "b_replay", "tap": "b_tap", "process": "b_process",
           "ocpp_peer": "b_ocpp_peer", "ocpp_versions": "b_ocpp_versions", "idle": "idle_breakdown",
           "status_page": "b_status_page", "safety": "b_safety", "mcsp_server": "b_mcsp_server",
           "controller": "b_controller", "sharing": "b_sharing", "limit": "b_limit"}


def run_one(name: str, quick: bool) -> Result:
    import importlib

    module = importlib.import_module(f"bench.{MODULES[name]}")
    t0 = time.monotonic()
    try:
        result = module.run(quick)
    except Exception as exc:  # noqa: BLE001 - one benchmark failing must not lose the others
        result = Result(name, name, skipped=f"failed: {type(exc).__name__}: {exc}")
    result.seconds = time.monotonic() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples, shorter windows: under a minute")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER)}")
    p.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where the figures go")
    p.add_argument("--markdown", default=str(ROOT / "docs" / "benchmarks.md"), help="where the report goes")
    p.add_argument("--no-write", action="store_true", help="print the JSON only, write no files")
    p.add_argument("--merge", action="store_true",
                   help="keep the other benchmarks' figures from the existing JSON (rerun one part of a full run)")
    p.add_argument("--report-only", action="store_true", help="rewrite the Markdown from the existing JSON, run nothing")
    args = p.parse_args(argv)
    if args.report_only:
        import json

        data = json.loads(Path(args.json).read_text())
        results = {k: Result(k, r["title"], r["figures"], r["notes"], r["skipped"], r["seconds"])
                   for k, r in data["results"].items()}
        data["targets"] = report.targets(results)
        dump_json(Path(args.json), data)
        Path(args.markdown).write_text(report.markdown(data["machine"], results, data["targets"]))
        return 0
    names = [n.strip() for n in args.only.split(",")] if args.only else list(ORDER)
    unknown = set(names) - set(ORDER)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    os.chdir(ROOT)
    info = machine()
    info["libraries"] = library_versions()
    info["mode"] = "quick" if args.quick else "full"
    info["command"] = "python -m bench" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    results: dict[str, Result] = {}
    logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # the test central system's complaints about our calls
    if args.merge and Path(args.json).exists():
        import json

        old = json.loads(Path(args.json).read_text())
        for name, r in old.get("results", {}).items():
            if name not in names:
                results[name] = Result(name, r["title"], r["figures"], r["notes"], r["skipped"], r["seconds"])
        info["merged"] = f"{', '.join(names)} rerun on {info['date_utc']}; the rest from the run of " \
                         f"{old.get('machine', {}).get('date_utc')}"
        info["date_utc"] = old.get("machine", {}).get("date_utc", info["date_utc"])
        info["mode"] = old.get("machine", {}).get("mode", info["mode"])
    t0 = time.monotonic()
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, args.quick)
        r = results[name]
        print(f"[bench] {name}: {r.seconds:.1f} s{' (skipped: ' + r.skipped + ')' if r.skipped else ''}",
              file=sys.stderr, flush=True)
    info["total_seconds"] = round(time.monotonic() - t0, 1)
    results = {k: results[k] for k in ORDER if k in results}
    data = {"machine": info, "results": {k: v.to_json() for k, v in results.items()},
            "targets": report.targets(results)}
    if args.no_write:
        import json

        print(json.dumps(data, indent=2, default=str))
        return 0
    dump_json(Path(args.json), data)
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text(report.markdown(info, results, data["targets"]))
    print(f"[bench] wrote {args.json} and {args.markdown} in {info['total_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
