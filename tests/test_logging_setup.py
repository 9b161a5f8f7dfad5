"""Log formats, event lines and the rate-limited peer log (pure; a fake clock)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gameserver.logging_setup import TEXT_FORMAT, JsonFormatter, PeerLog, log_event


def _capture(name: str, fmt: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(fmt)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, out


def test_event_text_line_has_the_fields_as_key_value() -> None:
    logger, out = _capture("t.text", logging.Formatter("%(levelname)s %(message)s"))
    log_event(logger, "player left", room="r 1", player=3, player_id="a=b", code=1000, held=False)
    log_event(logger, "plain")
    log_event(logger, "gone", reason=None)  # None fields are left out
    assert out.getvalue().splitlines() == [
        'INFO player left room="r 1" player=3 player_id="a=b" code=1000 held=false',
        "INFO plain",
        "INFO gone",
    ]
    assert TEXT_FORMAT == "%(asctime)s %(levelname)s %(message)s"  # the text format as before


def test_json_lines_are_one_object_each_even_for_hostile_text() -> None:
    logger, out = _capture("t.json", JsonFormatter())
    evil = 'x\n{"level": "ERROR"}\u2028\r"'
    log_event(logger, "refused a JOIN", room=evil, code=4001, level=logging.DEBUG)
    logger.info("plain %s line", "old-style")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("crashed")
    lines = out.getvalue().split("\n")
    assert lines[-1] == ""
    objs = [json.loads(line) for line in lines[:-1]]  # one JSON object per line
    assert len(objs) == 3
    first = objs[0]
    assert first["msg"] == "refused a JOIN" and first["level"] == "DEBUG"
    assert first["logger"] == "t.json" and first["code"] == 4001
    assert "\n" not in first["room"] and "\u2028" not in first["room"]  # escaped (peer_text)
    assert objs[1]["msg"] == "plain old-style line"
    assert objs[2]["msg"] == "crashed" and "ValueError: boom" in objs[2]["exc"]
    assert all(o["ts"].endswith("Z") and "T" in o["ts"] for o in objs)


def test_event_fields_never_replace_the_core_keys() -> None:
    logger, out = _capture("t.core", JsonFormatter())
    log_event(logger, "real", msg="forged", level_="x")  # type: ignore[arg-type]
    obj = json.loads(out.getvalue())
    assert obj["msg"] == "real" and obj["level"] == "INFO"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_peer_log_rate_limits_a_flood_per_kind_and_summarises() -> None:
    logger, out = _capture("t.peer", JsonFormatter())
    clock = Clock()
    peer = PeerLog(logger, rate=10, burst=10, clock=clock)
    written = sum(peer.event("flood", "closing a peer", kind="flood") for _ in range(10_000))
    assert written == 10  # the burst; the rest counted
    assert peer.suppressed == {"flood": 9990}
    assert peer.event("text_frame", "closing a peer", kind="text_frame")  # its own bucket
    clock.now += 1.0  # a second later: 10 more lines, the first preceded by the summary
    written = sum(peer.event("flood", "closing a peer", kind="flood") for _ in range(1000))
    assert written == 10
    objs = [json.loads(line) for line in out.getvalue().splitlines()]
    summaries = [o for o in objs if o["msg"].startswith("suppressed")]
    assert summaries == [summaries[0]]
    assert summaries[0]["msg"] == "suppressed 9990 similar lines"
    assert summaries[0]["kind"] == "flood" and summaries[0]["suppressed"] == 9990
    assert len(objs) == 10 + 1 + 1 + 10
    peer.flush()
    last = json.loads(out.getvalue().splitlines()[-1])
    assert last["suppressed"] == 990
    assert peer.suppressed == {} and peer.suppressed_total == {"flood": 10_980}
    peer.flush()  # nothing left out since: no line
    assert len(out.getvalue().splitlines()) == len(objs) + 1


def test_peer_log_below_its_level_costs_nothing() -> None:
    logger, out = _capture("t.quiet", JsonFormatter())
    logger.setLevel(logging.WARNING)
    peer = PeerLog(logger, clock=Clock())
    assert not any(peer.event("k", "m") for _ in range(100))
    assert out.getvalue() == "" and peer.suppressed == {}


@pytest.mark.parametrize("fmt", ["xml", ""])
def test_configure_logging_rejects_unknown_formats(fmt: str) -> None:
    from gameserver.logging_setup import configure_logging

    with pytest.raises(ValueError, match="text, json"):
        configure_logging(logging.INFO, fmt)
