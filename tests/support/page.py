"""The status page over real HTTP for tests: a tiny client of our own (so that malformed requests
can be sent too), Basic credentials, and the page's settings."""

from __future__ import annotations

import asyncio
import base64
import json

PAGE = {"status_page.enabled": True, "status_page.listen": "127.0.0.1:0"}
PASSWORD = "correct horse battery"


async def http(port: int, method: str = "GET", path: str = "/", headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if raw is None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    got = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), got, body


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def status_json(port: int, headers: dict[str, str] | None = None) -> dict:
    code, _, body = await http(port, path="/api/status", headers=headers)
    assert code == 200, body
    return json.loads(body)
