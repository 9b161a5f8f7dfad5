"""The README's settings tables are generated from the settings table and must match it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gameserver.cli import build_parser
from gameserver.settings import SERVE_SETTINGS, SettingError, resolve
from tools.settings_doc import BEGIN, END, README, replace_block, tables


def test_readme_tables_match_the_code() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text
    assert replace_block(text, tables()) == text, "run: python tools/settings_doc.py --write"


def test_every_setting_is_a_serve_flag_and_every_serve_flag_a_setting() -> None:
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    shown = [a for a in serve._actions if a.help is not argparse.SUPPRESS]
    flags = {o for a in shown for o in a.option_strings if o.startswith("--")}
    flags -= {"--help", "--config"}
    flags = {f for f in flags if not f.startswith("--no-")}
    assert flags == {s.flag for s in SERVE_SETTINGS}
    # the only flags that are no setting: how the supervisor of --workers starts a worker
    hidden = {o for a in serve._actions if a.help is argparse.SUPPRESS for o in a.option_strings}
    assert hidden == {"--worker-index", "--shared-port"}


def test_the_readme_error_examples_are_what_the_cli_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("server.toml").write_text("idle-timeout = 10\n")
    cases = [
        ({"max-players": "0"}, {}, None),
        ({}, {"GAMESERVER_PORT": "99999"}, None),
        ({}, {}, Path("server.toml")),
    ]
    text = README.read_text()
    for flags, env, file in cases:
        with pytest.raises(SettingError) as info:
            resolve(SERVE_SETTINGS, flags, env, file)
        assert f"\ngameserver: {info.value}\n" in text
