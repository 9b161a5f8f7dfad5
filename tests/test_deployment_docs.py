"""docs/deployment.md matches the code: every flag, TOML key, environment variable and close
code it names exists, so the guide cannot drift from the server it describes."""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from pathlib import Path

import pytest

from gameserver.cli import build_parser, main
from gameserver.settings_table import SERVE_SETTINGS
from shared.protocol import CloseCode

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "deployment.md"

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ENV = re.compile(r"\bGAMESERVER_[A-Z0-9_]+\b")
CODE = re.compile(r"```([a-z]*)\n(.*?)```", re.S)
#: variables that are not settings (README, "Where settings come from")
ENV_EXTRA = {"GAMESERVER_SECRET", "GAMESERVER_CONFIG"}
#: other programs' command lines in the guide, and the flags they may use there
FOREIGN = {
    "redis-server": {
        "--bind",
        "--port",
        "--requirepass",
        "--save",
        "--appendonly",
        "--protected-mode",
    },
}


def _our_flags() -> dict[str, set[str]]:
    """Options of each ``gameserver`` subcommand, and of the settings table."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {
        name: {o for a in p._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
        for name, p in sub.choices.items()
    }
    out["settings"] = {f"--{s.name}" for s in SERVE_SETTINGS}
    return out


def _command_lines(text: str) -> list[str]:
    """Lines of the guide's code blocks, with shell continuations joined."""
    lines: list[str] = []
    for _lang, body in CODE.findall(text):
        pending = ""
        for raw in body.splitlines():
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            lines.append(pending + raw)
            pending = ""
    return lines


def test_every_flag_the_guide_names_exists() -> None:
    text = GUIDE.read_text()
    ours = _our_flags()
    known = set().union(*ours.values()) | {"--help"}
    mentioned = set(FLAG.findall(text))
    # the guide is about these: the check really reads it
    assert {"--workers", "--directory", "--public-url", "--node-id", "--secret-file"} <= mentioned
    foreign_lines = [ln for ln in _command_lines(text) if ln.lstrip().startswith(tuple(FOREIGN))]
    assert foreign_lines, "the guide's redis-server example is gone: update FOREIGN"
    foreign_flags: set[str] = set()
    for line in foreign_lines:
        program = line.split()[0]
        unknown = set(FLAG.findall(line)) - FOREIGN[program]
        assert not unknown, f"{program} flags not listed in FOREIGN: {unknown}"
        foreign_flags |= set(FLAG.findall(line))
    unknown = mentioned - known - foreign_flags
    assert not unknown, f"docs/deployment.md names flags no gameserver command has: {unknown}"
    # a `gameserver serve` command line uses serve's flags only
    for line in _command_lines(text):
        if "gameserver serve" in line:
            bad = set(FLAG.findall(line.split("gameserver serve", 1)[1])) - ours["serve"]
            assert not bad, f"not flags of gameserver serve: {bad} in {line.strip()!r}"


def test_every_toml_key_and_environment_variable_is_a_setting() -> None:
    text = GUIDE.read_text()
    names = {s.name for s in SERVE_SETTINGS}
    blocks = [body for lang, body in CODE.findall(text) if lang == "toml"]
    assert blocks
    for body in blocks:
        unknown = set(tomllib.loads(body)) - names
        assert not unknown, f"TOML keys that are not settings: {unknown}"
    env = set(ENV.findall(text))
    assert "GAMESERVER_DIRECTORY" in env
    settings_env = {"GAMESERVER_" + n.upper().replace("-", "_") for n in names}
    unknown = env - settings_env - ENV_EXTRA
    assert not unknown, f"environment variables that name no setting: {unknown}"


def test_the_guides_config_file_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value in its TOML passes the settings' checks (`gameserver config` exits 0)."""
    for name in [k for k in os.environ if k.startswith("GAMESERVER_")]:
        monkeypatch.delenv(name)
    (body,) = [body for lang, body in CODE.findall(GUIDE.read_text()) if lang == "toml"]
    path = tmp_path / "server.toml"
    path.write_text(body)
    assert main(["config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert 'workers = "auto"  # file' in out and "drain-timeout = 30.0  # file" in out


def test_every_close_code_the_guide_names_exists() -> None:
    text = GUIDE.read_text()
    codes = {int(c) for c in re.findall(r"\b(4\d{3}|1001)\b", text)}
    assert {4015, 4016} <= codes
    values = {int(c) for c in CloseCode}
    assert codes <= values, f"close codes the protocol lacks: {codes - values}"
