"""The MCSP/1.0 reference server (the mmetering side): `station mcsp-server`, embedded by `station simulate`.

    tags.py       the tags file: tag -> apartment, and the stations that may connect
    ledger.py     the sessions in SQLite
    service.py    the protocol logic: one request in, one reply out
    server.py     the logic on TCP (TLS) and serial transports, admitted by station/admission.py
    cli.py        the program
"""

from station.servers.mcsp.ledger import Ledger, SessionRecord, format_session
from station.servers.mcsp.server import McspServer
from station.servers.mcsp.service import MeterUnreadable, Service
from station.servers.mcsp.tags import TagEntry, load_tags

__all__ = ["Ledger", "McspServer", "MeterUnreadable", "Service", "SessionRecord", "TagEntry", "format_session",
           "load_tags"]
