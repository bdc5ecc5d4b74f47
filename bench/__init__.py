"""Benchmarks of the station (issue 6): `python -m bench [--quick]`. See bench/run.py and docs/benchmarks.md.

The central systems the benchmarks run against (scripts/harness: the strict ocpp-rpc one in Node,
driven by strict_peer.py; the `ocpp` library's, ocpp_csms.py) and the kill test (torture.py) are
shared with the tests, so they live in scripts/harness and are imported by plain name. Importing
this package puts that folder first on sys.path; bench imports nothing from tests/.
"""

import sys
from pathlib import Path

HARNESS = str(Path(__file__).resolve().parents[1] / "scripts" / "harness")
if HARNESS not in sys.path:
    sys.path.insert(0, HARNESS)
