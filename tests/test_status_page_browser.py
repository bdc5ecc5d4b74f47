"""The status page in a real browser: headless Chromium (Debian's), as a phone would show it.

Chromium loads the page of a running station (a 412 x 915 window, a phone's
size), dumps the DOM it built and takes a screenshot. The screenshot is
checked pixel by pixel (decoded here with zlib: no imaging library): the
state badge in its colour and the LCD block must be there, which also proves
that the Content-Security-Policy lets the page's one style through (a wrong
hash would leave the page unstyled, and those colours absent).

On a developer machine without chromium the tests skip and say why. CI
(.ci/run) installs chromium and sets STATION_REQUIRE_BROWSER=1, which turns
that skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import tempfile
import zlib

import pytest

from tests.stations import CARD, running_station, state_is

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE = {"status_page.enabled": True, "status_page.listen": "127.0.0.1:0", "sim.load_w": 7400.0}
PASSWORD = "a long page password"
CHARGING_BLUE = (0x1A, 0x73, 0xE8)  # .Charging in station/statuspage.py STYLE
LCD_GREEN = (0x2B, 0x4D, 0x1F)  # pre.lcd background


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        why = "chromium is not installed (apt-get install -y chromium chromium-driver; .ci/run does it in CI)"
        if os.environ.get("STATION_REQUIRE_BROWSER"):
            pytest.fail(f"STATION_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    return CHROMIUM


async def browse(chromium: str, url: str, *args: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="station-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=412,915", "--hide-scrollbars", *args, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        return out


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB or RGBA non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            channels = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        prev = line
        rows.append(bytes(v for x in range(width) for v in line[x * channels:x * channels + 3]))
    return width, height, rows


def count(rows: list[bytes], rgb: tuple[int, int, int]) -> int:
    needle = bytes(rgb)
    return sum(1 for row in rows for x in range(0, len(row), 3) if row[x:x + 3] == needle)


async def test_phone_sees_a_charging_station(tmp_path, chromium):
    async with running_station(tmp_path / "s", {**PAGE, "status_page.password": PASSWORD}) as st:
        await st.world.tap(CARD)
        await state_is(st, "Charging")
        port = st.status_page._server.port
        url = f"http://station:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{port}/"
        dom = (await browse(chromium, url, "--dump-dom")).decode()
        assert 'id="state" class="badge Charging">Charging<' in dom
        for line in st.world.lcd_text():
            if not any(ch.isdigit() for ch in line):  # energy and power change while the page loads
                assert line.strip() in dom
        assert CARD in dom  # with the password, tags in full
        assert 'href="/sessions.csv"' in dom
        shot = tmp_path / "page.png"
        await browse(chromium, url, f"--screenshot={shot}")
        width, height, rows = decode_png(shot.read_bytes())
        assert (width, height) == (412, 915)
        assert count(rows, CHARGING_BLUE) > 1000, "no Charging badge in the screenshot (page unstyled?)"
        assert count(rows, LCD_GREEN) > 1000, "no LCD block in the screenshot"
        # The badge sits above the LCD, near the top, as on the page.
        first_blue = next(y for y, row in enumerate(rows) if bytes(CHARGING_BLUE) in row)
        assert first_blue < 150


async def test_browser_without_the_password_sees_nothing(tmp_path, chromium):
    async with running_station(tmp_path, {**PAGE, "status_page.password": PASSWORD}) as st:
        await st.world.tap(CARD)
        await state_is(st, "Charging")
        dom = (await browse(chromium, f"http://127.0.0.1:{st.status_page._server.port}/", "--dump-dom")).decode()
        assert "Charging" not in dom and CARD not in dom


async def test_open_page_masks_tags_in_the_browser(tmp_path, chromium):
    async with running_station(tmp_path, PAGE) as st:
        await st.world.tap(CARD)
        await state_is(st, "Charging")
        dom = (await browse(chromium, f"http://127.0.0.1:{st.status_page._server.port}/", "--dump-dom")).decode()
        assert "badge Charging" in dom and CARD not in dom and "…3B" in dom
