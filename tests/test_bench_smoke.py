"""Smoke test of the benchmarks (bench/): two cheap ones run in-process, quick mode.

No timing asserts: only that the figures are produced and sane (the counts
are deterministic; times only have to be positive). The whole bench is not
part of CI: `python -m bench --quick` runs it in under a minute.
"""

from __future__ import annotations

import asyncio

from bench import b_meter, b_replay, b_rfid


def test_rfid_quick_figures():
    res = b_rfid.run(quick=True)
    s = res.figures["summary"]
    assert s["ours_empty_poll_transfers"] <= 12  # the target
    assert res.figures["ours_empty_instant"]["spi_transfers_per_poll"] <= 12
    # The stock library's busy loop: 2000 CommIrqReg reads per empty poll.
    assert s["stock_empty_poll_transfers"] > 2000
    # A held card: ours sees it on every poll, the stock library on every second one.
    assert s["ours_card_seen_fraction"] == 1.0
    assert 0.4 <= s["stock_card_seen_fraction"] <= 0.6
    for key in ("ours_empty_realtime", "stock_empty_realtime", "ours_card_present"):
        x = res.figures[key]
        assert x["cpu_us_per_poll"] > 0 and x["wall_us_per_poll"] > 0 and x["max_poll_rate_hz"] > 0
        assert 0 <= x["emulator_cpu_us_per_poll"] <= x["cpu_us_per_poll"]


def test_replay_quick_order_kept(tmp_path):
    result = asyncio.run(b_replay._replay("local", 100, tmp_path))
    assert result["messages"] == 100
    assert result["station_order_kept"] is True
    assert result["msg_per_s"] > 0


def test_meter_wire_figures():
    from station.hardware.meters.models import MODELS

    sdm = MODELS["SDM630"]
    w = b_meter.wire(sdm.plan, 9600)
    assert w["requests"] == len(sdm.plan)
    assert w["bytes_out"] == 8 * len(sdm.plan)
    assert w["bytes_in"] == sum(5 + 2 * r.count for r in sdm.plan)
    # 11 bit times per character, 3.5 characters of silence after each of the two frames
    chars = w["bytes_out"] + w["bytes_in"] + 7 * len(sdm.plan)
    assert w["bus_ms"] == round(chars * 11 / 9600 * 1000, 1)
    assert b_meter.wire(sdm.plan, 19200)["bus_ms"] < w["bus_ms"]


def test_mcsp_server_bench_gets_every_reply_and_the_ledger_agrees(tmp_path):
    """The MCSP server bench in miniature: a real `station mcsp-server` process, 10 stations held
    and 2 doing sessions back to back; every reply OK, and the ledger (read with SQL, not through
    the server) holds exactly the sessions the stations saw accepted, with their energy."""
    from bench import b_mcsp_server, mcsp_load

    mcsp_load.raise_nofile()
    mcsp_load.write_tags(tmp_path / "tags.toml")

    async def main():
        held = await b_mcsp_server.held(tmp_path / "held", 10, beat_s=1.0, quiet_s=0.5, settle_s=0.3,
                                        max_connections=None)
        sessions = await b_mcsp_server.sessions(tmp_path / "sessions", 2, background=5, seconds=1.0, settle_s=0.3,
                                                max_connections=None)
        return held, sessions

    held, sessions = asyncio.run(main())
    assert held["connected"] == 10
    assert held["every_heartbeat"]["all_ok"] and held["every_heartbeat"]["sent"] >= 10  # one on each connect
    assert held["rss_mib_connected"] > 0 and held["open_fds"] >= 10
    assert sessions["sessions"] > 0
    assert sessions["start"]["all_ok"] and sessions["end"]["all_ok"] and sessions["connect"]["all_ok"]
    assert sessions["every_background_heartbeat"]["all_ok"]
    assert sessions["ledger"] == {"closed": sessions["sessions"], "open": 0, "superseded": 0,
                                  "closed_with_wrong_energy": 0}


def test_controller_bench_wire_figures():
    from bench import b_controller

    # EVSE-DIN poll: one read of 8 registers: 8 bytes out, 21 back, two silences
    assert b_controller.wire_ms([(8, 21)], 9600) == round((8 + 21 + 7) * 11 / 9600 * 1000, 1)
    row = asyncio.run(b_controller._measure("EVSE-DIN", 19200, 3, full=False))
    assert row["p50_ms"] > 0 and row["silence_ms"] == round(3.5 * 10 / 19200 * 1000, 2)


def test_sharing_bench_never_above_the_limit():
    import random

    from bench import b_sharing

    starts, stops, peak = b_sharing._simulate(random.Random(1), 10.0)
    assert len(starts) == len(stops) == b_sharing.N
    assert peak <= b_sharing.LIMIT + 1e-9 and all(t >= 0 for t in starts + stops)


def test_limit_bench_sees_each_limit_on_the_register():
    from bench import b_limit

    ocpp = asyncio.run(b_limit._ocpp(2))
    change, reply = asyncio.run(b_limit._mcsp(2))
    assert len(ocpp) == len(change) == len(reply) == 2 and min(ocpp + change + reply) > 0
