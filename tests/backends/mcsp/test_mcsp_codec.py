"""The MCSP/1.0 codec: the picture byte for byte, framing rules, limits, and fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from station.backends.mcsp import codec
from station.backends.mcsp.codec import (
    CLOSED,
    NEED_DATA,
    Connection,
    Headers,
    LocalProtocolError,
    RemoteProtocolError,
    Reply,
    Request,
    Role,
)
from station.errors import ProtocolError

T = Path(__file__).resolve().parents[2] / "transcripts"


def transcript(name: str) -> bytes:
    return (T / name).read_bytes()


def events(conn: Connection, data: bytes, eof: bool = False) -> list:
    if data:
        conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    out = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA or ev is CLOSED:
            return out
        out.append(ev)


START = codec.request("START", name="Tankstelle1", key="16AC936B1692E73A")
END = Request("END", Headers([("Name", "Tankstelle1"), ("Session-Id", "23"), ("Key", "16AC936B1692E73A")]))


# --- the picture, byte for byte ---------------------------------------------------------

def test_station_encodes_the_pictures_requests_byte_for_byte():
    st_ = Connection(Role.STATION)
    assert st_.send(START) == transcript("picture-success.1.station")
    st_.abandon()
    assert st_.send(END) == transcript("picture-success.3.station")
    assert transcript("picture-error.1a.station") == transcript("picture-success.1.station")


def test_server_encodes_the_pictures_replies_byte_for_byte_without_end_marker():
    assert codec.encode_reply(codec.ok(session_id=23), end_marker=False) == transcript("picture-success.2.server")
    assert codec.encode_reply(Reply("OK"), end_marker=False) == transcript("picture-success.4.server")
    assert codec.encode_reply(codec.error(401, "Key is not registered"), end_marker=False) == \
        transcript("picture-error.2a.server")
    # the reference form adds only the empty line
    assert codec.encode_reply(codec.ok(session_id=23)) == transcript("picture-success.2.server") + b"\r\n"


def test_server_parses_the_pictures_requests():
    sv = Connection(Role.SERVER)
    got = events(sv, transcript("picture-success.1.station") + transcript("picture-success.3.station"))
    assert got == [START, END]
    assert got[1].get("session-id") == "23"  # case-insensitive
    assert codec.request_problem(got[0]) is None and codec.request_problem(got[1]) is None


def test_station_parses_the_pictures_replies_without_end_marker():
    st_ = Connection(Role.STATION)
    st_.send(START)
    assert events(st_, transcript("picture-success.2.server")) == []  # could go on: wait
    assert st_.pending_reply == codec.ok(session_id=23)
    reply = st_.end_of_reply()  # the link went quiet
    assert reply == codec.ok(session_id=23) and reply.ended_by == "idle"
    st_.send(END)
    assert events(st_, transcript("picture-success.4.server")) == []
    assert st_.end_of_reply() == Reply("OK")

    st_ = Connection(Role.STATION)
    st_.send(START)
    events(st_, transcript("picture-error.2a.server"))
    err = st_.end_of_reply()
    assert (err.status, err.code, err.message) == ("ERROR", 401, "Key is not registered")


def test_lf_only_is_accepted():
    sv = Connection(Role.SERVER)
    assert events(sv, transcript("picture-success.1.station").replace(b"\r\n", b"\n")) == [START]


# --- reply framing ----------------------------------------------------------------------

def test_reply_ends_at_empty_line_next_status_line_or_eof():
    st_ = Connection(Role.STATION)
    got = events(st_, b"MMETERING/1.0 OK\r\nSession-Id: 1\r\n\r\n")
    assert got == [codec.ok(session_id=1)] and got[0].ended_by == "blank"
    got = events(st_, b"MMETERING/1.0 OK\r\nSession-Id: 2\r\nMMETERING/1.0 ERROR\r\nCode: 500\r\n")
    assert got == [codec.ok(session_id=2)] and got[0].ended_by == "next"
    got = events(st_, b"Message: x\r\n", eof=True)
    assert got == [Reply("ERROR", Headers([("Code", "500"), ("Message", "x")]))] and got[0].ended_by == "eof"
    assert st_.next_event() is CLOSED


def test_a_line_cut_by_eof_is_never_used():
    st_ = Connection(Role.STATION)  # "Session-Id: 7" could have been "Session-Id: 73"
    assert events(st_, b"MMETERING/1.0 OK\r\nSession-Id: 7", eof=True) == [Reply("OK")]
    sv = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError, match="middle of a line"):
        events(sv, b"MMETERING/1.0 HEARTBEAT\r\nContent-Length: 1\r\nName: Tank", eof=True)


def test_end_of_reply_waits_for_a_partial_line():
    st_ = Connection(Role.STATION)
    events(st_, b"MMETERING/1.0 OK\r\nSession-")
    assert st_.partial_line and st_.end_of_reply() is None
    events(st_, b"Id: 3\r\n")
    assert st_.end_of_reply() == codec.ok(session_id=3)
    assert st_.end_of_reply() is None  # nothing pending any more


def test_empty_lines_between_messages_are_ignored():
    sv = Connection(Role.SERVER)
    data = b"\r\n\n" + transcript("picture-success.1.station") + b"\r\n\r\n" + transcript("picture-success.3.station")
    assert events(sv, data) == [START, END]


def test_request_cut_by_eof_is_an_error():
    sv = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError, match="closed in the middle of a request"):
        events(sv, transcript("picture-success.1.station")[:-23], eof=True)


def test_content_length_zero_and_unknown_action_parse():
    sv = Connection(Role.SERVER)
    assert events(sv, b"MMETERING/1.3 PING\r\nContent-Length: 0\r\n") == [Request("PING", Headers(), "1.3")]


# --- strictness and limits --------------------------------------------------------------

BAD_REQUESTS = [
    (b"MMETERING/2.0 START\r\nContent-Length: 0\r\n", "unsupported version"),
    (b"mmetering/1.0 START\r\n", "expected 'MMETERING/1.0"),
    (b"MMETERING/1.0  START\r\n", "malformed start line"),
    (b"MMETERING/1.0 START\r\nName: x\r\n", "Content-Length as the first header"),
    (b"MMETERING/1.0 START\r\nContent-Length: two\r\n", "number of header lines"),
    (b"MMETERING/1.0 START\r\nContent-Length: 33\r\n", "exceeds 32"),
    (b"MMETERING/1.0 START\r\nContent-Length: 2\r\nName: x\r\n\r\n", "empty line"),
    (b"MMETERING/1.0 START\r\nContent-Length: 2\r\nName: x\r\nname: y\r\n", "given twice"),
    (b"MMETERING/1.0 START\r\nContent-Length: 2\r\nName: x\r\nContent-Length: 1\r\n", "Content-Length given twice"),
    (b"MMETERING/1.0 START\r\nContent-Length: 1\r\nName x\r\n", "without ':'"),
    (b"MMETERING/1.0 START\r\nContent-Length: 1\r\nNa me: x\r\n", "invalid header name"),
    (b"MMETERING/1.0 START\r\nContent-Length: 1\r\nName: Tankstelle\xfc\r\n", "0xFC is not printable"),
    (b"MMETERING/1.0 START\r\nContent-Length: 1\r\nName:\tx\r\n", "0x09 is not printable"),
    (b"MMETERING/1.0 START\r\nContent-Length: 1\r\nName: " + b"x" * 300 + b"\r\n", "longer than 256"),
    (b"MMETERING/1.0 START\r\nContent-Length: 1\r\nName: " + b"x" * 300, "longer than 256"),  # no LF yet
]


@pytest.mark.parametrize("data,why", BAD_REQUESTS)
def test_malformed_requests_raise_remote_protocol_error(data, why):
    sv = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError, match=why) as exc:
        events(sv, data)
    assert exc.value.remote is True and isinstance(exc.value, ProtocolError)
    with pytest.raises(RemoteProtocolError):  # stays broken until resync()
        sv.next_event()


def test_reply_status_must_be_ok_or_error():
    st_ = Connection(Role.STATION)
    with pytest.raises(RemoteProtocolError, match="unknown reply status"):
        events(st_, b"MMETERING/1.0 MAYBE\r\n")


def test_message_size_limit():
    sv = Connection(Role.SERVER)
    headers = b"".join(b"H%d: " % i + b"v" * 200 + b"\r\n" for i in range(25))
    with pytest.raises(RemoteProtocolError, match="longer than 4096"):
        events(sv, b"MMETERING/1.0 START\r\nContent-Length: 25\r\n" + headers)


def test_reply_header_count_limit():
    st_ = Connection(Role.STATION)
    with pytest.raises(RemoteProtocolError, match="more than 32"):
        events(st_, b"MMETERING/1.0 OK\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(33)))


def test_resync_skips_to_the_next_start_line():
    sv = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError):
        events(sv, b"GARBAGE\r\nName: x\r\nKey: y\r\n")
    sv.resync()
    assert events(sv, b"more garbage\r\n" + transcript("picture-success.1.station")) == [START]
    # an overlong line is dropped up to its end
    with pytest.raises(RemoteProtocolError):
        events(sv, b"x" * 400)
    sv.resync()
    assert events(sv, b"x" * 100 + b"\r\n" + transcript("picture-success.3.station")) == [END]


def test_local_errors_when_sending():
    st_ = Connection(Role.STATION)
    with pytest.raises(LocalProtocolError, match="sends requests"):
        st_.send(codec.ok())
    for bad in (codec.request("START", name="Tankstelle\u00fc"), codec.request("START", name="a\r\nKey: x"),
                Request("START", Headers([("Content-Length", "9")])), Request("START", Headers([("A", "1"), ("a", "2")])),
                Request("start"), codec.request("START", name="x" * 300), Request("START", Headers([("N", " x")])),
                Request("START", Headers([(f"H{i}", "v") for i in range(33)]))):
        with pytest.raises(LocalProtocolError):
            st_.send(bad)
    st_.send(START)
    with pytest.raises(LocalProtocolError, match="one request at a time"):
        st_.send(END)
    sv = Connection(Role.SERVER)
    with pytest.raises(LocalProtocolError, match="no request is waiting"):
        sv.send(codec.ok())
    with pytest.raises(LocalProtocolError, match="sends replies"):
        sv.send(START)


@pytest.mark.parametrize("headers,problem", [
    ({"key": "K"}, "Name is missing"),
    ({"name": "N"}, "Key is missing"),
    ({"name": "N", "key": "K", "session_key": "has space"}, "Session-Key"),
    ({"name": "N", "key": "K", "meter_start": "12.5"}, "whole number"),
    ({"name": "N", "key": "K", "meter_start_phases": "1,x"}, "commas"),
    ({"name": "N", "key": "K", "meter_start": "10", "meter_stop": "9"}, "below"),
    ({"name": "N", "key": "K", "meter_start": "10", "meter_stop": "19", "energy": "8"}, "Energy"),
    ({"name": "N", "key": "K", "time": "2026-11-05 14:00"}, "ISO 8601"),
    ({"name": "x" * 65, "key": "K"}, "longer than 64"),
])
def test_request_problems(headers, problem):
    assert problem in codec.request_problem(codec.request("START", **headers))


def test_end_needs_a_session_reference():
    assert "Session-Id or Session-Key" in codec.request_problem(codec.request("END", name="N", key="K"))
    assert codec.request_problem(codec.request("END", name="N", key="K", session_key="abc")) is None
    assert codec.request_problem(codec.request("HEARTBEAT", name="N")) is None


# --- property-based ---------------------------------------------------------------------

_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_value = st.builds(lambda a, b: (a + b).strip(" ") or "v", _text,
                   st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,20}", fullmatch=True).filter(lambda n: n.lower() != "content-length")
_headers = st.lists(st.tuples(_name, _value), max_size=12, unique_by=lambda p: p[0].lower()).map(Headers)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=st.sampled_from(["START", "END", "HEARTBEAT", "X-TEST"]), headers=_headers,
       cuts=st.lists(st.integers(0, 600), max_size=5), lf_only=st.booleans())
def test_request_round_trip_in_any_chunks(action, headers, cuts, lf_only):
    msg = Request(action, headers)
    data = Connection(Role.STATION).send(msg)
    if lf_only:
        data = data.replace(b"\r\n", b"\n")
    sv = Connection(Role.SERVER)
    got = []
    last = 0
    for cut in sorted(c for c in cuts if c < len(data)) + [len(data)]:
        got += events(sv, data[last:cut])
        last = cut
    assert got == [msg]


@settings(max_examples=200, deadline=None)
@given(status=st.sampled_from(["OK", "ERROR"]), headers=_headers, marker=st.booleans())
def test_reply_round_trip(status, headers, marker):
    msg = Reply(status, headers)
    st_ = Connection(Role.STATION)
    got = events(st_, codec.encode_reply(msg, end_marker=marker))
    if not marker:
        assert got == [] and st_.end_of_reply() == msg
    else:
        assert got == [msg]


def _drain(conn: Connection, data: bytes) -> None:
    if data:
        conn.receive_data(data)
    for _ in range(10_000):
        try:
            ev = conn.next_event()
        except ProtocolError:
            conn.resync()
            continue
        if ev is NEED_DATA or ev is CLOSED:
            return
    raise AssertionError("the codec did not settle")


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.binary(min_size=1, max_size=300), max_size=6), role=st.sampled_from([Role.SERVER, Role.STATION]),
       eof=st.booleans())
def test_random_bytes_raise_nothing_but_protocol_error(data, role, eof):
    conn = Connection(role)
    for chunk in data:
        _drain(conn, chunk)
    if eof:
        conn.receive_data(b"")
        _drain(conn, b"")
    if role is Role.STATION:
        conn.end_of_reply()


_line = st.one_of(
    st.sampled_from([b"MMETERING/1.0 START", b"MMETERING/1.0 END", b"MMETERING/1.0 OK", b"MMETERING/1.0 ERROR",
                     b"Content-Length: 2", b"Content-Length: 40", b"Name: Tankstelle1", b"Key: 1", b"", b"Code: 401"]),
    st.binary(max_size=40))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_line, max_size=20), sep=st.sampled_from([b"\r\n", b"\n", b"\r"]),
       role=st.sampled_from([Role.SERVER, Role.STATION]))
def test_plausible_garbage_raises_nothing_but_protocol_error(lines, sep, role):
    conn = Connection(role)
    _drain(conn, sep.join(lines) + sep)
    conn.receive_data(b"")
    _drain(conn, b"")
    if role is Role.STATION:
        conn.end_of_reply()
