"""The settings table: precedence, parsing, ranges, combinations and `gameserver config`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameserver.server import ServerConfig
from gameserver.settings import (
    MAX_JOIN_BYTES,
    SERVE_SETTINGS,
    Kind,
    Origin,
    SettingError,
    describe,
    resolve,
    unknown_environment,
)
from shared.messages import Join

TABLE = {s.name: s for s in SERVE_SETTINGS}
NUMERIC = [s for s in SERVE_SETTINGS if s.kind in (Kind.INT, Kind.FLOAT)]


def test_defaults_are_server_config_defaults() -> None:
    s = resolve(SERVE_SETTINGS, {}, {})
    assert s.server_config() == ServerConfig()
    assert all(src.origin is Origin.DEFAULT for src in s.sources.values())


def test_every_server_config_field_has_a_setting() -> None:
    fields = {s.field for s in SERVE_SETTINGS if s.field}
    names = {a.name for a in attrs.fields(ServerConfig)}
    assert names == fields, names ^ fields


def test_every_numeric_setting_has_a_documented_range() -> None:
    for s in NUMERIC:
        assert s.lo is not None and s.hi is not None, s.name
        assert s.range_text()[0].isdigit() or s.range_text().startswith("greater"), s.name


def test_precedence_flag_then_env_then_file_then_default(tmp_path: Path) -> None:
    cfg = tmp_path / "server.toml"
    cfg.write_text("max-rooms = 10\nport = 9001\nroom-grace = 3\nhost = '0.0.0.0'\n")
    env = {"GAMESERVER_PORT": "9002", "GAMESERVER_ROOM_GRACE": "4.5"}
    s = resolve(SERVE_SETTINGS, {"room-grace": "6"}, env, cfg)
    assert s["max-rooms"] == 10 and s.sources["max-rooms"].origin is Origin.FILE
    assert s["port"] == 9002 and s.sources["port"].origin is Origin.ENV
    assert s["room-grace"] == 6.0 and s.sources["room-grace"].origin is Origin.FLAG
    assert s["host"] == "0.0.0.0"
    assert s["max-message-size"] == ServerConfig().max_message_size
    config = s.server_config()
    assert (config.max_rooms, config.port, config.room_grace) == (10, 9002, 6.0)


def test_file_paths_are_relative_to_the_file_and_lists_take_strings(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "s.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        'cert = "tls/c.pem"\nkey = "/abs/k.pem"\ngame = "mygame:Pong"\n'
        'allow-origin = ["https://a.example", "https://b.example"]\ninsecure = false\n'
    )
    s = resolve(SERVE_SETTINGS, {}, {}, cfg)
    assert s["cert"] == tmp_path / "conf" / "tls" / "c.pem"
    assert s["key"] == Path("/abs/k.pem")
    assert s["game"] == ("mygame:Pong",)
    assert s.server_config().allowed_origins == ("https://a.example", "https://b.example")


def test_env_lists_booleans_and_repeated_flags() -> None:
    env = {
        "GAMESERVER_ALLOW_ORIGIN": "https://a.example, https://b.example",
        "GAMESERVER_INSECURE": "yes",
    }
    s = resolve(SERVE_SETTINGS, {"game": ["a:A", "b:B"]}, env)
    assert s["allow-origin"] == ("https://a.example", "https://b.example")
    assert s["insecure"] is True
    assert s["game"] == ("a:A", "b:B")
    # a flag list replaces the environment's, it does not add to it
    s = resolve(SERVE_SETTINGS, {"allow-origin": ["*"]}, env)
    assert s["allow-origin"] == ("*",)
    assert resolve(SERVE_SETTINGS, {"insecure": False}, env)["insecure"] is False


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"port": "99999"}, {}, "--port 99999: must be 0..65535"),
        ({"port": "-1"}, {}, "--port -1: must be 0..65535"),
        ({"port": "80x"}, {}, "--port 80x: not an integer"),
        ({"max-players": "0"}, {}, "--max-players 0: must be 1..10000"),
        ({"input-rate": "-1"}, {}, "--input-rate -1: must be greater than 0"),
        ({"cpu-budget": "5"}, {}, "--cpu-budget 5: must be 0..1"),
        ({"room-grace": "-1"}, {}, "--room-grace -1: must be 0..86400"),
        ({"max-message-size": "10"}, {}, f"--max-message-size 10: must be {MAX_JOIN_BYTES}.."),
        ({"idle-timeout": "-1"}, {}, "--idle-timeout -1: must be greater than 0"),
        ({"connect-timeout": "inf"}, {}, "--connect-timeout inf: must be a finite number"),
        ({}, {"GAMESERVER_MAX_ROOMS": "0"}, "GAMESERVER_MAX_ROOMS=0: must be 1..1000000"),
        ({}, {"GAMESERVER_INSECURE": "maybe"}, "GAMESERVER_INSECURE=maybe: not a boolean"),
        ({"idle-timeout": "10"}, {}, "--idle-timeout 10: must be longer than --ping-interval 15"),
        ({"cert": "c.pem"}, {}, "--cert c.pem: --cert and --key go together"),
        ({"cert": "c", "key": "k", "insecure": True}, {}, "--insecure true: plain ws:// takes no"),
    ],
)
def test_a_wrong_value_is_one_line_naming_where_value_and_range(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingError) as info:
        resolve(SERVE_SETTINGS, flags, env)
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cases = {
        "max_rooms = 5": "unknown setting 'max_rooms'; did you mean 'max-rooms'?",
        "max-rooms = 'many'": "max-rooms = 'many': must be an integer",
        "max-rooms = 0": "max-rooms = 0: must be 1..1000000",
        "port = true": "port = True: must be an integer",
        "max-rooms = ": "not valid TOML",
    }
    for body, message in cases.items():
        cfg.write_text(body + "\n")
        with pytest.raises(SettingError, match=r".*") as info:
            resolve(SERVE_SETTINGS, {}, {}, cfg)
        assert str(cfg) in str(info.value) and message in str(info.value), str(info.value)
    with pytest.raises(SettingError, match="no such file"):
        resolve(SERVE_SETTINGS, {}, {}, tmp_path / "missing.toml")


@given(st.sampled_from(NUMERIC), st.integers(-(10**10), 10**10))
def test_range_check_accepts_exactly_the_documented_range(setting: object, value: int) -> None:
    from gameserver.settings import Setting

    assert isinstance(setting, Setting)
    assert setting.lo is not None and setting.hi is not None
    low_ok = value > setting.lo if setting.lo_open else value >= setting.lo
    inside = low_ok and value <= setting.hi
    try:
        setting.check(value)
    except ValueError as exc:
        assert not inside, (setting.name, value)
        assert "must be" in str(exc)
    else:
        assert inside, (setting.name, value)


def test_the_message_size_floor_is_the_largest_join() -> None:
    biggest = Join("r" * 64, "g" * 64, "n" * 32, "t" * 2048).to_bytes()
    assert MAX_JOIN_BYTES == len(biggest)
    TABLE["max-message-size"].check(MAX_JOIN_BYTES)
    with pytest.raises(ValueError):
        TABLE["max-message-size"].check(MAX_JOIN_BYTES - 1)


def test_describe_is_a_config_file_that_reproduces_the_settings(tmp_path: Path) -> None:
    env = {"GAMESERVER_PORT": "9100", "GAMESERVER_SECRET": "s" * 40}
    s = resolve(SERVE_SETTINGS, {"max-rooms": "60", "game": ["a:A"]}, env)
    text = describe(s, SERVE_SETTINGS, env)
    assert "port = 9100  # env GAMESERVER_PORT" in text
    assert "max-rooms = 60  # flag --max-rooms" in text
    assert "room-grace = 10.0  # default" in text
    assert "s" * 40 not in text and "GAMESERVER_SECRET (not shown)" in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert tomllib.loads(text)["max-rooms"] == 60
    assert resolve(SERVE_SETTINGS, {}, {}, again).server_config() == s.server_config()


def test_unknown_gameserver_variables_are_reported() -> None:
    env = {"GAMESERVER_MAX_ROOM": "5", "GAMESERVER_PORT": "1", "GAMESERVER_SECRET": "x"}
    assert unknown_environment(env) == ["GAMESERVER_MAX_ROOM"]


def test_resume_settings() -> None:
    """--seat-hold (default: each game's own; 0 turns holds off), --resume-history and the
    RESYNC limit reach ServerConfig; out of range is the user's one-line mistake."""
    s = resolve(SERVE_SETTINGS, {}, {})
    config = s.server_config()
    assert config.seat_hold is None and config.resume_history == 10.0
    assert (config.resync_interval, config.resync_burst) == (2.0, 2.0)
    flags = {"seat-hold": "0", "resume-history": "3.5", "resync-interval": "1", "resync-burst": "4"}
    config = resolve(SERVE_SETTINGS, flags, {}).server_config()
    assert config.seat_hold == 0.0 and config.resume_history == 3.5
    assert (config.resync_interval, config.resync_burst) == (1.0, 4.0)
    env = {"GAMESERVER_SEAT_HOLD": "45"}
    assert resolve(SERVE_SETTINGS, {}, env).server_config().seat_hold == 45.0
    for name, value in [("seat-hold", "-1"), ("resume-history", "601"), ("resync-interval", "0")]:
        with pytest.raises(SettingError, match=name):
            resolve(SERVE_SETTINGS, {name: value}, {})
