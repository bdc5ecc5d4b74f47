"""The `station` command. Thin: parse arguments, call into the package, return an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from station import __version__
from station import config as configmod
from station.errors import ConfigError, HardwareError, StationError, StorageError

if TYPE_CHECKING:
    from station.store import Store

log = logging.getLogger("station")

DEFAULT_CONFIG = "/etc/station/station.toml"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record, not at set-up."""

    def __init__(self, stream=None) -> None:
        self._fixed = stream
        super().__init__(stream or sys.stderr)

    @property
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
    _log_config_errors(cfg)
    from station.daemon import Station

    return asyncio.run(Station(cfg).run_forever())


def _log_config_errors(cfg: configmod.Config) -> None:
    """What check-config calls errors: logged at start, and the station starts anyway (it can
    still charge offline and keep its journal; a station that refuses to boot charges nobody)."""
    from station.configcheck import findings

    for finding in findings(cfg):
        if finding.level == "error":
            log.error("%s: %s: %s (station check-config %s)", cfg.source, finding.key, finding.text, cfg.source)


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.config is not None:
        configmod.load(args.config)  # a broken file is reported before anything starts
    if args.scenario:
        from station.sim.scenario import run_scenario_file

        return run_scenario_file(args.config, args.state_dir, args.scenario, as_json=args.json)
    from station.sim.tui import run_interactive

    return run_interactive(args.config, args.state_dir, status_page=args.status_page)


def cmd_check_config(args: argparse.Namespace) -> int:
    from station.configcheck import findings
    from station.security import permission_problems

    cfg = configmod.load(args.file)
    found = findings(cfg)
    errors = [f for f in found if f.level == "error"]
    if not errors:
        print(f"{args.file}: OK ({cfg.hardware.mode} hardware, {cfg.backend.kind} backend, meter {cfg.meter.model})")
    for f in found:
        print(f"{f.level}: {args.file}: {f.key}: {f.text}", file=sys.stderr)
    for problem in permission_problems(cfg):  # the same warnings the daemon logs at start
        print(f"warning: {problem}", file=sys.stderr)
    if errors:
        print(f"{args.file}: {len(errors)} error(s): the station cannot work as configured", file=sys.stderr)
        return 2
    return 0


def cmd_diagram(args: argparse.Namespace) -> int:
    from station.core.states import mermaid

    sys.stdout.write(mermaid())
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from station import sessionlist
    from station.store import DB_NAME, Store

    state_dir = args.state_dir or _load(args.config).station.state_dir
    if not (Path(state_dir) / DB_NAME).exists():
        print(f"no journal in {state_dir}", file=sys.stderr)
        return 1
    try:
        store = Store.open(state_dir)
    except StorageError:  # a read-only or full file system: the journal can still be read
        from station.journalview import DegradedStore

        store = DegradedStore.open_degraded(state_dir)
    try:
        if args.resend is not None:
            return _resend(store, args.resend)
        rows = sessionlist.rows(store, taps=args.all)
        hidden = 0 if args.all else sessionlist.hidden_taps(store)
        if args.undelivered:
            rows = [r for r in rows if r["delivered"] is False]
            for r in rows:  # the export: what is held, as it would be sent
                r["held_messages"] = [{"seq": item.seq, "kind": item.kind.value, "reason": reason,
                                       "created_at": item.created_at, "payload": item.payload}
                                      for item, reason in store.held(r["id"])]
            hidden = 0
    finally:
        store.close()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    elif args.csv:
        sys.stdout.write(sessionlist.to_csv(rows))
    else:
        print(sessionlist.to_text(rows))
        if hidden:
            print(f"({hidden} refused or abandoned tap(s) not listed: they took the missing ids; --all lists them)")
    return 0


def _resend(store: Store, session_id: int) -> int:
    """`station sessions --resend ID`: the session's held messages back into the queue."""
    n = store.resend(session_id)
    if not n:
        print(f"session {session_id} has no message held undelivered", file=sys.stderr)
        return 1
    print(f"session {session_id}: {n} held message(s) queued again; a running station sends them within 15 s, "
          f"with all their tries (`station sessions` shows the outcome)")
    return 0


def cmd_rfid_read(args: argparse.Namespace) -> int:
    from station.hardware.rfid_tool import cli_read, cli_scan_gain

    cfg = _load(args.config) if args.config else configmod.defaults({"hardware.mode": args.mode or _guess_mode()})
    if cfg.hardware.mode == "pi":
        _check_pi_libraries(cfg)
    if args.scan_gain:
        return cli_scan_gain(cfg, args.timeout)
    return cli_read(cfg, args.timeout)


