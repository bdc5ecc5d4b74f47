"""docs/benchmarks.md from the results: the targets of issue 6, then one table per benchmark.

Everything on the page comes from the figures of the run that wrote it;
the explanations of a missed target quote the measured floor.
"""

from __future__ import annotations

from typing import Any

from bench.common import Result

BACKENDS = ("local", "mcsp", "ocpp", "ocpp201")  # ocpp: 1.6; ocpp201: the same backend speaking 2.0.1


def _get(results: dict[str, Result], name: str, *path: str) -> Any:
    r = results.get(name)
    if r is None or r.skipped:
        return None
    node: Any = r.figures
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1 and v != 0 else f"{v:.{digits}f}"
    return str(v)


# ---------------------------------------------------------------------------- targets
def targets(results: dict[str, Result]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def target(tid: str, text: str, rows: list[tuple[str, Any, bool | None]], why: str = "") -> None:
        measured = [r for r in rows if r[1] is not None and r[2] is not None]
        if not measured:
            status = "not measured"
        elif all(ok for _, _, ok in measured):
            status = "met" if len(measured) == len(rows) else "met where measured"
        else:
            status = "missed"
        out.append({"id": tid, "target": text, "status": status,
                    "values": [{"what": w, "value": v, "met": ok} for w, v, ok in rows], "why": why})

    t = _get(results, "rfid", "summary", "ours_empty_poll_transfers")
    target("empty_poll", "Empty poll: at most 12 SPI transfers",
           [("station reader, realtime chip timer", t, None if t is None else t <= 12),
            ("station reader, instant timer", _get(results, "rfid", "ours_empty_instant", "spi_transfers_per_poll"),
             None if t is None else _get(results, "rfid", "ours_empty_instant", "spi_transfers_per_poll") <= 12)],
           why=_why_poll(results))

    rows = []
    for kind in BACKENDS:
        v = _get(results, "process", f"cpu_{kind}", "idle", "station_own_pct_of_one_core")
        rows.append((f"{kind}: % of one core, idle (emulators excluded)", v, None if v is None else v < 0.5))
    target("idle_cpu", "Idle daemon under 0.5 % of one core with the reader at 10 Hz", rows, why=_why_cpu(results))

    rows = []
    for kind in BACKENDS:
        p95 = _get(results, "tap", kind, "tap_to_contactor_closed", "p95_ms")
        poll = _get(results, "tap", kind, "poll_interval_ms")
        rows.append((f"{kind}: p95 ms (limit {poll + 20:.0f})" if poll else f"{kind}: p95 ms", p95,
                     None if p95 is None or poll is None else p95 <= poll + 20))
    target("tap", "Tap to contactor p95 within the poll interval + 20 ms, any backend on loopback", rows,
           why=_why_tap(results))

    rows = []
    for kind in BACKENDS:
        v = _get(results, "process", f"run_{kind}", "peak_rss_mib")
        rows.append((f"{kind}: peak RSS MiB of `station run`", v, None if v is None else v <= 35))
    target("rss", "Peak RSS at most 35 MiB", rows, why=_why_rss(results))

    rows = []
    for kind in BACKENDS:
        v = _get(results, "process", f"run_{kind}", "start_to_available_ms")
        rows.append((f"{kind}: ms from exec to READY=1 / Available", v, None if v is None else v < 1000))
    target("startup", "Start to Available under 1 s", rows, why=_why_startup(results))

    rows = []
    for kind in ("mcsp", "local"):
        for n in (1000, 10000):
            v = _get(results, "replay", f"{kind}_{n}", "msg_per_s")
            order = _get(results, "replay", f"{kind}_{n}", "server_order_kept" if kind == "mcsp" else "station_order_kept")
            if v is not None:
                rows.append((f"{kind}, {n} messages: msg/s (order kept: {_fmt(order)})", v, v >= 500 and bool(order)))
    target("replay", "Offline replay at least 500 messages per second", rows)

    rows = []
    for row in (_get(results, "limit", "rows") or []):
        if "SetChargingProfile" in row["path"] or "read by the station" in row["path"]:
            rows.append((f"{row['path']}: worst ms", row["max_ms"], row["max_ms"] < 1000))
    if rows:
        target("limit", "Issue 20: a new limit on the charge controller's register within a second", rows)
    return out


def _why_poll(results: dict[str, Result]) -> str:
    stock = _get(results, "rfid", "summary", "stock_empty_poll_transfers")
    if stock is None:
        return ""
    return (f"The stock SimpleMFRC522 empty poll costs {stock:.0f} transfers (its wait loop ignores the timer "
            "interrupt and reads CommIrqReg 2000 times).")


def _why_cpu(results: dict[str, Result]) -> str:
    parts = []
    for kind in BACKENDS:
        idle = _get(results, "process", f"cpu_{kind}", "idle")
        if idle:
            parts.append(f"{kind}: {idle['station_own_cpu_s_per_min']:.3f} CPU s/min own + "
                         f"{idle['chip_emulator_cpu_s_per_min']:.3f} in the chip emulator")
    return "; ".join(parts)


def _why_tap(results: dict[str, Result]) -> str:
    parts = []
    for kind in BACKENDS:
        d = _get(results, "tap", kind, "detect_to_contactor_closed", "p95_ms")
        r = _get(results, "tap", kind, "tap_to_reader_detect", "p95_ms")
        if d is not None:
            parts.append(f"{kind}: reader detect p95 {r:.0f} ms, detect->contactor p95 {d:.0f} ms")
    return "; ".join(parts)


def _why_rss(results: dict[str, Result]) -> str:
    floor = _get(results, "process", "floor")
    if not floor:
        return ""
    keys = ["python -c pass", "+ asyncio", "+ websockets, ocpp.v16", "+ ocpp backend"]
    return "Floor (peak RSS of processes that only import): " + ", ".join(
        f"{k} {floor[k]['peak_rss_mib']} MiB" for k in keys if k in floor and "peak_rss_mib" in floor[k])


def _why_startup(results: dict[str, Result]) -> str:
    floor = _get(results, "process", "floor")
    if not floor:
        return ""
    keys = ["python -c pass", "import station.daemon + sim (local)", "+ ocpp backend"]
    return "Import floor (wall): " + ", ".join(f"{k} {floor[k]['wall_ms']} ms" for k in keys
                                              if k in floor and "wall_ms" in floor[k])


# ---------------------------------------------------------------------------- page
def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def markdown(info: dict[str, Any], results: dict[str, Result], tgs: list[dict[str, Any]]) -> str:
    L: list[str] = []
    L += ["# Benchmarks", "",
          "Generated by `python -m bench` (bench/run.py); the same figures are in `bench/results.json`. "
          "Do not edit by hand: rerun.", ""]
    libs = ", ".join(f"{k} {v}" for k, v in info.get("libraries", {}).items())
    L += _table(["machine", "value"], [
        ["date (UTC)", info["date_utc"]], ["mode", info["mode"]], ["commit", info["commit"]],
        ["CPU", f"{info['cpu']} ({info['cores']} cores, {info['arch']})"], ["memory", f"{info['memory_mib']} MiB"],
        ["kernel", info["kernel"]], ["Python", f"{info['python_impl']} {info['python']}"], ["libraries", libs],
        ["load average at start", info["loadavg_at_start"]], ["run time", f"{info.get('total_seconds')} s"],
    ] + ([["merged", info["merged"]]] if info.get("merged") else []))
    L += ["How to rerun (from the repository root, with the development environment of the README):", "",
          "    python -m bench            # full: about 30 minutes, 25 taps per backend, 60 s CPU windows",
          "    python -m bench --quick    # under a minute: fewer samples, short windows (noisier)",
          "    python -m bench --only rfid,meter   # a subset; see python -m bench --help", "",
          "The OCPP peer comparison installs `em-ocpp-chargepoint-simulator` with npm into bench/node/ "
          "(skipped, with a note, when node or npm is missing).", ""]

    L += ["## Targets (issue 6)", ""]
    rows = []
    for t in tgs:
        vals = "; ".join(f"{v['what']}: {_fmt(v['value'])}{'' if v['met'] in (None, True) else ' (missed)'}"
                         for v in t["values"])
        rows.append([t["target"], f"**{t['status']}**", vals])
    L += _table(["target", "status", "measured"], rows)
    for t in tgs:
        if t["why"]:
            L += [f"- *{t['target']}*: {t['why']}"]
    L += [""]
    findings = _findings(results)
    if findings:
        L += ["## Findings: where the cost is, and the floors", ""] + [f"- {f}" for f in findings] + [""]

    for name, section in (("rfid", _rfid), ("tap", _tap), ("process", _process), ("idle", _idle),
                          ("replay", _replay), ("meter", _meter), ("ocpp_peer", _peer), ("ocpp_versions", _versions),
                          ("status_page", _status_page), ("safety", _safety), ("mcsp_server", _mcsp_server),
                          ("controller", _rows), ("sharing", _sharing), ("limit", _rows)):
        r = results.get(name)
        if r is None:
            continue
        L += [f"## {r.title}", ""]
        if r.skipped:
            L += [f"Not measured: {r.skipped}", ""]
            continue
        L += section(r)
        L += [f"- {n}" for n in r.notes] + ["", f"({r.seconds:.0f} s)", ""]
    return "\n".join(L)


def _rfid(r: Result) -> list[str]:
    f = r.figures
    rows = []
    for key, label in (("ours_empty_realtime", "station reader, empty, realtime timer"),
                       ("ours_empty_instant", "station reader, empty, instant timer"),
                       ("stock_empty_realtime", "stock read_id_no_block, empty, realtime timer"),
                       ("stock_empty_instant", "stock read_id_no_block, empty, instant timer"),
                       ("ours_card_present", "station reader, card held (UID read + HLTA)"),
                       ("stock_card_present", "stock read_id_no_block, card held")):
        x = f[key]
        rows.append([label, x["spi_transfers_per_poll"], x["reader_cpu_us_per_poll"], x["emulator_cpu_us_per_poll"],
                     x["wall_us_per_poll"], x["max_poll_rate_hz"], f"{x['cards_seen']}/{x['polls']}"])
    s = f["summary"]
    return _table(["poll", "SPI transfers", "reader CPU us", "emulator CPU us", "wall us", "max polls/s",
                   "cards seen"], rows) + [
        f"At 10 Hz the empty poll costs {s['ours_cpu_share_at_10hz_pct']:.3f} % of one core for the station reader "
        f"and {s['stock_cpu_share_at_10hz_pct']:.2f} % for the stock library (reader CPU only).", ""]


def _tap(r: Result) -> list[str]:
    rows = []
    for kind in BACKENDS:
        x = r.figures.get(kind, {})
        if "tap_to_contactor_closed" not in x:
            rows.append([kind, x.get("error") or x.get("skipped"), "", "", "", "", ""])
            continue
        a, d, p, o = (x["tap_to_contactor_closed"], x["tap_to_reader_detect"], x["detect_to_contactor_closed"],
                      x["tap_to_contactor_open"])
        rows.append([kind, a["n"], f"{a['p50_ms']:.0f} / {a['p95_ms']:.0f} / {a['max_ms']:.0f}",
                     f"{d['p50_ms']:.0f} / {d['p95_ms']:.0f}", f"{p['p50_ms']:.0f} / {p['p95_ms']:.0f} / {p['max_ms']:.0f}",
                     f"{o['p50_ms']:.0f} / {o['p95_ms']:.0f} / {o['max_ms']:.0f}", x["poll_interval_ms"]])
    return _table(["backend", "taps", "tap->closed p50/p95/max ms", "tap->detect p50/p95", "detect->closed p50/p95/max",
                   "tap->open p50/p95/max", "poll ms"], rows)


def _process(r: Result) -> list[str]:
    f = r.figures
    L = ["### Start-up and peak RSS of `station run` (sim hardware)", ""]
    rows = []
    for kind in BACKENDS:
        x = f.get(f"run_{kind}")
        if not x:
            continue
        if "error" in x:
            rows.append([kind, x["error"], "", "", "", ""])
            continue
        rows.append([kind, x["start_to_ready_ms"], x["start_to_available_ms"], x["start_to_backend_online_ms"],
                     x["peak_rss_mib"], x["ready_status"]])
    L += _table(["backend", "exec -> READY=1 ms", "-> Available ms", "-> backend online ms", "peak RSS MiB",
                 "READY datagram"], rows)
    floor = f.get("floor", {})
    L += ["Floor: processes that only import (peak RSS, wall time of the whole process):", ""]
    L += _table(["python -c", "peak RSS MiB", "wall ms"],
                [[k, v.get("peak_rss_mib"), v.get("wall_ms")] for k, v in floor.items()])
    L += ["### CPU of the station process (meter emulator in its own process)", ""]
    rows = []
    for kind in BACKENDS:
        x = f.get(f"cpu_{kind}")
        if not x:
            continue
        if "error" in x:
            rows.append([kind, x["error"]] + [""] * 8)
            continue
        for phase in ("idle", "charging"):
            y = x[phase]
            rows.append([kind, phase, y["station_process_cpu_s_per_min"], y["chip_emulator_cpu_s_per_min"],
                         y["station_own_cpu_s_per_min"], f"{y['station_own_pct_of_one_core']:.3f}",
                         y["meter_emulator_process_cpu_s_per_min"], y["polls_per_s"], y["meter_requests_per_s"],
                         x["window_s"]])
    L += _table(["backend", "phase", "process CPU s/min", "chip emulator s/min", "station own s/min",
                 "% of one core", "meter emulator process s/min", "polls/s", "Modbus requests/s", "window s"], rows)
    peaks = [f"{k}: {f[f'cpu_{k}']['peak_rss_mib_after_a_session']} MiB" for k in BACKENDS
             if isinstance(f.get(f"cpu_{k}"), dict) and "peak_rss_mib_after_a_session" in f[f"cpu_{k}"]]
    if peaks:
        L += ["Peak RSS of the CPU-run station process after a charging session: " + ", ".join(peaks) + ".", ""]
    return L


def _replay(r: Result) -> list[str]:
    rows = []
    for key, x in r.figures.items():
        if "error" in x:
            rows.append([key, x["error"], "", "", "", ""])
            continue
        rows.append([key, x["messages"], x["seconds"], x["msg_per_s"], x["station_order_kept"],
                     x.get("server_order_kept", "-")])
    return _table(["run", "messages", "seconds", "msg/s", "order kept (station)", "order kept (server)"], rows)


def _meter(r: Result) -> list[str]:
    rows = []
    for name, x in r.figures.items():
        m = x.get("measured", {})
        rows.append([name, " ".join(x["plan"]),
                     f"{x['full_9600']['requests']} / {x['full_9600']['bytes_out']} / {x['full_9600']['bytes_in']}",
                     x["full_9600"]["bus_ms"], x["full_19200"]["bus_ms"],
                     f"{x['core_9600']['requests']} / {x['core_9600']['bytes_out']} / {x['core_9600']['bytes_in']}",
                     x["core_9600"]["bus_ms"], x["core_19200"]["bus_ms"],
                     m.get("full_cpu_ms_per_sample", m.get("error")), m.get("core_cpu_ms_per_sample")])
    return _table(["model", "full plan (address+count)", "full: requests / bytes out / in", "full bus ms 9600",
                   "full bus ms 19200", "core: requests / out / in", "core bus ms 9600", "core bus ms 19200",
                   "CPU ms/sample full", "CPU ms/sample core"], rows)


def _rows(r: Result) -> list[str]:
    """A benchmark whose figures are a list of rows (dicts with the same keys)."""
    rows = r.figures.get("rows", [])
    if not rows:
        return []
    header = list(rows[0])
    return _table(header, [[row.get(k, "-") for k in header] for row in rows])


def _sharing(r: Result) -> list[str]:
    f = r.figures
    return _table(["event", "median s", "worst s"], [
        ["a session starts (the others give up current first)", f["start"]["p50_s"], f["start"]["max_s"]],
        ["a session ends", f["stop"]["p50_s"], f["stop"]["max_s"]],
    ]) + ["", f"Heartbeat every {f['heartbeat_s']} s while sharing; {f['trials']} evenings of 8 starts and 8 ends; "
          f"peak of all offers together {f['peak_offered_a']} A. CPU of one decision (`grant`): "
          + ", ".join(f"{k}: {v} µs" for k, v in f["grant_us"].items()) + "."]


def _peer(r: Result) -> list[str]:
    f = r.figures
    w = f.get("workload", {})
    rows = []
    for kind in ("station", "em-sim", "em-sim quiet"):
        x = f.get(kind)
        if not x:
            continue
        big = [k for k in x if k.startswith("rss_mib_") and k.endswith("_connections")]
        rows.append([kind, x["cpu_ms_per_message"], x["messages_per_s"], x["rss_mib_1_connection"],
                     x[big[0]] if big else None, x.get("rss_mib_per_extra_connection")])
    n_big = (w.get("connections") or [1, "N"])[-1]
    return [f"Workload: {w.get('messages')} MeterValues CALLs, sequential, on one connection; memory with 1 and "
            f"{n_big} connections.", ""] + _table(
        ["client", "CPU ms/message", "messages/s", "RSS MiB, 1 connection", f"RSS MiB, {n_big} connections",
         "MiB per extra connection"], rows)


def _versions(r: Result) -> list[str]:
    f = r.figures
    rows, cpu = [], []
    for version in ("1.6", "2.0.1"):
        x = f.get(version)
        if not x:
            continue
        if "error" in x:
            rows.append([version, x["error"]] + [""] * 6)
            continue
        t = x["transaction"]
        calls = ", ".join(f"{m} {n}" for m, n in t["calls"].items())
        rows.append([version, t["bytes_total"], f"{t['bytes_station_to_cs']} / {t['bytes_cs_to_station']}", t["frames"],
                     f"{t['bytes_fixed_part']}", f"{t['periodic_messages']} x {t['bytes_per_periodic_message_with_answer']}",
                     calls])
        for what in ("StatusNotification", "MeterValues"):
            y = x[f"cpu_{what}"]
            cpu.append([version, what, y["cpu_ms_per_message"], y["wall_ms_per_trigger"], y["bytes_per_trigger"],
                        y["idle_cpu_s_per_min"], x["schema_failures"]])
    L = ["### Bytes per transaction (counted at the central system)", ""]
    L += _table(["version", "bytes", "station->CS / CS->station", "messages", "fixed part", "periodic: n x bytes",
                 "CALLs from the station"], rows)
    L += ["### CPU per message (TriggerMessage round trips, idle rate subtracted)", ""]
    L += _table(["version", "triggered", "CPU ms/message", "wall ms/trigger", "bytes/trigger",
                 "idle CPU s/min", "schema failures"], cpu)
    return L


def _idle(r: Result) -> list[str]:
    f = r.figures
    L = _table(["floor (bare python, nothing but the wake-ups)", "CPU s/min"],
               [[k, v] for k, v in f.get("floors_cpu_s_per_min", {}).items()])
    rows = []
    for k, v in f.get("variants", {}).items():
        t = v["by_thread"]
        rows.append([k, v["station_own_cpu_s_per_min"], f"{v['pct_of_one_core']:.3f}",
                     t.get("event loop (MainThread)"), t.get("rfid-spi0.0", "-"), v.get("chip_emulator_cpu_s_per_min")])
    return L + _table(["idle station (local backend)", "own CPU s/min", "% of one core", "event loop thread s/min",
                       "reader thread s/min (incl. emulator)", "chip emulator s/min"], rows)


def _status_page(r: Result) -> list[str]:
    rows, requests = [], []
    for variant, f in r.figures.items():
        rows.append([variant, f["cpu_s_per_min"], f"{f['pct_of_one_core']:.3f}", f["rss_mib"], f["peak_rss_mib"],
                     f["requests_in_window"]])
        for path in ("GET /", "GET /api/status"):
            if path in f:
                q = f[path]
                requests.append([path, q["station_cpu_ms_per_request"], q["wall_ms_per_request"], q["bytes"]])
    L = _table(["station run (sim, local backend)", "CPU s/min", "% of one core", "RSS MiB", "peak RSS MiB",
                "requests in window"], rows)
    if requests:
        L += _table(["request", "station CPU ms/request", "wall ms/request (loopback)", "bytes"], requests)
    return L


def _safety(r: Result) -> list[str]:
    """Fault detection times (docs/safety.md quotes this table)."""
    from bench.b_safety import CASES

    titles = {name: title for name, title, _k, _w in CASES}
    titles["event_loop_block"] = "event loop blocked (process exits 70)"
    rows = [[titles.get(name, name), f["median_s"], f["max_s"], f["trials"]] for name, f in r.figures.items()]
    return _table(["failure", "median s", "worst s", "trials"], rows)


def _lat(x: dict[str, Any] | None) -> str:
    if not x or not x.get("n"):
        return "-"
    return f"{x['p50_ms']:.1f} / {x['p95_ms']:.1f} / {x['p99_ms']:.1f} / {x['max_ms']:.0f}"


def _ok(t: dict[str, Any] | None) -> str:
    if not t:
        return "-"
    return f"{t['ok']}/{t['sent']}" + ("" if t["all_ok"] else " (NOT all OK)")


def _mcsp_server(r: Result) -> list[str]:
    """Capacity of `station mcsp-server`; the sizing paragraph is computed from the same figures."""
    f = r.figures
    beat = f.get("setup", {}).get("heartbeat_every_s", 10)
    held = f.get("held", {})
    L = [f"### Stations held: one connection each, a HEARTBEAT every {beat:g} s", ""]
    rows = []
    for n, x in held.items():
        rows.append([n, x["connected"], _ok(x["every_heartbeat"]), x["heartbeat_latency"].get("p95_ms"),
                     x["no_station"]["server_pct_of_one_core"], x["beating"]["server_pct_of_one_core"],
                     x["quiet"]["server_pct_of_one_core"], f"**{x['pct_of_one_core_at_60s_heartbeats']}**",
                     x["cpu_ms_per_heartbeat"],
                     f"{x['rss_mib_before_connections']} / {x['rss_mib_connected']} / {x['rss_mib']}",
                     x["open_fds"], x["beating"]["bench_pct_of_one_core"]])
    L += _table(["stations", "connected", "heartbeats OK/sent", "heartbeat p95 ms", "server % core, no station",
                 f"server % core, beating every {beat:g} s", "server % core, quiet", "server % core at 60 s heartbeats",
                 "CPU ms/heartbeat", "RSS MiB: none / all connected / end", "server fds", "load generator % core"], rows)
    s = f.get("sessions", {})
    if s:
        bg = next(iter(s.values()))["background_stations"]
        L += [f"### Sessions per second: START then END back to back, {bg} stations beating every {beat:g} s in "
              "the background", ""]
        L += _table(["stations in the loop", "sessions/s", "START p50/p95/p99/max ms", "END p50/p95/p99/max ms",
                     "server % core", "server CPU ms/session", "START, END OK/sent", "background heartbeats OK/sent",
                     "background heartbeat p95 ms", "load generator % core", "ledger after: closed / right energy / open"],
                    [[k, x["sessions_per_s"], _lat(x["start_latency"]), _lat(x["end_latency"]),
                      x["server_pct_of_one_core"], x["server_cpu_ms_per_session"], f"{_ok(x['start'])}, {_ok(x['end'])}",
                      _ok(x["background_heartbeats"]), x["background_heartbeat_latency"].get("p95_ms"),
                      x["bench_pct_of_one_core"], f"{x['ledger']['closed']} / "
                      f"{x['ledger']['closed'] - x['ledger']['closed_with_wrong_energy']} / {x['ledger']['open']}"]
                     for k, x in s.items()])
    age = f.get("ledger_age", {})
    if age:
        L += ["### Ledger age: one station's sessions on a ledger that already holds many", ""]
        L += _table(["closed sessions in the ledger", "file MiB", "sessions/s", "START p50/p95/p99/max ms",
                     "END p50/p95/p99/max ms", "server CPU ms/session", "all OK"],
                    [[n, x["ledger_mib"], x["sessions_per_s"], _lat(x["start_latency"]), _lat(x["end_latency"]),
                      x["server_cpu_ms_per_session"], x["all_ok"]] for n, x in age.items()])
    lk = f.get("lockout")
    L += ["### Lockout attempt: silent connections from another address", ""]
    if lk:
        L += _table(["silent connections from 127.0.0.2", "opened / closed by the server / refused", "victim sessions",
                     "served every session", "connect + HEARTBEAT p50/p95/p99/max ms", "START p50/p95/p99/max ms",
                     "END p50/p95/p99/max ms", "server % core", "attacker process % core", "server fds at end"],
                    [[a, f"{x['attacker']['opened']} / {x['attacker']['closed_by_server']} / "
                      f"{x['attacker']['connect_failed']}", x["sessions"], x["served_every_session"],
                      _lat(x["connect_heartbeat_latency"]), _lat(x["start_latency"]), _lat(x["end_latency"]),
                      x["server_pct_of_one_core"], x.get("attacker_pct_of_one_core"), x["open_fds_at_end"]]
                     for a, x in lk.items()])
        L += ["The victim opens a new connection for each session (a station whose link just dropped) from its own "
              "address, while the attacker keeps its connections open without a word, opening each again as soon "
              "as the server closes it (bench/mcsp_flood.py, a process of its own); the server runs with its default "
              "--max-connections. The first row is the same victim without an attack.", ""]
    else:
        L += ["Not measured: the server has no connection policy (`--max-connections`) yet.", ""]
    L += ["### Sizing a server", ""] + _mcsp_sizing(f) + [""]
    return L


def _mcsp_sizing(f: dict[str, Any]) -> list[str]:
    held = f.get("held", {})
    if not held:
        return []
    ns = sorted(held, key=int)
    n, x = ns[-1], held[ns[-1]]
    pct = x["pct_of_one_core_at_60s_heartbeats"]
    out = [f"**One server process holds {n} stations at {pct} % of one core and {x['rss_mib_connected']} MiB RSS** "
           f"(each station its own connection, heartbeats every 60 s, on this machine)."]
    if len(ns) > 1:
        lo = held[ns[0]]
        slope = (pct - lo["pct_of_one_core_at_60s_heartbeats"]) / (int(n) - int(ns[0])) * 100
        mib = (x["rss_mib_connected"] - x["rss_mib_before_connections"]) / int(n) * 1024
        quiet = x["quiet"]["server_pct_of_one_core"]
        where = ("most of it for connections that say nothing (the quiet column)" if quiet > pct / 2 else
                 f"most of it for the heartbeats, {x['cpu_ms_per_heartbeat']} ms of CPU each (parsing, the reply, a "
                 f"ledger write with its fsync); connections that say nothing cost {quiet} % (the quiet column)")
        out.append(f"Each further 100 stations cost about {slope:.2f} % of a core and each station about {mib:.0f} KiB "
                   f"of RSS, {where}; the server alone idles at {x['no_station']['server_pct_of_one_core']} %.")
    s = f.get("sessions", {})
    if s:
        best = max(s, key=lambda k: s[k]["sessions_per_s"])
        y = s[best]
        floor = f.get("commit_floor", {})
        c = floor.get("commit_latency", {})
        bound = ("CPU: one event loop, one core" if y["server_pct_of_one_core"] >= 75
                 else "not the server's CPU (below 75 % of a core)")
        out.append(f"Sessions: at most {y['sessions_per_s']} sessions/s (START + END) with {best} stations in a "
                   f"closed loop, the server at {y['server_pct_of_one_core']} % of one core, "
                   f"{y['server_cpu_ms_per_session']} ms of CPU per session: the limit is {bound}. The ledger commits "
                   f"each write with an fsync (SQLite WAL, synchronous=FULL, as deployed): two a session (START, END), "
                   f"one a heartbeat; one commit took {c.get('p50_ms')} ms (p50, {c.get('p95_ms')} ms p95) on this "
                   f"machine's {floor.get('filesystem', '?')} disk. On a slow disk (an SD card: milliseconds to tens "
                   "of milliseconds per fsync) the fsync is the limit, and every station waits for it, since the "
                   "server writes from its one event loop. A building's stations start a few sessions an hour each: "
                   "held connections size a server, not sessions per second.")
    age = f.get("ledger_age", {})
    if len(age) > 1:
        big = max(age, key=int)
        a0, a1 = age[min(age, key=int)], age[big]
        grows = a1["start_latency"]["p50_ms"] > 5 * a0["start_latency"]["p50_ms"]
        out.append(("The ledger's age matters (each START searches the sessions table for open sessions of its key "
                    "and its station, and that search grows with the table): " if grows else "Ledger age: ") +
                   f"with {int(big):,} closed sessions in it a START takes "
                   f"{a1['start_latency']['p50_ms']} ms (p50) against {a0['start_latency']['p50_ms']} ms on an empty "
                   f"one, and a session {a1['server_cpu_ms_per_session']} ms of CPU against "
                   f"{a0['server_cpu_ms_per_session']}.")
    m = f.get("memory_run")
    if m:
        rss = ", ".join(f"{w['rss_mib']}" for w in m["series"])
        first, last = m["series"][0], m["series"][-1]
        growth = m["kib_per_request_second_half"]
        verdict = "Memory grows without bound: " if growth > 0.02 else "Memory is bounded: "
        out.append(f"{verdict}over {last['sessions']:,} sessions ({last['requests']:,} requests) from {m['stations']} "
                   f"stations, the RSS after each window was {rss} MiB (from {first['sessions']:,} sessions on); in the "
                   f"second half it changed by {growth} KiB per request"
                   f"{'' if m['all_ok'] else ' (NOT every request was answered OK)'}.")
    return [" ".join(out)]


def _findings(results: dict[str, Result]) -> list[str]:
    out: list[str] = []
    # Idle CPU: the breakdown by thread and the wake-up floors.
    cpu = _get(results, "process", "cpu_local", "idle")
    floors = _get(results, "idle", "floors_cpu_s_per_min") or {}
    if cpu:
        t = cpu["cpu_s_per_min_by_thread"]
        text = (f"Idle CPU (local backend): {cpu['station_process_cpu_s_per_min']:.3f} CPU s/min for the process, of "
                f"which the reader thread {t.get('rfid-spi0.0', 0):.3f} (the chip emulator inside it "
                f"{cpu['chip_emulator_cpu_s_per_min']:.3f}) and the event loop {t.get('event loop (MainThread)', 0):.3f}. "
                "Nothing in it is computation: it is the cost of waking up (reader 10 Hz plus its 0.5 ms answer wait, "
                "meter 1 Hz reading energy and power only, ticker 1 Hz while nothing is due, status 0.5 Hz; "
                "the inputs loop runs only where an input pin is configured).")
        if floors:
            text += " On this machine bare Python pays that much for wake-ups alone: " + ", ".join(
                f"{k}: {v:.3f} s/min" for k, v in floors.items()) + "."
        out.append(text)
        out.append("Ways further under the target, measured by switching parts off (section 'Where the idle CPU goes'): "
                   "the reader's 0.5 ms pre-read sleep doubles its thread's wake-ups (reading at once and sleeping for the "
                   "timer only when no interrupt is set would keep 8 transfers; to be checked on a real chip before "
                   "changing it); a slower idle meter interval (the 'meter every 10 s' variant). Already done after the "
                   "first run: idle meter reads of energy and power only (the model's core plan), a 1 Hz ticker while "
                   "nothing is due, and no meter read between tap and journal when the last idle reading is fresh.")
    # Tap to contactor on a real bus.
    sdm = _get(results, "meter", "SDM630")
    tap = _get(results, "tap", "local", "detect_to_contactor_closed", "p95_ms")
    if sdm and tap is not None:
        out.append(f"Tap to contactor on real hardware: between the tap and the contactor the charger reads the meter's "
                   f"full plan once (the exact start reading, with per-phase energies; the tap itself reuses the last idle "
                   f"reading). The emulated meter answers over loopback TCP with no baud delay; on an RS-485 bus an SDM630 "
                   f"full read is {sdm['full_9600']['bus_ms']} ms of wire time at 9600 baud "
                   f"({sdm['full_19200']['bus_ms']} ms at 19200) plus the meter's turnaround for each of its "
                   f"{sdm['full_9600']['requests']} requests, so a real 9600-baud station adds about "
                   f"{sdm['full_9600']['bus_ms']:.0f} ms + 3 turnarounds to the {tap:.0f} ms p95 measured here and misses "
                   f"the target; at 19200 baud (the mmetering installations' rate) it adds {sdm['full_19200']['bus_ms']:.0f} ms.")
    # RSS floor.
    floor = _get(results, "process", "floor") or {}
    run_ocpp = _get(results, "process", "run_ocpp", "peak_rss_mib")
    if floor and run_ocpp is not None:
        f = {k: v.get("peak_rss_mib") for k, v in floor.items()}
        local = f.get("import station.daemon + sim (local)")
        out.append(f"Peak RSS floor: the interpreter alone holds {f.get('python -c pass')} MiB, `import asyncio` "
                   f"{f.get('+ asyncio')} MiB (asyncio imports ssl, which maps libssl and libcrypto: `import ssl` "
                   "alone takes a bare interpreter from 8.5 to about 14.6 MiB), pymodbus's client "
                   f"{f.get('+ pymodbus client')} MiB with sqlite3; websockets + ocpp.v16 (with jsonschema) "
                   f"{f.get('+ websockets, ocpp.v16')} MiB, which is what a station built on the ocpp library's "
                   "ChargePoint would hold: this one imports only `ocpp.routing` and the schema files, and validates "
                   "with its own code (station/backends/ocppj/schema.py, checked against jsonschema in the tests), "
                   "which saved about 4 MiB. The local station imports to "
                   f"{local} MiB "
                   f"and the OCPP one to {f.get('+ ocpp backend')} MiB before doing anything; running adds the rest "
                   f"({run_ocpp} MiB peak). The OCPP backend's import adds "
                   f"{(f.get('+ ocpp backend') or 0) - (local or 0):.1f} MiB "
                   "to the local station: websockets (about 2.5 MiB, importlib.metadata and http.client included) and "
                   "the backend's own modules; certificates (cryptography), firmware and diagnostics transfers are "
                   "imported when first used. All processes run from byte-compiled modules, as pip installs the "
                   "station; compiling every module from source at each start (an editable install without "
                   "__pycache__) costs about 1.5 MiB more at the peak."
                   + (f" `import cryptography` (x509, rsa, ec) alone costs "
                      f"{f['asyncio + cryptography (x509, rsa, ec)'] - f['+ asyncio']:.1f} MiB over asyncio."
                      if f.get("asyncio + cryptography (x509, rsa, ec)") and f.get("+ asyncio") else
                      " (Measured separately on this machine: importing cryptography's x509, rsa and ec modules "
                      "adds 10.7 MiB to a process holding asyncio, 19.3 -> 30.0 MiB.)"))
    return out
