"""`station mcsp-server`: the MCSP/1.0 reference server (mmetering side) as a program.

    station mcsp-server [--listen HOST:PORT | --serial PORT] [--tags FILE] [--db FILE]
                        [--site-limit-a A [--min-current-a A] [--rotation-s S] [--unreported-current-a A]]

Also `python -m station.servers.mcsp`. `main(argv)` returns an exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import ssl
import sys
from collections.abc import Iterable
from typing import Any

from station import privacy
from station.admission import MAX_CONNECTIONS, ConnectionLimits
from station.aio import stop_on_signals
from station.servers.mcsp.server import McspServer
from station.servers.mcsp.sharing import Sharing
from station.servers.mcsp.tags import load_tags

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:4711"


# --------------------------------------------------------------------------- CLI
def _server_ssl(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="station mcsp-server", description="MCSP/1.0 reference server (mmetering side)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--listen", default=None, metavar="HOST:PORT", help=f"TCP address (default {DEFAULT_LISTEN})")
    where.add_argument("--serial", metavar="PORT", help="serve one station on a serial line instead")
    p.add_argument("--baudrate", type=int, default=19200, help="serial baud rate (default 19200, 8N1)")
    p.add_argument("--tags", metavar="FILE", help='TOML: tag = "apartment" (without it every key is accepted)')
    p.add_argument("--db", metavar="FILE", default="mcsp-sessions.db", help="SQLite file (default ./mcsp-sessions.db)")
    p.add_argument("--cert", metavar="FILE", help="TLS certificate chain (serves tls:// with --key)")
    p.add_argument("--key", metavar="FILE", help="TLS private key")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N",
                   help=f"TCP connections served at once (default {MAX_CONNECTIONS}); docs/mcsp.md §9.1")
    p.add_argument("--log-tags", action="store_true", help="log id tags in full (default: masked; the printed "
                   "session lines and the database always keep them)")
    g = p.add_argument_group("sharing the building's supply (docs/mcsp.md 4.5)")
    g.add_argument("--site-limit-a", type=float, metavar="A",
                   help="amps per phase all stations together may draw; shared among those charging")
    g.add_argument("--min-current-a", type=float, default=6.0, metavar="A",
                   help="the least a charging station is given (default 6, IEC 61851); below it, it waits its turn")
    g.add_argument("--rotation-s", type=float, default=600.0, metavar="S",
                   help="with more cars than the limit can feed, each keeps its turn this long (default 600)")
    g.add_argument("--unreported-current-a", type=float, default=16.0, metavar="A",
                   help="counted for a station in a session that does not report its currents (default 16)")
    return p


def site_sharing(args: argparse.Namespace) -> Sharing | None:
    """The Sharing of the --site-limit-a options, or None; ValueError for impossible values."""
    if args.site_limit_a is None:
        return None
    if not 0 < args.min_current_a <= args.site_limit_a:
        raise ValueError(f"--min-current-a {args.min_current_a:g} must be above 0 and at most --site-limit-a")
    return Sharing(args.site_limit_a, min_current_a=args.min_current_a, rotation_s=args.rotation_s,
                   unreported_a=args.unreported_current_a)


def _enough_file_descriptors(connections: int) -> None:
    """Every connection is a file descriptor, and asyncio accepts a backlog's worth of
    connections in one go before the policy sees any. With the soft limit near the table size
    (systemd gives a service 1024), a connect-and-reset storm makes accept() fail (EMFILE) and
    pauses accepting: raise the soft limit to the hard one, and say so if even that is low."""
    import resource

    want = connections + 4 * 128 + 64  # the table, a few backlogs in flight, the ledger and logs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < want:
        log.warning("only %d file descriptors allowed (ulimit -n): fewer than --max-connections %d needs (%d)",
                    hard, connections, want)


def _count_accept_errors(server: McspServer) -> None:
    """asyncio logs every failed accept() with a traceback: under a storm, thousands of lines.
    Count them in the server's once-a-minute summary instead."""
    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            server.tally.note("accept failed: out of file descriptors", "server")
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def serve(server: McspServer, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    _count_accept_errors(server)
    await server.start()
    print(f"MCSP server on {server.serial or server.url}; sessions are printed as they end", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: Iterable[str] | None = None) -> int:
    """`station mcsp-server ...`; returns an exit code."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    privacy.set_log_tags(args.log_tags)
    tags = stations = None
    if args.tags:
        try:
            tags, stations = load_tags(args.tags)
        except ValueError as exc:
            print(f"station mcsp-server: {exc}", file=sys.stderr)
            return 2
    else:
        log.warning("no --tags file: every key is accepted")
    host, port = DEFAULT_LISTEN.rsplit(":", 1)
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit():
            print(f"station mcsp-server: --listen wants HOST:PORT, got {args.listen!r}", file=sys.stderr)
            return 2
    if args.max_connections < 1:
        print("station mcsp-server: --max-connections must be at least 1", file=sys.stderr)
        return 2
    if bool(args.cert) != bool(args.key):
        print("station mcsp-server: --cert and --key go together", file=sys.stderr)
        return 2
    try:
        sharing = site_sharing(args)
    except ValueError as exc:
        print(f"station mcsp-server: {exc}", file=sys.stderr)
        return 2
    try:
        ctx = _server_ssl(args.cert, args.key) if args.cert else None
        server = McspServer(tags=tags, stations=stations, db=args.db, host=host, port=int(port), serial=args.serial,
                            baudrate=args.baudrate, ssl_context=ctx, out=sys.stdout,
                            limits=ConnectionLimits(max_connections=args.max_connections))
        if sharing is not None:
            server.share_site_limit(sharing)
            log.info("site limit %g A per phase, shared among the charging stations (at least %g A each)",
                     sharing.site_limit_a, sharing.min_current_a)
        _enough_file_descriptors(args.max_connections)
        asyncio.run(serve(server))
    except (OSError, ssl.SSLError, sqlite3.Error) as exc:
        print(f"station mcsp-server: {exc}", file=sys.stderr)
        return 1
    return 0


run_server = main