def _check_pi_libraries(cfg: configmod.Config) -> None:
    """Before the reader thread starts: the same clear error `station run` gives, not a
    ModuleNotFoundError inside a reader fault."""
    import importlib

    from station.hardware.gpio import load_gpio

    elsewhere = "" if _guess_mode() == "pi" else (
        "; this machine is not a Raspberry Pi: `station rfid read --mode sim` shows the tool on an emulated reader")
    try:
        load_gpio("pi")
        importlib.import_module("spidev")
    except HardwareError as exc:
        raise HardwareError(f"{exc}{elsewhere}") from None
    except ImportError as exc:
        raise HardwareError(f"SPI: spidev is not installed ({exc}); install station[pi]{elsewhere}") from None
    device = Path(f"/dev/spidev{cfg.rfid.spi_bus}.{cfg.rfid.spi_device}")
    if not device.exists():
        raise HardwareError(f"SPI: {device} does not exist; enable SPI (sudo raspi-config nonint do_spi 0, then "
                            f"reboot) and check rfid.spi_bus/rfid.spi_device{elsewhere}")


def cmd_meter_read(args: argparse.Namespace) -> int:
    from station.hardware.meter import cli_read

    return asyncio.run(cli_read(args.model, args.port, args.address, args.baudrate, args.parity.upper(), args.json,
                                stopbits=args.stopbits, timeout_s=args.timeout, turnaround_s=args.turnaround,
                                rs485_rts=args.rs485_rts))


def cmd_controller_read(args: argparse.Namespace) -> int:
    from station.hardware.controller import cli_read

    return asyncio.run(cli_read(args.model, args.port, args.address, args.baudrate, args.parity.upper(), args.json,
                                stopbits=args.stopbits, timeout_s=args.timeout, rs485_rts=args.rs485_rts))


def cmd_controller_setup(args: argparse.Namespace) -> int:
    from station.hardware.controller_setup import cli_setup

    return asyncio.run(cli_setup(args.model, args.port, args.address, baudrate=args.baudrate,
                                 parity=args.parity.upper(), stopbits=args.stopbits, timeout_s=args.timeout))


def _controller_link_arguments(p: argparse.ArgumentParser) -> None:
    from station.hardware.controllers.models import MODEL_NAMES

    p.add_argument("--model", required=True, help="one of " + ", ".join(MODEL_NAMES) + " (any case)")
    p.add_argument("--port", required=True, help="device, socket://HOST:PORT or tcp://HOST:PORT")
    p.add_argument("--address", type=int, required=True, help="the controller's Modbus address")
    p.add_argument("--baudrate", type=int, default=9600)
    p.add_argument("--parity", type=str.upper, choices=("N", "E", "O"), default="N")
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    p.add_argument("--timeout", type=float, default=1.0, help="reply timeout per request in seconds (default 1)")


def cmd_firmware_install(args: argparse.Namespace) -> int:
    """station-update.service: install the release the daemon put into the spool, after checking it all again."""
    from station.services import updater

    prefix = None
    if args.target:  # tests and trials: pip's --target instead of this interpreter's environment
        prefix = [sys.executable, "-I", "-m", "pip", "install", "--target", args.target]
    outcome = updater.install_pending(Path(args.spool), args.config, prefix=prefix)
    if outcome is None:
        print(f"nothing ready in {args.spool}", file=sys.stderr)
        return 0
    print(f"{outcome.status}: {outcome.reason}", file=sys.stderr)
    if args.restart:
        updater.restart_unit(args.restart)
    return 0 if outcome.status == "Installed" else 1


