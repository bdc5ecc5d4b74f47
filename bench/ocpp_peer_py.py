"""The station's OCPP client as a peer for bench/b_ocpp_peer.py (the Python side of the comparison).

    python -m bench.ocpp_peer_py URL CONNECTIONS MESSAGES PAUSE_MS STATE_DIR

Mirrors bench/node/peer.js: N charge points (each the station's real
`OcppBackend` with its own journal, registered by BootNotification, with the
StationDouble of tests/ocpp playing the rest of the station), a pause, M
MeterValues CALLs on the first one, one after the other, each awaiting its
answer (the `ocpp` library validates each against the 1.6 schemas), a pause,
close. Prints BOOTED, SENT, CLOSED as the node script does.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "ocpp"))


async def main(url: str, n: int, m: int, pause_ms: int, state_dir: str) -> None:
    from ocpp_double import StationDouble  # type: ignore[import-not-found]

    from station import config as config_mod
    from station.backends.ocpp.backend import OcppBackend
    from station.store import Store

    rigs = []
    for i in range(n):
        d = Path(state_dir) / f"cp{i}"
        cfg = config_mod.defaults({"station.state_dir": str(d), "backend.kind": "ocpp", "backend.ocpp.url": url,
                                   "backend.ocpp.charge_point_id": f"PY{i}"})
        store = Store.open(d)
        backend = OcppBackend(cfg, store)
        station = StationDouble(store, backend)
        await station.run()
        rigs.append((store, backend, station))
    for _, backend, _ in rigs:
        if not await backend.wait_ready(30):
            raise SystemExit("a charge point did not register")
    print(f"BOOTED {n}", flush=True)
    await asyncio.sleep(pause_ms / 1000)
    first = rigs[0][1]
    for i in range(m):
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        await first.link.request("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": stamp, "sampledValue": [
            {"value": str(1000 + i), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})
    print(f"SENT {m}", flush=True)
    await asyncio.sleep(pause_ms / 1000)
    for store, _, station in rigs:
        await station.close()
        store.close()
    print("CLOSED", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    url, n, m, pause, state = sys.argv[1:6]
    asyncio.run(main(url, int(n), int(m), int(pause), state))
