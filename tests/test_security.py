"""Security: MCSP over TLS with a pinned CA and a station secret, failures reported once and retried
with a bounded backoff, secrets and id tags kept out of the logs, and the start-up permission checks."""

from __future__ import annotations

import logging
import os
import ssl

import pytest
from mcsp_support import SECRET, FakeStation, session, tls_server
from pki_support import mcsp_pki

from station import config as configmod
from station import privacy, security
from station.backends.link import client_tls_context
from station.backends.mcsp import codec
from station.backends.mcsp.client import McspBackend
from station.backoff import Backoff
from station.errors import BackendOffline, ConfigError
from station.servers.mcsp import McspServer
from tests.stations import CARD, CARD7, TAGS, running_station, state_is, until

TAG = "16AC936B1692E73A"
WRONG = "wrong-secret-ABCDEFGHIJKLMN"


@pytest.fixture(autouse=True)
def masked_by_default():
    privacy.set_log_tags(False)
    yield
    privacy.set_log_tags(False)


# --- a small private CA -------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """ca signs `server` (localhost, 127.0.0.1) and `elsewhere` (another host); other-ca signs nothing."""
    return mcsp_pki(tmp_path_factory.mktemp("pki"))


def backend(url: str, **kw) -> McspBackend:
    kw.setdefault("timeout_s", 3.0)
    kw.setdefault("heartbeat_s", 3600.0)
    kw.setdefault("backoff", Backoff(initial=0.02, cap=0.1))
    return McspBackend(url, "Tankstelle1", **kw)


async def keep_failing(b: McspBackend, tries: int = 4) -> None:
    """Run the link keeper until it has failed `tries` times in a row."""
    await b.start(FakeStation())
    await until(lambda: b.backoff.failures >= tries, 20, f"{tries} failed connection attempts")


def records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name.startswith("station.backends.mcsp")]


# --- TLS and the station secret, end to end ----------------------------------------------

async def test_pinned_ca_and_secret_carry_a_whole_session(pki, caplog):
    caplog.set_level(logging.DEBUG)
    srv = await tls_server(pki)
    b = backend(srv.url, ca_file=str(pki / "ca.pem"), secret=SECRET)
    try:
        await b.start(FakeStation())
        assert await b.wait_ready(10)
        s = session(tag=TAG, start=1_000, stop=2_500)
        result = await b.authorize(TAG, s)
        assert result.accepted
        from mcsp_support import item

        from station.core.model import MessageKind

        await b.deliver(item(MessageKind.STOP), session(tag=TAG, start=1_000, stop=2_500,
                                                         backend_session_id=result.backend_session_id))
        [rec] = srv.sessions()
        assert (rec.state, rec.energy_wh) == ("closed", 1_500)
        assert all(r.get("Auth") == SECRET for r in srv.requests)  # every request carries it
    finally:
        await b.close()
        await srv.close()
    assert SECRET not in caplog.text and TAG not in caplog.text


def test_the_pinned_ca_is_the_only_trusted_one(pki):
    ctx = client_tls_context(str(pki / "ca.pem"))
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "ca"),),)]
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2 and ctx.check_hostname
    assert ctx.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize("ca, cert, why", [
    ("other-ca", "server", "unable to get local issuer certificate"),   # a server of another CA (or a man in the middle)
    ("ca", "elsewhere", "address mismatch"),               # our CA, but issued for another host
])
async def test_an_untrusted_server_is_one_clear_error_and_a_bounded_retry(pki, caplog, ca, cert, why):
    caplog.set_level(logging.DEBUG)
    srv = await tls_server(pki, cert)
    b = backend(srv.url, ca_file=str(pki / f"{ca}.pem"), secret=SECRET)
    try:
        await keep_failing(b)
        with pytest.raises(BackendOffline):
            await b.authorize(TAG, session(tag=TAG))
    finally:
        await b.close()
        await srv.close()
    [error] = records(caplog, logging.ERROR)  # once, although it failed again and again
    text = error.getMessage()
    assert "MCSP TLS" in text and why in text and str(pki / f"{ca}.pem") in text and "retrying with backoff" in text
    assert srv.requests == []  # not a byte of a request (nor the secret) went to that server
    assert SECRET not in caplog.text
    assert b.backoff.failures >= 4 and b.backoff.cap == 0.1  # retried, delays capped


