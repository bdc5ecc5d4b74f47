"""The attacker of bench/b_mcsp_server.py's lockout attempt, in its own process.

    python -m bench.mcsp_flood PORT CONNECTIONS ADDRESS

Keeps CONNECTIONS connections from ADDRESS to 127.0.0.1:PORT open without
sending a byte, opening each again as soon as the server closes it, until
SIGTERM; then prints its counts as JSON. In its own process so that its
churn does not slow the victim station's event loop in the bench process:
the victim's latencies are then the server's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys


async def silent(port: int, address: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """One silent connection, opened again whenever the server closes it."""
    while not stop.is_set():
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        except (OSError, TimeoutError):
            counts["connect_failed"] += 1
            await asyncio.sleep(0.2)
            continue
        counts["opened"] += 1
        read = asyncio.ensure_future(reader.read(1))
        halt = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({read, halt}, return_when=asyncio.FIRST_COMPLETED)
            if read.done():
                counts["closed_by_server"] += 1
        finally:
            read.cancel()
            halt.cancel()
            writer.close()


async def main(port: int, connections: int, address: str) -> dict[str, int]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    counts = {"opened": 0, "closed_by_server": 0, "connect_failed": 0}
    await asyncio.gather(*(silent(port, address, stop, counts) for _ in range(connections)))
    return counts


if __name__ == "__main__":
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))), flush=True)
