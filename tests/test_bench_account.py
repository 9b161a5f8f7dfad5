"""tools/bench_account.py: the frame-to-row table, the shares and µs, the markdown, the notes
markers, the one-line failures; and a smoke run of the micro-benchmarks (tiny counts)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))

import accountlib as al  # noqa: E402
import bench_account as ba  # noqa: E402

# stacks as py-spy 0.4 writes them (root first), one sample count each
RAW = """\
<module> (gameserver/__main__.py:3);RoomHost._loop (gameserver/roomhost.py:263);RoomHost.step (gameserver/roomhost.py:283);RoomHost.read_inputs (gameserver/roomhost.py:403);FastConnection.read_available (gameserver/_tws.py:372) 30
<module> (gameserver/__main__.py:3);RoomHost.step (gameserver/roomhost.py:283);RoomHost.read_inputs (gameserver/roomhost.py:403);FastConnection.read_available (gameserver/_tws.py:389);SSLObject.read (ssl.py:919) 20
<module> (gameserver/__main__.py:3);RoomHost.read_inputs (gameserver/roomhost.py:404);FastConnection.messages (gameserver/_tws.py:430);FrameReader.next (shared/wsframe.py:180);unmask (shared/wsframe.py:101) 10
<module> (gameserver/__main__.py:3);RoomHost.read_inputs (gameserver/roomhost.py:411);parse_client_message (shared/messages.py:160);Reader.varint (shared/wire.py:40) 5
<module> (gameserver/__main__.py:3);RoomHost.step (gameserver/roomhost.py:285);Room.tick (gameserver/room.py:445);Arena.update (gameserver/games/arena.py:104);Entity.x (shared/schema.py:300) 15
<module> (gameserver/__main__.py:3);RoomHost.step (gameserver/roomhost.py:285);Room.tick (gameserver/room.py:449);State.encode_delta (shared/state.py:200);varint (shared/wire.py:12) 4
<module> (gameserver/__main__.py:3);RoomHost.step (gameserver/roomhost.py:314);Outbound.offer_state (gameserver/outbound.py:90);Outbound._write (gameserver/outbound.py:66);FastConnection.write (gameserver/_tws.py:310);SSLObject.write (ssl.py:930) 6
<module> (gameserver/__main__.py:3);RoomHost.step (gameserver/roomhost.py:314);Outbound.offer_state (gameserver/outbound.py:90);Outbound._write (gameserver/outbound.py:66);FastConnection.write (gameserver/_tws.py:316);FastConnection._send_raw (gameserver/_tws.py:325) 8
<module> (gameserver/__main__.py:3);RoomHost.read_inputs (gameserver/roomhost.py:414);Room.push_input (gameserver/room.py:365) 2
<module> (gameserver/__main__.py:3);run (trio/_core/_run.py:2300);unrolled_run (trio/_core/_run.py:2500) 7
<module> (gameserver/__main__.py:3);somewhere_else (x.py:1) 3
not a stack line
"""


def test_parse_frame_and_raw() -> None:
    f = al.parse_frame("FastConnection.read_available (gameserver/_tws.py:372)")
    assert f == al.Frame("FastConnection.read_available", "gameserver/_tws.py", 372)
    assert al.parse_frame("<module> (x.py)") == al.Frame("<module>", "x.py", None)
    stacks = al.parse_raw(RAW)
    assert len(stacks) == 11  # the last line is skipped
    assert stacks[0][1] == 30 and stacks[0][0][-1].line == 372


def test_innermost_anchor_decides_the_row() -> None:
    rows = {}
    for stack, count in al.parse_raw(RAW):
        rows.setdefault(al.classify(stack, al.SERVER_RULES), 0)
        rows[al.classify(stack, al.SERVER_RULES)] += count
    assert rows[("tls_read", "recv, BIO, loop")] == 30
    assert rows[("tls_read", "SSLObject.read")] == 20
    assert rows[("frames", "unmask")] == 10
    # wire.py is no anchor: a varint in parse_client_message is decoding, in encode_delta encoding
    assert rows[("decode", "parse_client_message")] == 5
    assert rows[("encode", "State.encode_delta")] == 4
    assert rows[("update", "Arena")] == 15
    assert rows[("tls_write", "SSLObject.write")] == 6
    assert rows[("send", "_send_raw")] == 8
    assert rows[("bookkeeping", "the room's input queue")] == 2
    assert rows[("bookkeeping", "trio scheduler")] == 7
    assert rows[("bookkeeping", "other: somewhere_else")] == 3


def test_tally_shares_and_us() -> None:
    t = al.tally(al.parse_raw(RAW), al.SERVER_RULES)
    assert t.total == 110
    assert t.rows["tls_read"] == 50
    rows = al.profile_rows(t, cpu_fraction=0.8, units_per_s=20_000.0, rows=al.SERVER_ROWS)
    # 0.8 core over 20,000 player-ticks/s is 40 µs per player-tick; TLS read has 50/110 of it
    assert rows["tls_read"]["share"] == pytest.approx(50 / 110, abs=1e-4)
    assert rows["tls_read"]["us"] == pytest.approx(40 * 50 / 110, abs=0.01)
    assert sum(r["samples"] for r in rows.values()) == 110
    assert sum(r["us"] for r in rows.values()) == pytest.approx(40.0, abs=0.05)
    assert al.us_per_unit(0.5, 1.0, 0.0) == 0.0


def test_bot_rules() -> None:
    stack = al.parse_raw(
        "Engine._loop (clients/bots/lean.py:1250);Bot.on_readable (clients/bots/lean.py:840);"
        "LeanConnection._recv_plain (clients/bots/lean.py:440);SSLObject.read (ssl.py:919) 3\n"
        "Engine._loop (clients/bots/lean.py:1260);Bot.send_input (clients/bots/lean.py:815);"
        "LeanConnection.send (clients/bots/lean.py:495);"
        "LeanConnection._send_raw (clients/bots/lean.py:390) 2\n"
        "Engine._loop (clients/bots/lean.py:1240) 4\n"
        "Thread.run (threading.py:1) 1\n"
    )
    t = al.tally(stack, al.BOT_RULES)
    assert t.rows == {"tls_read": 3, "send": 2, "loop": 5}


def test_account_table_and_totals() -> None:
    profile = {"tls_read": {"us": 8.0, "share": 0.4}, "send": {"us": 12.0, "share": 0.6}}
    micro = {
        "tls_read": {"us": 2.0, "floor_us": 1.0},
        "send": {"us": 2.0, "floor_us": 0.5},
    }
    text = al.account_table(al.SERVER_ROWS, profile, micro)
    lines = text.splitlines()
    assert lines[0].startswith("| part of a player-tick | profile µs")
    tls = next(line for line in lines if line.startswith("| TLS read"))
    assert "| 8.0 | 40.0% | 2.00 | 50.0% | 1.00 | 2.0x |" in tls
    frames = next(line for line in lines if line.startswith("| frame parsing"))
    assert "| - | - | - | - | - | - |" in frames
    assert lines[-1].startswith("| **total** | **20.0** | 100% | **4.00** | 100% | **1.50** |")
    assert "players (conn./target)" not in text
    # a compiled row the profile has no samples of: its time is in its caller's row
    text = al.account_table(al.SERVER_ROWS, {**profile, "encode": {"samples": 0, "us": 0.0}}, None)
    encode = next(line for line in text.splitlines() if line.startswith("| delta encoding"))
    assert "| in the game's update | (compiled) |" in encode
    assert al.shares({"a": 1.0, "b": 3.0, "c": None}) == {"a": 0.25, "b": 0.75, "c": None}


def test_parts_lines_lump_small_parts() -> None:
    prof = {"bookkeeping": {"parts": {"trio scheduler": 0.1, "other: x": 0.001, "other: y": 0.002}}}
    text = al.parts_lines(prof, al.SERVER_ROWS)
    assert text.startswith("- bookkeeping")
    assert "trio scheduler 10.0%" in text and "smaller parts 0.3%" in text


def test_notes_markers(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text(f"before\n{ba.BEGIN}\nold table\n{ba.END}\nafter\n")
    assert ba.put_in_notes("| new |\n", notes)
    text = notes.read_text()
    assert "old table" not in text and "| new |" in text
    assert text.startswith("before\n") and text.endswith(f"{ba.END}\nafter\n")
    notes.write_text("no markers")
    assert not ba.put_in_notes("x", notes)


def test_render_from_json_with_every_part() -> None:
    data = {
        "date_utc": "2026-12-02",
        "git_commit": "abc1234",
        "micro": {
            "command": "python tools/bench_account.py --part micro",
            "core": "0",
            "n": 10,
            "repeats": 3,
            "rows": {k: {"us": 2.0, "floor_us": 1.0, "how": "x"} for k, _ in al.SERVER_ROWS},
        },
    }
    text = ba.render(data)
    assert "python tools/bench_account.py --part micro" in text
    assert "| **total** | **-** |" in text and "**16.00**" in text


def test_missing_py_spy_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(ba.bm, "VENV", Path("/nonexistent"))
    monkeypatch.setattr(ba.shutil, "which", lambda name: None)
    assert ba.main(["--part", "profile", "--json", "/nonexistent/a.json", "--no-notes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench_account: py-spy is not installed")


def test_attach_failure_is_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "py-spy"
    fake.write_text("#!/bin/sh\necho 'Error: Permission denied (os error 13)' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ba.AccountError) as err:
        ba.check_attach(str(fake), 1)
    assert "Permission denied" in str(err.value) and "ptrace" in str(err.value)
    assert "\n" not in str(err.value)


def test_micro_benchmarks_smoke() -> None:
    import account_micro as am

    rows = am.run_all(n=60, repeats=3)
    meta = rows.pop("_meta")
    assert meta["n"] == 60
    assert set(rows) == {k for k, _ in al.SERVER_ROWS}
    for key, row in rows.items():
        assert row["us"] > 0, key
        assert row["floor_us"] > 0, key
        # the best batch is the fastest, the figure the median one: never the other way round
        assert row["floor_us"] <= row["best_us"] <= row["us"], (key, row)


def test_micro_room_players_keep_moving() -> None:
    """The micro-benchmark's room rows time players who wander as the bots do: after a minute
    of ticks they still move every tick (a constant input parks them against a wall, and a
    room that changes nothing costs a fraction of the bench's)."""
    import account_micro as am

    def moved_per_tick(step: Callable[[], list[tuple[Any, ...]]]) -> float:
        room, numbers = am.arena_room()
        avatars = [room.player(n).data["avatar"] for n in numbers]  # type: ignore[union-attr]
        moved = 0
        for seq in range(1, 1401):  # 70 s at 20 Hz; count the last 200 ticks
            before = [(a.x, a.y) for a in avatars]
            for number, codes in zip(numbers, step(), strict=True):
                room.push_input(number, seq, codes)
            room.tick()
            if seq > 1200:
                moved += sum((a.x, a.y) != b for a, b in zip(avatars, before, strict=True))
        return moved / 200

    wandering = am.Wandering(am.ROOM)
    const = [am.INPUT.codes_for({"dx": 0.5, "dy": -0.25})] * am.ROOM
    assert moved_per_tick(wandering.step) > 0.9 * am.ROOM
    assert moved_per_tick(lambda: const) == 0


def test_compiled_frames_of_a_native_profile_have_their_rows() -> None:
    """py-spy --native shows mypyc's C functions: they anchor their own rows, innermost first
    (a wire varint inside the compiled encoder is encoding)."""
    native = (
        "RoomHost.step (gameserver/roomhost.py:366);Room.tick (gameserver/room.py:461);"
        "CPyPy_state___State___encode_deltas (__native_shared__mypyc_group.c:35999);"
        "CPyDef_state___State___encode_deltas (__native_shared__mypyc_group.c:33422);"
        "CPyDef_wire___varint (__native_shared__mypyc_group.c:100) 4\n"
        "RoomHost.read_inputs (gameserver/roomhost.py:488);"
        "FastConnection.read_available (gameserver/_tws.py:430);"
        "CPyDef_wsframe___FrameReader___feed (__native_shared__mypyc_group.c:9) 3\n"
        "RoomHost.read_inputs (gameserver/roomhost.py:495);"
        "CPyDef_messages___decode_input (__native_shared__mypyc_group.c:7) 2\n"
    )
    rows = {al.classify(stack, al.SERVER_RULES): n for stack, n in al.parse_raw(native)}
    assert rows == {
        ("encode", "State.encode_deltas (compiled)"): 4,
        ("frames", "FrameReader (compiled)"): 3,
        ("decode", "decode_input (compiled)"): 2,
    }


PERF_REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 2K of event 'cpu-clock'
# Overhead  Shared Object
# ........  ..............................
#
    54.72%  libpython3.11.so.1.0
    24.41%  [kernel.kallsyms]
     6.97%  libcrypto.so.3
     4.26%  libssl.so.3
     4.16%  shared__mypyc_group__mypyc.cpython-311-x86_64-linux-gnu.so
     3.82%  libc.so.6
     0.54%  _socket.cpython-311-x86_64-linux-gnu.so
     0.41%  _ssl.cpython-311-x86_64-linux-gnu.so
     0.09%  libz.so.1.2.13
"""


def test_perf_report_by_library() -> None:
    dso = al.parse_perf_dso(PERF_REPORT)
    assert len(dso) == 9 and dso["libpython3.11.so.1.0"] == pytest.approx(0.5472)
    assert al.native_group("[kernel.kallsyms]") == "kernel"
    assert al.native_group("/usr/lib/x86_64-linux-gnu/libssl.so.3") == "openssl"
    assert al.native_group("shared__mypyc_group__mypyc.cpython-311-x86_64-linux-gnu.so") == (
        "compiled"
    )
    assert al.native_group("_ssl.cpython-311-x86_64-linux-gnu.so") == "extensions"
    assert al.native_group("libz.so.1.2.13") == "other"
    # 50% of a core over 10,000 player-ticks a second: 50 µs per player-tick in all
    rows = al.native_rows(dso, 0.5, 10_000)
    assert rows["interpreter"]["us"] == pytest.approx(50 * 0.5472 / 0.9938, abs=0.01)
    assert rows["openssl"]["share"] == pytest.approx((0.0697 + 0.0426) / 0.9938, abs=1e-4)
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0, abs=1e-3)
    table = al.native_table(rows)
    assert table.splitlines()[2].startswith("| CPython's interpreter") and "27.5" in table
    assert table.splitlines()[-1] == "| **total** | 100% | **50.0** |"


def test_render_the_split_by_library_and_the_transport_alone() -> None:
    rows = al.native_rows(al.parse_perf_dso(PERF_REPORT), 0.74, 9600)
    native = {
        "command": "python tools/bench_account.py --part native --players 480",
        "players_target": 480,
        "players": 480,
        "server_cpu": 0.74,
        "player_ticks_per_s": 9600,
        "perf_cmd": "perf record -e cpu-clock -p 1",
        "rows": rows,
        "transport": {
            "command": "tools/bench_transport.py --players 480",
            "cpu": 0.37,
            "us_per_player_tick": 38.54,
            "size": 39,
            "input_size": 5,
        },
    }
    text = ba.render({"date_utc": "2026-12-03", "git_commit": "abc1234", "native": native})
    assert "part of a player-tick" not in text  # no empty account table
    assert "**By library**" in text and "77.1 µs per player-tick" in text
    assert "38.5 µs per player-tick, 50% of the server's" in text
    assert "    tools/bench_transport.py --players 480" in text
    assert "room's tick alone" not in text
    native["rooms"] = {
        "rooms": 60, "players": 480, "ticks": 100, "us_per_player": 15.0,
        "encode_us_per_player": 5.0, "command": "tools/account_rooms.py --players 480",
    }  # fmt: skip
    text = ba.render({"date_utc": "2026-12-03", "git_commit": "abc1234", "native": native})
    assert "15.0 µs per player (5.0 of it the encoding)" in text
    assert "come to 53.5 µs per player-tick, 69% of the server's" in text
    assert "1,500 players at the admission budget (0.85 of a core) need 28.3 µs" in text


def test_rooms_in_turn_time_moving_players() -> None:
    import account_rooms

    out = account_rooms.rooms_in_turn(players=24, ticks=5)
    assert out["rooms"] == 3 and out["players"] == 24 and out["ticks"] == 5
    # the players move, so every tick encodes: the encoding is part of the tick, not zero
    assert 0 < out["encode_us_per_player"] < out["us_per_player"]


def test_missing_perf_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(ba.shutil, "which", lambda name: None)
    assert ba.main(["--part", "native", "--json", "/nonexistent/a.json", "--no-notes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench_account: perf is not installed")
