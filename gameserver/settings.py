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
import enum
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from gameserver.config import ServerConfig
from gameserver.game import MAX_TICK_RATE
from shared.messages import Join
from shared.protocol import MAX_NAME_BYTES, MAX_PLAYER_NAME_BYTES, MAX_TOKEN_BYTES

ENV_PREFIX = "GAMESERVER_"
#: the largest JOIN a client may send: a message size below it would refuse valid players
MAX_JOIN_BYTES = len(
    Join(
        "r" * MAX_NAME_BYTES,
        "g" * MAX_NAME_BYTES,
        "n" * MAX_PLAYER_NAME_BYTES,
        "t" * MAX_TOKEN_BYTES,
    ).to_bytes()
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingError(Exception):
    """A setting's value is wrong (the user's mistake). ``str()`` is the one line to print."""


class Kind(enum.Enum):
    INT = "integer"
    FLOAT = "number"
    STR = "string"
    BOOL = "boolean"
    PATH = "path"
    LIST = "list of strings"
    PATH_LIST = "list of paths"


class Origin(enum.Enum):
    """Where a setting's effective value came from."""

    DEFAULT = "default"
    FILE = "file"
    ENV = "env"
    FLAG = "flag"


_DEFAULTS = ServerConfig()


@attrs.frozen
class Setting:
    """One setting: its name, type, default, allowed range and help text."""

    name: str
    kind: Kind
    default: Any
    help: str
    section: str
    #: the ServerConfig field it sets (None: used by the command line itself)
    field: str | None = None
    lo: float | None = None
    hi: float | None = None
    #: the value must be strictly greater than ``lo``
    lo_open: bool = False
    #: None is allowed and means "not set" (for example: each game's own tick rate)
    optional: bool = False
    #: what "not set" or a special value means, for the docs (e.g. "0 = no limit")
    note: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def repeatable(self) -> bool:
        return self.kind in (Kind.LIST, Kind.PATH_LIST)

    def range_text(self) -> str:
        """The allowed values, as the docs and error messages say them."""
        if self.lo is None and self.hi is None:
            return _a(self.kind.value)
        lo, hi = _num(self.lo), _num(self.hi)
        if self.lo_open:
            text = f"greater than {lo}" if self.hi is None else f"greater than {lo}, at most {hi}"
        elif self.hi is None:
            text = f"at least {lo}"
        else:
            text = f"{lo}..{hi}"
        if self.note and not self.note.startswith("default"):
            text += f", {self.note}"
        return text

    # ------------------------------------------------------------ parsing
    def parse_text(self, text: str) -> Any:
        """A value from a flag or an environment variable (lists: comma-separated)."""
        if self.kind is Kind.INT:
            try:
                return int(text.strip())
            except ValueError:
                raise ValueError("not an integer") from None
        if self.kind is Kind.FLOAT:
            try:
                value = float(text.strip())
            except ValueError:
                raise ValueError("not a number") from None
            return value
        if self.kind is Kind.BOOL:
            word = text.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("not a boolean (true/false, 1/0, yes/no, on/off)")
        if self.kind is Kind.PATH:
            return Path(text).expanduser()
        if self.kind is Kind.LIST:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if self.kind is Kind.PATH_LIST:
            return tuple(Path(p.strip()).expanduser() for p in text.split(",") if p.strip())
        return text

    def from_toml(self, value: Any, base: Path) -> Any:
        """A value from the TOML file; relative paths are relative to the file's folder."""
        kind = self.kind
        if kind is Kind.INT and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is Kind.FLOAT and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind is Kind.BOOL and isinstance(value, bool):
            return value
        if kind is Kind.STR and isinstance(value, str):
            return value
        if kind is Kind.PATH and isinstance(value, str):
            return base / Path(value).expanduser()
        if kind in (Kind.LIST, Kind.PATH_LIST):
            if isinstance(value, str):
                value = [value]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                if kind is Kind.PATH_LIST:
                    return tuple(base / Path(v).expanduser() for v in value)
                return tuple(value)
        raise ValueError(f"must be {_a(kind.value)}")

    def check(self, value: Any) -> None:
        """Raise ValueError (with the allowed range) when ``value`` is out of range."""
        if value is None:
            if self.optional:
                return
            raise ValueError(f"must be {self.range_text()}")
        if self.kind in (Kind.INT, Kind.FLOAT):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"must be a finite number, {self.range_text()}")
            too_low = self.lo is not None and (
                value <= self.lo if self.lo_open else value < self.lo
            )
            too_high = self.hi is not None and value > self.hi
            if too_low or too_high:
                raise ValueError(f"must be {self.range_text()}")
        if self.name == "host" and not value:
            raise ValueError(
                "must not be empty (127.0.0.1: this machine; 0.0.0.0: every interface)"
            )


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if float(x).is_integer():
        return str(int(x))
    return str(x)


