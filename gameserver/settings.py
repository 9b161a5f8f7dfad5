"""Server settings: one table from which the flags, the TOML file, the environment variables,
the validation and ``gameserver config`` all come. No I/O but reading the TOML file.

Each setting has one name, used three ways: the flag ``--max-rooms``, the TOML key
``max-rooms`` and the environment variable ``GAMESERVER_MAX_ROOMS``. A value given on the
command line wins over the environment, which wins over the file, which wins over the default.
Every value is checked against its documented range before anything starts, and a wrong one
raises :class:`SettingError` with one line naming where it came from, the value and what is
allowed.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from gameserver.config import ServerConfig
from gameserver.setting import ENV_PREFIX, Kind, Origin, Setting, SettingError
from gameserver.settings_table import (
    GAMES_SETTINGS,
    LOG_LEVELS,
    MAX_JOIN_BYTES,
    SERVE_SETTINGS,
    TOKEN_SETTINGS,
)

__all__ = [
    "ENV_PREFIX",
    "GAMES_SETTINGS",
    "LOG_LEVELS",
    "MAX_JOIN_BYTES",
    "SERVE_SETTINGS",
    "TOKEN_SETTINGS",
    "Kind",
    "Origin",
    "Setting",
    "SettingError",
    "Settings",
    "Source",
    "config_path",
    "describe",
    "environ_snapshot",
    "read_config_file",
    "resolve",
    "unknown_environment",
]


@attrs.frozen
class Source:
    """Where one value came from: ``origin`` and its detail (flag, variable or file)."""

    origin: Origin
    detail: str = ""

    def __str__(self) -> str:
        return self.origin.value if not self.detail else f"{self.origin.value} {self.detail}"


@attrs.frozen
class Settings:
    """The effective settings: values by name, and where each came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, Source]
    config_file: Path | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def server_config(self) -> ServerConfig:
        """The :class:`ServerConfig` these settings describe."""
        fields: dict[str, Any] = {}
        for setting in SERVE_SETTINGS:
            if setting.field is not None and setting.name in self.values:
                fields[setting.field] = self.values[setting.name]
        return ServerConfig(**fields)


def _where(setting: Setting, source: Source, value: Any) -> str:
    """How an error message names the place a value came from, with the value."""
    shown = _show(value)
    if source.origin is Origin.FLAG:
        return f"{setting.flag} {shown}"
    if source.origin is Origin.ENV:
        return f"{setting.env}={shown}"
    if source.origin is Origin.FILE:
        return f"{source.detail}: {setting.name} = {shown}"
    return f"{setting.flag} {shown} (the default)"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML file's table (raises SettingError with one line on any problem)."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise SettingError(f"--config {path}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise SettingError(f"--config {path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"--config {path}: not valid TOML: {exc}") from None
    return data


