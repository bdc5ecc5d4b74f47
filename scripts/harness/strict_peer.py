"""The independent strict central system of the OCPP tests and benchmarks: peers/strict_cs.js beside
this file (npm ocpp-rpc, strict mode) in a subprocess, driven over its stdin and read from its stdout
(JSON lines)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

PEERS = Path(__file__).resolve().parent / "peers"


def ensure_installed() -> None:
    """Installs ocpp-rpc if needed; under pytest, skips the test when node or npm is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        import pytest  # only the tests get here without node: bench checks for it first

        pytest.skip("node/npm not installed: the ocpp-rpc strict central system cannot run")
    if not (PEERS / "node_modules" / "ocpp-rpc").is_dir():
        subprocess.run(["bash", str(PEERS / "install.sh")], check=True, timeout=300)


class StrictCS:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict] = []
        self._next = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "noise", "text": line.decode(errors="replace")})

    async def wait(self, pred, timeout: float = 15.0, after: int = 0, what: str = "the event") -> dict:
        """The first event from index `after` on that satisfies `pred`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for e in self.events[after:]:
                if pred(e):
                    return e
            if loop.time() > deadline:
                raise AssertionError(f"{what} not seen within {timeout} s (from event {after} of "
                                     f"{len(self.events)}); last events: {self.events[-10:]}")
            await asyncio.sleep(0.01)

    async def call_from_cp(self, method: str, pred=lambda p: True, after: int = 0, timeout: float = 15.0) -> dict:
        e = await self.wait(lambda e: e["event"] == "call" and e["method"] == method and pred(e["params"]),
                            timeout=timeout, after=after, what=f"a {method} from the charge point")
        return e["params"]

    async def command(self, method: str, params: dict | None = None) -> dict:
        self._next += 1
        ident = self._next
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": ident, "method": method, "params": params or {}}) + "\n").encode())
        await self.proc.stdin.drain()
        answer = await self.wait(lambda e: e.get("id") == ident and e["event"] in ("result", "error"))
        assert answer["event"] == "result", answer
        return answer["result"]

    def failures(self) -> list[dict]:
        return [e for e in self.events if e["event"] in ("strictValidationFailure", "badMessage")]

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self._reader.cancel()



class TimedCS(StrictCS):
    """StrictCS that stamps each event with its arrival time."""

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                e = json.loads(line)
            except ValueError:
                e = {"event": "noise", "text": line.decode(errors="replace")}
            e["t"] = time.monotonic()
            self.events.append(e)

    def of(self, event: str, after: int = 0) -> list[dict]:
        return [e for e in self.events[after:] if e["event"] == event]

    def calls(self, method: str) -> list[dict]:
        return [e["params"] for e in self.events if e["event"] == "call" and e["method"] == method]




async def start201(security: dict | None = None, cls: type[StrictCS] = StrictCS,
                   protocols: tuple[str, ...] = ("ocpp2.0.1",)) -> StrictCS:
    """A strict OCPP 2.0.1 central system (ocpp-rpc with its bundled 2.0.1 schemas), or one speaking the
    `protocols` given, first preferred."""
    return await start({**(security or {}), "protocols": list(protocols)}, cls)


async def start(security: dict | None = None, cls: type[StrictCS] = StrictCS) -> StrictCS:
    """A strict central system on 127.0.0.1 (port 0), with the security options of strict_cs.js."""
    ensure_installed()
    proc = await asyncio.create_subprocess_exec("node", str(PEERS / "strict_cs.js"), "0", "300", json.dumps(security or {}),
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    cs = cls(proc)
    try:
        ready = await cs.wait(lambda e: e["event"] == "listening")
    except BaseException:
        await cs.close()
        raise
    cs.url = f"ws://127.0.0.1:{ready['port']}/ocpp" if "port" in ready else None
    cs.tls_url = f"wss://127.0.0.1:{ready['tlsPort']}/ocpp" if "tlsPort" in ready else None
    return cs