def _d(field: str) -> Any:
    return getattr(_DEFAULTS, field)


_I, _F = Kind.INT, Kind.FLOAT
_DAY = 86400.0
_MIB = 1024 * 1024

#: every setting of ``gameserver serve``, in the order the docs list them
SERVE_SETTINGS: tuple[Setting, ...] = (
    # network and TLS
    Setting("host", Kind.STR, _d("host"), "address to bind", "network", "host"),
    Setting(
        "port",
        _I,
        _d("port"),
        "port to listen on",
        "network",
        "port",
        0,
        65535,
        note="0 picks a free one",
    ),
    Setting(
        "cert",
        Kind.PATH,
        None,
        "TLS certificate chain (PEM), with --key",
        "network",
        optional=True,
        note="default: the development certificate",
    ),
    Setting("key", Kind.PATH, None, "TLS private key (PEM), with --cert", "network", optional=True),
    Setting(
        "insecure",
        Kind.BOOL,
        False,
        "serve plain ws:// (only behind a TLS-terminating proxy)",
        "network",
    ),
    Setting(
        "allow-origin",
        Kind.LIST,
        (),
        "browser Origins allowed to connect ('*' = any)",
        "network",
        "allowed_origins",
    ),
    Setting(
        "web",
        Kind.BOOL,
        _d("web"),
        "answer HTTPS GET on the port with the web demo and the JavaScript SDK",
        "network",
        "web",
    ),
    Setting(
        "web-root",
        Kind.PATH,
        None,
        "folder whose demo/, src/ and games/ are served (the URL map: docs/protocol.md)",
        "network",
        "web_root",
        optional=True,
        note="default: the bundled clients/web",
    ),
    Setting(
        "state-dir",
        Kind.PATH,
        None,
        "where the development CA, certificate and signing secret are made",
        "network",
        optional=True,
        note="default: $XDG_STATE_HOME/gameserver or ~/.local/state/gameserver",
    ),
    # authentication
    Setting(
        "secret-file",
        Kind.PATH,
        None,
        "token signing secret",
        "auth",
        optional=True,
        note="default: $GAMESERVER_SECRET, else <state-dir>/secret.key",
    ),
    Setting(
        "previous-secret-file",
        Kind.PATH_LIST,
        (),
        "also accept tokens signed with these old secrets (key rotation)",
        "auth",
    ),
    Setting(
        "guest-tokens",
        Kind.BOOL,
        False,
        "development only: POST /guest gives this server's own pages a 10-minute guest token",
        "auth",
    ),
    # games
    Setting(
        "game",
        Kind.LIST,
        (),
        "MODULE:ATTR of a Game subclass or GameRegistry to serve; the first is the default",
        "game",
        note="default: the bundled games, arena the default",
    ),
    Setting(
        "tick-rate",
        _I,
        None,
        "override every game's tick rate (Hz)",
        "game",
        "tick_rate",
        1,
        MAX_TICK_RATE,
        optional=True,
        note="default: each game's own",
    ),
    Setting(
        "max-players",
        _I,
        None,
        "override every game's room size",
        "game",
        "max_players",
        1,
        10_000,
        optional=True,
        note="default: each game's own",
    ),
    Setting(
        "room-grace",
        _F,
        _d("room_grace"),
        "seconds an empty room lives",
        "game",
        "room_grace",
        0,
        _DAY,
    ),
    Setting(
        "room-create-rate",
        _F,
        _d("room_create_rate"),
        "rooms per second one player id may create",
        "game",
        "room_create_rate",
        0,
        1000,
        lo_open=True,
    ),
    Setting(
        "room-create-burst",
        _F,
        _d("room_create_burst"),
        "room creation burst per player id",
        "game",
        "room_create_burst",
        1,
        10_000,
    ),
    Setting(
        "input-queue-limit",
        _I,
        _d("input_queue_limit"),
        "inputs a player may have waiting for the next tick",
        "game",
        "input_queue_limit",
        1,
        1024,
    ),
    Setting(
        "checksum-interval",
        _I,
        _d("checksum_interval"),
        "a DELTA carries the state checksum every this many ticks",
        "game",
        "checksum_interval",
        0,
        10_000,
        note="0 = only in snapshots",
    ),
    # limits
    Setting(
        "max-rooms",
        _I,
        _d("max_rooms"),
        "rooms at once; more joins get 4006",
        "limits",
        "max_rooms",
        1,
        1_000_000,
    ),
    Setting(
        "max-message-size",
        _I,
        _d("max_message_size"),
        "bytes; a bigger client message closes with 1009",
        "limits",
        "max_message_size",
        MAX_JOIN_BYTES,
        16 * _MIB,
        note="the lower bound is the largest JOIN",
    ),
    Setting(
        "max-connections",
        _I,
        _d("max_connections"),
        "open connections in total",
        "limits",
        "max_connections",
        0,
        1_000_000,
        note="0 = no limit",
    ),
    Setting(
        "max-connections-per-ip",
        _I,
        _d("max_connections_per_ip"),
        "open connections from one IP address",
        "limits",
        "max_connections_per_ip",
        0,
        1_000_000,
        note="0 = no limit",
    ),
    Setting(
        "connect-timeout",
        _F,
        _d("connect_timeout"),
        "seconds for the TLS + WebSocket handshake",
        "limits",
        "connect_timeout",
        0,
        600,
        lo_open=True,
    ),
    Setting(
        "join-timeout",
        _F,
        _d("join_timeout"),
        "seconds from the handshake to a valid JOIN",
        "limits",
        "join_timeout",
        0,
        600,
        lo_open=True,
    ),
    Setting(
        "close-timeout",
        _F,
        _d("close_timeout"),
        "seconds allowed for the closing handshake",
        "limits",
        "close_timeout",
        0,
        600,
        lo_open=True,
    ),
    Setting(
        "input-rate",
        _F,
        _d("input_rate"),
        "inputs per second per player (at least 3 per tick are always allowed)",
        "limits",
        "input_rate",
        0,
        100_000,
        lo_open=True,
    ),
    Setting(
        "input-burst",
        _F,
        _d("input_burst"),
        "input burst per player",
        "limits",
        "input_burst",
        1,
        100_000,
    ),
    Setting(
        "event-rate",
        _F,
        _d("event_rate"),
        "room events per second per player",
        "limits",
        "event_rate",
        0,
        100_000,
        lo_open=True,
    ),
    Setting(
        "event-burst",
        _F,
        _d("event_burst"),
        "room event burst per player",
        "limits",
        "event_burst",
        1,
        100_000,
    ),
    Setting(
        "abuse-allowance",
        _F,
        _d("abuse_allowance"),
        "dropped messages tolerated, in seconds' worth of the rate, before a 1008 close",
        "limits",
        "abuse_allowance",
        0,
        3600,
    ),
    Setting(
        "ping-interval",
        _F,
        _d("ping_interval"),
        "seconds of silence before a ping",
        "limits",
        "ping_interval",
        0,
        _DAY,
        lo_open=True,
    ),
    Setting(
        "idle-timeout",
        _F,
        _d("idle_timeout"),
        "seconds of silence before a close (1001); longer than --ping-interval",
        "limits",
        "idle_timeout",
        0,
        _DAY,
        lo_open=True,
    ),
    Setting(
        "outbound-limit",
        _I,
        _d("outbound_limit"),
        "bytes of reliable messages queued for a slow player before it is dropped (4008)",
        "limits",
        "outbound_limit",
        4096,
        1024 * _MIB,
    ),
    Setting(
        "read-budget",
        _I,
        _d("read_budget"),
        "bytes read from one player's socket per tick at most",
        "limits",
        "read_budget",
        1024,
        16 * _MIB,
    ),
    Setting(
        "cpu-budget",
        _F,
        _d("cpu_budget"),
        "refuse joins while the process uses more than this share of one core",
        "limits",
        "cpu_budget",
        0,
        1,
        note="0 = off",
    ),
    Setting(
        "drain-timeout",
        _F,
        _d("drain_timeout"),
        "seconds a drain (SIGTERM, POST /admin/drain) lets players stay before 1001",
        "limits",
        "drain_timeout",
        0,
        _DAY,
    ),
    Setting(
        "load-window",
        _F,
        _d("load_window"),
        "seconds over which the CPU share is measured",
        "limits",
        "load_window",
        0,
        600,
        lo_open=True,
    ),
    # metrics and logging
    Setting(
        "metrics-port",
        _I,
        None,
        "serve /metrics, /healthz and the admin API on this port",
        "metrics",
        None,
        0,
        65535,
        optional=True,
        note="default: off; 0 picks a free one",
    ),
    Setting("metrics-host", Kind.STR, "127.0.0.1", "address for the metrics port", "metrics"),
    Setting("log-level", Kind.STR, "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL", "metrics"),
)

#: the settings ``gameserver token`` reads (where to find the signing secret)
TOKEN_SETTINGS: tuple[Setting, ...] = tuple(
    s for s in SERVE_SETTINGS if s.name in ("state-dir", "secret-file")
)
#: ``gameserver games`` needs only the games
GAMES_SETTINGS: tuple[Setting, ...] = tuple(s for s in SERVE_SETTINGS if s.name == "game")


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