def cmd_mcsp_server(args: argparse.Namespace) -> int:
    from station.servers.mcsp.cli import main as server_main

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
    s.add_argument("--state-dir", help="state directory (default: the config's station.state_dir, else a temporary "
                                       "one with --scenario, else ~/.local/state/station-sim)")
    s.add_argument("--json", action="store_true", help="print the scenario summary as JSON")
    s.add_argument("--status-page", metavar="HOST:PORT", nargs="?", const="127.0.0.1:8080",
                   help="serve the status page there (default 127.0.0.1:8080); without a password it is read-only "
                        "and masks id tags")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("check-config", help="validate a config file",
                       description="Validate a config file: errors (exit 2) where the station cannot work as "
                                   "configured, warnings where it works but may surprise.")
    s.add_argument("file", help="the TOML file, e.g. /etc/station/station.toml")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("diagram", help="print the charging state machine as a Mermaid diagram")
    s.set_defaults(func=cmd_diagram)

    s = sub.add_parser("sessions", help="list the journal's sessions",
                       description="List the sessions of the journal, oldest first, for billing. Ids are the "
                                   "journal's: refused taps take ids too (--all lists them).")
    s.add_argument("-c", "--config",
                   help=f"read station.state_dir from this config (default $STATION_CONFIG or {DEFAULT_CONFIG})")
    s.add_argument("--state-dir", help="the station's state directory (overrides the config)")
    s.add_argument("--all", action="store_true", help="also list refused and abandoned taps, with their reason")
    s.add_argument("--undelivered", action="store_true",
                   help="only sessions not delivered yet; in JSON each carries its held messages (an export)")
    s.add_argument("--resend", type=int, metavar="ID",
                   help="put the messages of session ID that the backend did not process (held) back into the queue")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON array of objects")
    g.add_argument("--csv", action="store_true", help="CSV with a header line, booleans as true/false, times in UTC")
    s.set_defaults(func=cmd_sessions)

    s = sub.add_parser("rfid", help="RFID reader tools")
    rs = s.add_subparsers(dest="rfid_command", required=True)
    r = rs.add_parser("read", help="show a card's UID in every format")
    r.add_argument("-c", "--config", help="take the reader's SPI position, reset pin and id tag format from this config")
    r.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a card (default 30)")
    r.add_argument("--mode", choices=("pi", "sim"), help="hardware mode without a config (default: pi on a Raspberry Pi)")
    r.add_argument("--scan-gain", action="store_true",
                   help="with a card held on the reader, try every receiver gain and name the lowest that reads it")
    r.set_defaults(func=cmd_rfid_read)

    s = sub.add_parser("meter", help="kWh meter tools")
    ms = s.add_subparsers(dest="meter_command", required=True)
    m = ms.add_parser("read", help="one reading of a Modbus meter")
    # The model is checked by cli_read (any case), so that --json reports a wrong one as JSON.
    m.add_argument("--model", required=True,
                   help="one of " + ", ".join(configmod.SCHEMA["meter.model"].choices or ()) + " (any case)")
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

    s = sub.add_parser("controller", help="charge controller (control pilot board) tools")
    cs = s.add_subparsers(dest="controller_command", required=True)
    c = cs.add_parser("read", help="one reading of a charge controller (reads only, writes nothing)")
    _controller_link_arguments(c)
    c.add_argument("--rs485-rts", action="store_true", help="switch the RS-485 driver with RTS (kernel RS-485 mode)")
    c.add_argument("--json", action="store_true", help="print the reading, or the error, as JSON")
    c.set_defaults(func=cmd_controller_read)
    c = cs.add_parser("setup", help="configure the board once: Modbus control on, no current after its own restart",
                      description="Write the board's non-volatile settings the station needs (docs/hardware.md 6), "
                                  "only those that differ: a value already there is never rewritten.")
    _controller_link_arguments(c)
    c.set_defaults(func=cmd_controller_setup)

    s = sub.add_parser("firmware-install", help="root's firmware updater (station-update.service), not for the daemon",
                       description="Take the release the daemon handed over in the spool, check its signature "
                                   "against this configuration's firmware.signing_ca_file and its contents, install "
                                   "it with pip into this environment, write the result for the daemon, then restart "
                                   "the daemon's unit. Exit 0: installed or nothing ready; 1: refused or failed.")
    s.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                   help=f"root's configuration, owned by root and writable by nobody else (default {DEFAULT_CONFIG})")
    s.add_argument("--spool", default="/var/lib/station/firmware", help="the spool (default /var/lib/station/firmware)")
    s.add_argument("--restart", metavar="UNIT", help="systemctl try-restart UNIT afterwards (station.service)")
    s.add_argument("--target", help="install with pip --target DIR instead of into this environment (trials, tests)")
    s.set_defaults(func=cmd_firmware_install)

    s = sub.add_parser("mcsp-server", help="the MCSP reference server (mmetering side)", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_mcsp_server)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["mcsp-server"]:
        # The reference server parses its own options (argparse's REMAINDER would not pass them).
        from station.servers.mcsp.cli import main as server_main

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