async def test_a_wrong_or_missing_secret_is_one_clear_error_never_logging_the_secret(pki, caplog):
    caplog.set_level(logging.DEBUG)
    srv = await tls_server(pki)
    b = backend(srv.url, ca_file=str(pki / "ca.pem"), secret=WRONG)
    try:
        await keep_failing(b)
        assert not b.online
        [error] = records(caplog, logging.ERROR)
        assert "refuses this station" in error.getMessage() and "backend.mcsp.secret" in error.getMessage()
        assert "407" in error.getMessage()
        # The server's list is corrected (say, the operator registers this secret): the link recovers.
        srv.stations["Tankstelle1"] = WRONG
        await until(lambda: b.online, 20, "the link to come back")
        await until(lambda: any("works again" in r.getMessage() for r in caplog.records), 10, "a recovery line")
    finally:
        await b.close()
        await srv.close()
    assert WRONG not in caplog.text and SECRET not in caplog.text


async def test_unreachable_server_is_logged_once_while_it_stays_away(caplog):
    caplog.set_level(logging.DEBUG)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = backend(f"tcp://127.0.0.1:{port}")
    try:
        await keep_failing(b)
    finally:
        await b.close()
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()


def test_the_secret_stays_out_of_reprs_and_encoding_errors():
    req = codec.request("START", name="Tankstelle1", key=TAG, auth=SECRET)
    assert SECRET not in repr(req) and "<redacted>" in repr(req)
    for bad in ("gehëim-secret-0123456789", "x" * 300):
        with pytest.raises(codec.LocalProtocolError) as exc:
            codec.encode_request(codec.request("HEARTBEAT", name="Tankstelle1", auth=bad))
        assert bad not in str(exc.value) and bad[:20] not in str(exc.value) and "'Auth'" in str(exc.value)


@pytest.mark.parametrize("secret", ["gehëim-0123456789abcdef", " padded-0123456789abcdef", "x" * 201, ""])
def test_config_rejects_a_secret_that_cannot_be_sent_without_echoing_it(secret):
    with pytest.raises(ConfigError) as exc:
        configmod.defaults({"backend.mcsp.secret": secret})
    assert exc.value.key == "backend.mcsp.secret" and (not secret or secret not in str(exc.value))


# --- id tags in logs ------------------------------------------------------------------------

def test_mask_shows_at_most_a_quarter_of_a_tag():
    assert privacy.mask("16AC936B1692E73A") == "…E73A"
    assert privacy.mask("D64FC93B") == "…3B"
    assert privacy.mask("abc") == "…"
    privacy.set_log_tags(True)
    assert privacy.tag("D64FC93B") == "D64FC93B"


def tag_forms(tag: str) -> list[str]:
    spaced = " ".join(tag[i:i + 2] for i in range(0, len(tag), 2))
    return [tag, tag.lower(), spaced, spaced.lower()]


async def run_mcsp_session(tmp_path, log_tags: bool) -> list:
    server = McspServer(tags=TAGS)
    await server.start()
    overrides = {"backend.kind": "mcsp", "station.name": "Tankstelle1", "backend.mcsp.url": server.url,
                 "backend.mcsp.timeout_s": 3.0, "station.log_tags": log_tags}
    try:
        async with running_station(tmp_path, overrides) as st:
            assert await st.backend.wait_ready(10)
            for card in (CARD, CARD7):
                await st.world.tap(card)
                await state_is(st, "SuspendedEV")
                st.world.consume(700)
                await st.world.tap(card)
                await state_is(st, "Available")
            await st.world.tap("6AC32B40")  # unknown: refused
            await until(lambda: st.charger.taps >= 5, what="the refusal")
            assert await st.flush(10)
        return server.sessions()
    finally:
        await server.close()


