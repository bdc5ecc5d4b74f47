"""The `station` command. Thin: parse arguments, call into the package, return an exit code."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import sys
from pathlib import Path

from station import __version__
from station import config as configmod
from station.errors import ConfigError, StationError

log = logging.getLogger("station")

DEFAULT_CONFIG = "/etc/station/station.toml"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record, not at set-up."""

    def __init__(self, stream=None) -> None:
        self._fixed = stream
        super().__init__(stream or sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: str = "INFO", stream=None) -> None:
    """Log to stderr. Under systemd (JOURNAL_STREAM set) prefix <N> so journald keeps the priority."""
    journald = "JOURNAL_STREAM" in os.environ

    class Fmt(logging.Formatter):
        PRIO = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

        def format(self, record: logging.LogRecord) -> str:
            text = super().format(record)
            return f"<{self.PRIO.get(record.levelno, 6)}>{text}" if journald else text

    handler = _StderrHandler(stream)
    handler.setFormatter(Fmt("%(name)s: %(message)s" if journald else "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    # Replace only our own handler: main() may run more than once in a process (tests, tools).
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrHandler)] + [handler]
    root.setLevel(level)
    for noisy in ("websockets", "transitions", "ocpp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymodbus logs every timeout as an ERROR; the meter adapter reports faults itself, once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _load(path: str | None, required: bool = True) -> configmod.Config:
    if path is None:
        path = os.environ.get("STATION_CONFIG", DEFAULT_CONFIG)
    return configmod.load(path)


# ---------------------------------------------------------------- subcommands
def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from station.daemon import Station

    return asyncio.run(Station(cfg).run_forever())


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.config is not None:
        configmod.load(args.config)  # a broken file is reported before anything starts
    if args.scenario:
        from station.sim.scenario import run_scenario_file

        return run_scenario_file(args.config, args.state_dir, args.scenario, as_json=args.json)
    from station.sim.tui import run_interactive

    return run_interactive(args.config, args.state_dir)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = configmod.load(args.file)
    print(f"{args.file}: OK ({cfg.hardware.mode} hardware, {cfg.backend.kind} backend, meter {cfg.meter.model})")
    from station.security import permission_problems

    for problem in permission_problems(cfg):  # the same warnings the daemon logs at start
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_diagram(args: argparse.Namespace) -> int:
    from station.core.states import mermaid

    sys.stdout.write(mermaid())
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from station.store import DB_NAME, Store

    state_dir = args.state_dir or _load(args.config).station.state_dir
    if not (Path(state_dir) / DB_NAME).exists():
        print(f"no journal in {state_dir}", file=sys.stderr)
        return 1
    store = Store.open(state_dir)
    try:
        rows = [session_summary(s) for s in store.sessions()]
    finally:
        store.close()
    fields = ["id", "id_tag", "meter_start_wh", "meter_stop_wh", "energy_wh", "started_at", "stopped_at",
              "stop_reason", "backend_session_id", "delivered"]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    elif args.csv:
        w = csv.DictWriter(sys.stdout, fieldnames=fields + ["estimated"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    else:
        print(f"{'id':>4} {'tag':<18} {'start Wh':>10} {'stop Wh':>10} {'Wh':>7} {'started':<24} {'reason':<14} {'backend id':<12} delivered")
        for r in rows:
            print(f"{r['id']:>4} {r['id_tag']:<18} {r['meter_start_wh']:>10} {str(r['meter_stop_wh'] or ''):>10} "
                  f"{str(r['energy_wh'] if r['energy_wh'] is not None else ''):>7} {r['started_at'] or '':<24} "
                  f"{r['stop_reason'] or '':<14} {str(r['backend_session_id'] or ''):<12} {'yes' if r['delivered'] else 'no'}")
    return 0


def session_summary(s) -> dict:
    return {
        "id": s.id, "id_tag": s.id_tag, "meter_start_wh": s.meter_start_wh, "meter_stop_wh": s.meter_stop_wh,
        "energy_wh": s.energy_wh, "started_at": s.started_at, "stopped_at": s.stopped_at,
        "stop_reason": s.stop_reason, "backend_session_id": s.backend_session_id,
        "delivered": bool(s.extra.get("delivered")), "estimated": s.meter_stop_estimated,
    }


def cmd_rfid_read(args: argparse.Namespace) -> int:
    from station.hardware.rfid import cli_read

    cfg = _load(args.config) if args.config else configmod.defaults({"hardware.mode": args.mode or _guess_mode()})
    return cli_read(cfg, args.timeout)


def cmd_meter_read(args: argparse.Namespace) -> int:
    from station.hardware.meter import cli_read

    return asyncio.run(cli_read(args.model, args.port, args.address, args.baudrate, args.parity.upper(), args.json,
                                stopbits=args.stopbits, timeout_s=args.timeout, turnaround_s=args.turnaround,
                                rs485_rts=args.rs485_rts))


def cmd_mcsp_server(args: argparse.Namespace) -> int:
    from station.backends.mcsp.server import main as server_main

    return server_main(args.rest)


def _guess_mode() -> str:
    try:
        model = Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        return "sim"
    return "pi" if "Raspberry Pi" in model else "sim"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="station", description="EV charging station firmware")
    p.add_argument("--version", action="version", version=f"station {__version__}")
    p.add_argument("--log-level", default=os.environ.get("STATION_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="run the station daemon")
    s.add_argument("-c", "--config", help=f"config file (default $STATION_CONFIG or {DEFAULT_CONFIG})")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("simulate", help="run the station on emulated hardware")
    s.add_argument("-c", "--config", help="config file (default: a built-in demo with an embedded backend)")
    s.add_argument("--scenario", help="TOML scenario to run headless")
    s.add_argument("--state-dir", help="state directory (default: a temporary one with --scenario, else ~/.local/state/station-sim)")
    s.add_argument("--json", action="store_true", help="print the scenario summary as JSON")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("check-config", help="validate a config file")
    s.add_argument("file")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("diagram", help="print the charging state machine as a Mermaid diagram")
    s.set_defaults(func=cmd_diagram)

    s = sub.add_parser("sessions", help="list the journal's sessions")
    s.add_argument("-c", "--config")
    s.add_argument("--state-dir")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true")
    g.add_argument("--csv", action="store_true")
    s.set_defaults(func=cmd_sessions)

    s = sub.add_parser("rfid", help="RFID reader tools")
    rs = s.add_subparsers(dest="rfid_command", required=True)
    r = rs.add_parser("read", help="show a card's UID in every format")
    r.add_argument("-c", "--config")
    r.add_argument("--timeout", type=float, default=30.0)
    r.add_argument("--mode", choices=("pi", "sim"), help="hardware mode without a config (default: pi on a Raspberry Pi)")
    r.set_defaults(func=cmd_rfid_read)

    s = sub.add_parser("meter", help="kWh meter tools")
    ms = s.add_subparsers(dest="meter_command", required=True)
    m = ms.add_parser("read", help="one reading of a Modbus meter")
    # The model is checked by cli_read (any case), so that --json reports a wrong one as JSON.
    m.add_argument("--model", required=True,
                   help="one of " + ", ".join(configmod.SCHEMA["meter.model"].choices) + " (any case)")
    m.add_argument("--port", required=True, help="device, socket://HOST:PORT or tcp://HOST:PORT")
    m.add_argument("--address", type=int, default=1)
    m.add_argument("--baudrate", type=int, default=9600)
    m.add_argument("--parity", type=str.upper, choices=("N", "E", "O"), default="N")
    m.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    m.add_argument("--timeout", type=float, default=1.0, help="reply timeout per request in seconds (default 1)")
    m.add_argument("--turnaround", type=float, default=0.0,
                   help="extra silence between requests in seconds, for slow meters (0..1)")
    m.add_argument("--rs485-rts", action="store_true", help="switch the RS-485 driver with RTS (kernel RS-485 mode)")
    m.add_argument("--json", action="store_true", help="print the reading, or the error, as JSON")
    m.set_defaults(func=cmd_meter_read)

    s = sub.add_parser("mcsp-server", help="the MCSP reference server (mmetering side)", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_mcsp_server)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["mcsp-server"]:
        # The reference server parses its own options (argparse's REMAINDER would not pass them).
        from station.backends.mcsp.server import main as server_main

        setup_logging("INFO")
        return server_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except StationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
