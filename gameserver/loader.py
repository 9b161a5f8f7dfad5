"""Finding games: ``--game MODULE:ATTR``, the ``gameserver.games`` entry points, the bundled ones.

``MODULE`` is an importable module (``mygame``, ``mypkg.games``; the current directory is
importable, as for ``python -m``) or a path to a ``.py`` file (``games/pong.py``; its folder
becomes importable so that it can import its neighbours). ``ATTR`` names a :class:`Game`
subclass or a :class:`GameRegistry`.

Installed packages make games available by declaring an entry point in the group
``gameserver.games`` whose object is a Game subclass or a GameRegistry::

    [project.entry-points."gameserver.games"]
    pong = "mypkg.pong:Pong"
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import attrs

from gameserver.game import MAX_TICK_RATE, Game, GameRegistry, default_registry
from shared.schema import InputSchema, Schema

ENTRY_POINT_GROUP = "gameserver.games"


class GameLoadError(Exception):
    """A game spec that can't be loaded (the user's mistake). ``str()`` is one line."""


@attrs.frozen
class GameSource:
    """A game and where it came from (for ``gameserver games``)."""

    game: type[Game]
    origin: str


def check_game(cls: object, where: str) -> type[Game]:
    """``cls`` if it is a usable Game subclass, else GameLoadError saying what is wrong."""
    if not (inspect.isclass(cls) and issubclass(cls, Game)):
        what = type(cls).__name__ if not inspect.isclass(cls) else f"class {cls.__name__}"
        raise GameLoadError(
            f"{where}: is a {what}, not a Game subclass or a GameRegistry "
            "(from gameserver.game import Game)"
        )
    problems = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        problems.append("a `name` string")
    if not isinstance(getattr(cls, "schema", None), Schema):
        problems.append("a `schema` (shared.schema.Schema)")
    if not isinstance(getattr(cls, "input_schema", None), InputSchema):
        problems.append("an `input_schema` (shared.schema.InputSchema)")
    if problems:
        raise GameLoadError(f"{where}: the game class {cls.__name__} needs " + ", ".join(problems))
    if not (isinstance(cls.tick_rate, int) and 1 <= cls.tick_rate <= MAX_TICK_RATE):
        raise GameLoadError(f"{where}: tick_rate {cls.tick_rate!r} must be 1..{MAX_TICK_RATE}")
    if not (isinstance(cls.max_players, int) and cls.max_players >= 1):
        raise GameLoadError(f"{where}: max_players {cls.max_players!r} must be at least 1")
    return cls


def games_of(obj: object, where: str) -> list[type[Game]]:
    """The games an object offers: a Game subclass, or every game of a GameRegistry (its
    default first)."""
    if isinstance(obj, GameRegistry):
        names = list(obj)
        if not names:
            raise GameLoadError(f"{where}: the GameRegistry holds no games")
        if obj.default in names:
            names.remove(obj.default)
            names.insert(0, obj.default)
        return [check_game(obj.get(n), f"{where} ({n})") for n in names]
    return [check_game(obj, where)]


def load_spec(spec: str) -> list[type[Game]]:
    """The games named by ``MODULE:ATTR`` (see the module docstring)."""
    where = f"--game {spec}"
    module_text, sep, attr = spec.rpartition(":")
    if not sep or not module_text or not attr:
        raise GameLoadError(
            f"{where}: expected MODULE:ATTR, e.g. mygame:Pong or games/pong.py:Pong"
        )
    module = _import(module_text, where)
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = sorted(
                n for n, v in vars(module).items() if _is_game_like(v) and not n.startswith("_")
            )
            hint = f"; it has {', '.join(found)}" if found else "; it defines no Game subclass"
            raise GameLoadError(f"{where}: {module_text} has no attribute {attr!r}{hint}") from None
    return games_of(obj, where)


def _is_game_like(v: object) -> bool:
    return isinstance(v, GameRegistry) or (
        inspect.isclass(v) and issubclass(v, Game) and v is not Game
    )


def _import(module_text: str, where: str) -> ModuleType:
    is_path = module_text.endswith(".py") or "/" in module_text or "\\" in module_text
    try:
        if is_path:
            return _import_file(Path(module_text), where)
        cwd = str(Path.cwd())
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        return importlib.import_module(module_text)
    except GameLoadError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and (module_text == exc.name or module_text.startswith(exc.name + ".")):
            raise GameLoadError(
                f"{where}: no module named {exc.name!r} (run from the folder that holds it, "
                "or give a path to the .py file)"
            ) from None
        raise GameLoadError(f"{where}: importing {module_text} failed: {_one_line(exc)}") from None
    except Exception as exc:
        raise GameLoadError(f"{where}: importing {module_text} failed: {_one_line(exc)}") from None


def _import_file(path: Path, where: str) -> ModuleType:
    if not path.is_file():
        raise GameLoadError(f"{where}: no such file {path}")
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"_gameserver_game_{path.stem}_{abs(hash(str(path))):x}"
    loaded = sys.modules.get(name)
    if loaded is not None:  # the same file named twice is the same module, as with imports
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise GameLoadError(f"{where}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _one_line(exc: BaseException) -> str:
    """``Type: message (file, line N)`` for an error raised inside the user's module."""
    text = (
        f"{type(exc).__name__}: {exc}".strip().splitlines()[0] if str(exc) else type(exc).__name__
    )
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    own = [
        f
        for f in frames
        if "importlib" not in f.filename and "/gameserver/loader.py" not in f.filename
    ]
    if own:
        last = own[-1]
        text += f" ({last.filename}, line {last.lineno})"
    return text


