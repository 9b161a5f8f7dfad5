"""One setting: its name (flag, TOML key, environment variable), type, range and help. No I/O.

The table of every setting is :mod:`gameserver.settings_table`; merging and checking them is
:mod:`gameserver.settings`.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any

import attrs

ENV_PREFIX = "GAMESERVER_"


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