def resolve(
    settings: Iterable[Setting],
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Path | None = None,
    *,
    all_names: Iterable[str] = (),
) -> Settings:
    """Merge default < file < environment < flags for ``settings``, then check every value.

    ``flags`` holds only what was given on the command line: name -> text (a list of texts for
    repeatable settings, a bool for booleans). ``all_names`` are names the file may also hold
    that this command ignores (the file is shared by ``serve``, ``token`` and ``games``)."""
    table = {s.name: s for s in settings}
    known = set(table) | set(all_names)
    values: dict[str, Any] = {name: s.default for name, s in table.items()}
    sources: dict[str, Source] = {name: Source(Origin.DEFAULT) for name in table}

    if config_file is not None:
        data = read_config_file(config_file)
        base = config_file.parent
        for key, raw in data.items():
            if key not in known:
                raise SettingError(f"{config_file}: unknown setting {key!r}{_suggest(key, known)}")
            setting = table.get(key)
            if setting is None:
                continue
            try:
                values[key] = setting.from_toml(raw, base)
            except ValueError as exc:
                raise SettingError(f"{config_file}: {key} = {raw!r}: {exc}") from None
            sources[key] = Source(Origin.FILE, str(config_file))

    for name, setting in table.items():
        text = environ.get(setting.env)
        if text is None:
            continue
        try:
            values[name] = setting.parse_text(text)
        except ValueError as exc:
            raise SettingError(f"{setting.env}={text}: {exc}") from None
        sources[name] = Source(Origin.ENV, setting.env)

    for name, given in flags.items():
        setting = table[name]
        try:
            if setting.repeatable:
                parts = [setting.parse_text(t) for t in given]
                values[name] = tuple(v for part in parts for v in part)
            elif setting.kind is Kind.BOOL:
                values[name] = bool(given)
            else:
                values[name] = setting.parse_text(given)
        except ValueError as exc:
            raise SettingError(f"{setting.flag} {_show(given)}: {exc}") from None
        sources[name] = Source(Origin.FLAG, setting.flag)

    for name, setting in table.items():
        try:
            setting.check(values[name])
        except ValueError as exc:
            raise SettingError(f"{_where(setting, sources[name], values[name])}: {exc}") from None
    result = Settings(values, sources, config_file)
    _check_combinations(result, table)
    return result


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else "; see gameserver config"


def _check_combinations(s: Settings, table: Mapping[str, Setting]) -> None:
    """Combinations of values that cannot work together."""

    def say(name: str) -> str:
        return _where(table[name], s.sources[name], s.values[name])

    values = s.values
    if "idle-timeout" in table and values["idle-timeout"] <= values["ping-interval"]:
        raise SettingError(
            f"{say('idle-timeout')}: must be longer than {say('ping-interval')}, "
            "or idle players are closed before they are pinged"
        )
    if "guest-tokens" in table and values["guest-tokens"] and not values["web"]:
        raise SettingError(
            f"{say('guest-tokens')}: guest tokens are for the web demo this server serves; "
            "drop --no-web, or --guest-tokens"
        )
    if "cert" in table:
        if (values["cert"] is None) != (values["key"] is None):
            given = "cert" if values["cert"] is not None else "key"
            raise SettingError(f"{say(given)}: --cert and --key go together; give both")
        if values["insecure"] and values["cert"] is not None:
            raise SettingError(
                f"{say('insecure')}: plain ws:// takes no certificate; drop --cert/--key"
            )


def describe(settings: Settings, table: Iterable[Setting], environ: Mapping[str, str]) -> str:
    """The effective settings as TOML, each with where it came from (``gameserver config``).

    The output is itself a valid config file. Secrets are never printed."""
    lines = []
    if settings.config_file is not None:
        lines.append(f"# config file: {settings.config_file}")
    for setting in table:
        value = settings.values[setting.name]
        source = settings.sources[setting.name]
        comment = f"# {source}"
        if value is None:
            meaning = setting.note.removeprefix("default: ") or "off"
            lines.append(f"# {setting.name}: not set ({meaning})  {comment}")
            continue
        lines.append(f"{setting.name} = {_toml(value)}  {comment}")
    if environ.get(ENV_PREFIX + "SECRET"):
        lines.append(f"# signing secret: from ${ENV_PREFIX}SECRET (not shown)")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_path(flag: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, Source]:
    """The config file: ``--config``, else ``$GAMESERVER_CONFIG``, else none."""
    if flag is not None:
        return flag, Source(Origin.FLAG, "--config")
    env = environ.get(ENV_PREFIX + "CONFIG")
    if env:
        return Path(env).expanduser(), Source(Origin.ENV, ENV_PREFIX + "CONFIG")
    return None, Source(Origin.DEFAULT)


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """``GAMESERVER_*`` variables that name no setting (most likely typos)."""
    known = {s.env for s in SERVE_SETTINGS} | {ENV_PREFIX + "CONFIG", ENV_PREFIX + "SECRET"}
    return sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)


def environ_snapshot() -> dict[str, str]:
    """The ``GAMESERVER_*`` part of the environment."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