def entry_point_games(
    warn: list[str] | None = None,
) -> list[GameSource]:
    """Games that installed packages declare under ``gameserver.games``. An entry point that
    fails to load is skipped, with a one-line warning appended to ``warn``."""
    found: list[GameSource] = []
    for ep in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
    ):
        where = f"entry point {ep.name} = {ep.value}"
        dist = getattr(ep, "dist", None)
        origin = (
            f"entry point {ep.name} ({dist.name})" if dist is not None else f"entry point {ep.name}"
        )
        try:
            obj = ep.load()
            found += [GameSource(g, origin) for g in games_of(obj, where)]
        except GameLoadError as exc:
            if warn is not None:
                warn.append(str(exc))
        except Exception as exc:
            if warn is not None:
                warn.append(f"{where}: loading failed: {_one_line(exc)}")
    return found


def build_registry(
    specs: Iterable[str], *, warn: list[str] | None = None
) -> tuple[GameRegistry, list[GameSource]]:
    """The registry ``serve`` runs: the ``--game`` games (the first is the default), then the
    entry-point games, then the bundled ones. A name given twice by ``--game`` is an error; a
    ``--game`` game hides an entry-point or bundled game of the same name."""
    sources: list[GameSource] = []
    names: dict[str, GameSource] = {}
    for spec in specs:
        for game in load_spec(spec):
            have = names.get(game.name)
            if have is not None:
                if have.game is game:
                    continue
                raise GameLoadError(
                    f"--game {spec}: a game named {game.name!r} is already given by {have.origin}"
                )
            names[game.name] = GameSource(game, f"--game {spec}")
            sources.append(names[game.name])
    bundled = default_registry()
    rest = entry_point_games(warn) + [
        GameSource(g, "bundled") for n in bundled if (g := bundled.get(n)) is not None
    ]
    for source in rest:
        if source.game.name not in names:
            names[source.game.name] = source
            sources.append(source)
    if not specs:  # arena stays the default when no --game is given
        default = bundled.default
        sources.sort(key=lambda s: s.game.name != default)
    registry = GameRegistry()
    for i, source in enumerate(sources):
        registry.register(source.game, default=i == 0)
    return registry, sources