async def test_a_whole_sessions_logs_hold_no_full_tag(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sessions = await run_mcsp_session(tmp_path, log_tags=False)
    assert [(r.tag, r.energy_wh) for r in sessions] == [(CARD, 700), (CARD7, 700)]  # the backend got the full tags
    text = caplog.text
    for tag in (CARD, CARD7, "6AC32B40"):
        for form in tag_forms(tag):
            assert form not in text, f"{form} in the log"
    assert "card tapped: …" + CARD[-2:] in text  # the reader's line, masked
    assert any("session" in r.getMessage() and "…" in r.getMessage() for r in caplog.records
               if r.name.startswith("station.servers.mcsp"))


async def test_installers_can_log_tags_in_full(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    await run_mcsp_session(tmp_path, log_tags=True)
    assert f"card tapped: {CARD}" in caplog.text


def test_dialect_lines_of_other_stations_are_logged_masked():
    from station.backends.evcs.dialect import DialectError, LineParser, _loggable

    assert _loggable("Tag ID = D6 4F C9 3B") == "Tag ID = …3B"
    assert _loggable("LADER 2 lebt") == "LADER 2 lebt"
    p = LineParser()
    p.feed(b"Tag ID = D6 4F C9 3B\x00\r\n")
    with pytest.raises(DialectError) as exc:
        p.next_line()
    assert "D6 4F" not in str(exc.value) and "column 21" in str(exc.value)


# --- permissions of secrets at start --------------------------------------------------------

def write_config(tmp_path, mode: int, extra: str = "") -> str:
    path = tmp_path / "station.toml"
    path.write_text(f'[station]\nstate_dir = "{tmp_path / "state"}"\n[hardware]\nmode = "sim"\n'
                    f'[backend]\nkind = "mcsp"\n[backend.mcsp]\nurl = "tls://127.0.0.1:4711"\n'
                    f'secret = "{SECRET}"\n{extra}')
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize("mode, warned", [(0o600, False), (0o640, False), (0o644, True), (0o666, True)])
def test_a_config_holding_a_secret_readable_by_others_is_warned_about(tmp_path, caplog, mode, warned):
    path = write_config(tmp_path, mode)
    with caplog.at_level(logging.WARNING, logger="station.security"):
        problems = security.check_at_start(configmod.load(path))
    assert bool(problems) is warned
    if warned:
        [line] = [r.getMessage() for r in caplog.records]
        assert path in line and "chmod 600" in line and "640" in line and "root:station" in line
        assert "backend.mcsp.secret" in line and SECRET not in line


def test_private_key_ca_and_state_dir_are_checked(tmp_path):
    key, ca, state = tmp_path / "station.key", tmp_path / "ca.pem", tmp_path / "state"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    state.mkdir()
    os.chmod(key, 0o644)
    os.chmod(ca, 0o666)
    os.chmod(state, 0o755)
    cfg = configmod.defaults({"backend.ocpp.key_file": str(key), "backend.mcsp.ca_file": str(ca),
                              "station.state_dir": str(state)})
    problems = security.permission_problems(cfg)
    assert len(problems) == 3
    assert any(str(key) in p and "private key" in p for p in problems)
    assert any(str(ca) in p and "writable" in p for p in problems)
    assert any(str(state) in p and "chmod 750" in p for p in problems)
    os.chmod(key, 0o600)
    os.chmod(ca, 0o644)
    os.chmod(state, 0o750)
    assert security.permission_problems(cfg) == []


def test_a_secret_over_plain_tcp_is_warned_about(tmp_path, caplog):
    cfg = configmod.defaults({"backend.kind": "mcsp", "backend.mcsp.url": "tcp://10.0.0.2:4711",
                              "backend.mcsp.secret": SECRET, "hardware.mode": "sim"})
    with caplog.at_level(logging.WARNING, logger="station.security"):
        security.check_at_start(cfg)
    assert "clear text" in caplog.text and SECRET not in caplog.text


def test_libraries_that_log_whole_frames_stay_quiet_even_at_debug():
    """The ocpp library logs every frame (idTag included) at INFO, websockets the handshake
    headers (HTTP Basic credentials included) at DEBUG: the CLI holds both at WARNING."""
    import io

    from station.cli import setup_logging

    root = logging.getLogger()
    quiet = ("websockets", "transitions", "ocpp", "pymodbus")
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in quiet}
    try:
        setup_logging("DEBUG", stream=io.StringIO())
        for name in ("ocpp", "websockets.client", "websockets.protocol"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger("station").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def test_check_config_shows_the_permission_warnings(tmp_path, capsys):
    from station import cli

    path = write_config(tmp_path, 0o644)
    assert cli.main(["check-config", path]) == 0
    out = capsys.readouterr()
    assert "OK" in out.out and f"warning: {path} holds backend.mcsp.secret" in out.err and SECRET not in out.err
