"""Peer-chosen text in log lines (gameserver/logsafe.py)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameserver.logsafe import MAX_LOGGED_CHARS, peer_text


def test_a_forged_log_line_stays_on_its_own_line() -> None:
    forged = "ops\r\n2024-01-01 00:00:00 INFO admin root closed room lobby"
    text = peer_text(forged)
    assert "\n" not in text and "\r" not in text
    assert text == "ops\\r\\n2024-01-01 00:00:00 INFO admin root closed room lobby"


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("alice", "alice"),
        ("Zoë 玩家 🎮", "Zoë 玩家 🎮"),
        ("tab\there", "tab\\there"),
        ("esc\x1b[31m", "esc\\x1b[31m"),
        ("line\u2028sep", "line\\u2028sep"),
        ("back\\slash", "back\\\\slash"),  # so that an escape is never ambiguous
        ('it\'s "quoted"', 'it\'s "quoted"'),
    ],
)
def test_what_is_escaped(value: str, logged: str) -> None:
    assert peer_text(value) == logged


def test_long_values_are_cut() -> None:
    assert peer_text("x" * 1000) == "x" * MAX_LOGGED_CHARS + "..."
    assert peer_text(ValueError("bad\ninput")) == "bad\\ninput"


@given(st.text())
def test_any_text_makes_one_printable_line(value: str) -> None:
    text = peer_text(value, limit=10_000)
    assert text.isprintable()
    record = logging.LogRecord("gameserver", logging.INFO, __file__, 1, "x %s", (text,), None)
    assert len(record.getMessage().splitlines()) == 1
