"""Loading games: MODULE:ATTR, .py paths, registries, entry points, and one-line errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gameserver.games.arena import Arena
from gameserver.loader import GameLoadError, build_registry, entry_point_games, load_spec

GAME_SOURCE = """
from gameserver.game import Game, GameRegistry
from shared.schema import EntityType, Float, InputSchema, Schema

DOT = EntityType("dot", x=Float(0, 10, 0.1))


class Dots(Game):
    name = "dots"
    schema = Schema(DOT)
    input_schema = InputSchema(dx=Float(-1, 1, 0.1))
    tick_rate = 10
    max_players = 3


class Other(Game):
    name = "other"
    schema = Schema(EntityType("thing", n=Float(0, 1, 0.5)))
    input_schema = InputSchema()


registry = GameRegistry()
registry.register(Dots)
registry.register(Other, default=True)
not_a_game = 42
"""


@pytest.fixture
def clean_modules() -> Iterator[None]:
    before_mods, before_path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - before_mods:
        del sys.modules[name]
    sys.path[:] = before_path


@pytest.fixture
def game_file(tmp_path: Path, clean_modules: None) -> Path:
    path = tmp_path / "dotsgame.py"
    path.write_text(GAME_SOURCE)
    return path


def test_a_file_path_and_a_module_name_load_the_same_game(
    game_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (game,) = load_spec(f"{game_file}:Dots")
    assert game.name == "dots" and game.tick_rate == 10
    monkeypatch.chdir(game_file.parent)  # the current directory is importable
    (by_module,) = load_spec("dotsgame:Dots")
    assert by_module.name == "dots"
    assert load_spec("gameserver.games.arena:Arena") == [Arena]


def test_a_registry_gives_all_its_games_default_first(game_file: Path) -> None:
    games = load_spec(f"{game_file}:registry")
    assert [g.name for g in games] == ["other", "dots"]


def test_a_file_can_import_its_neighbours(tmp_path: Path, clean_modules: None) -> None:
    (tmp_path / "dots_rules.py").write_text(GAME_SOURCE)
    (tmp_path / "main_game.py").write_text("from dots_rules import Dots as Game1\n")
    (game,) = load_spec(f"{tmp_path / 'main_game.py'}:Game1")
    assert game.name == "dots"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuchmodule_xyz:Game", "no module named 'nosuchmodule_xyz'"),
        ("gameserver.games.arena", "expected MODULE:ATTR"),
        ("gameserver.games.arena:", "expected MODULE:ATTR"),
        ("gameserver.games.arena:Nope", "has no attribute 'Nope'; it has Arena"),
        ("gameserver.games.arena:WORLD", "is a float, not a Game subclass or a GameRegistry"),
        ("gameserver.games.arena:Player", "is a class Player, not a Game subclass"),
        ("/no/such/file.py:Game", "no such file /no/such/file.py"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(GameLoadError) as info:
        load_spec(spec)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"--game {spec}")


def test_a_module_that_fails_to_import_names_the_error_and_line(
    tmp_path: Path, clean_modules: None
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import math\n\nvalue = undefined_name + 1\n")
    with pytest.raises(GameLoadError) as info:
        load_spec(f"{broken}:Game")
    text = str(info.value)
    assert "NameError" in text and "undefined_name" in text and "line 3" in text
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    with pytest.raises(GameLoadError, match=r"SyntaxError: .*line 1"):
        load_spec(f"{syntax}:Game")
    # a missing module *inside* the user's module is an import failure, not "no module named"
    inner = tmp_path / "inner.py"
    inner.write_text("import no_such_dependency_xyz\n")
    with pytest.raises(GameLoadError, match=r"importing .* failed: ModuleNotFoundError"):
        load_spec(f"{inner}:Game")


def test_incomplete_game_classes_are_refused(tmp_path: Path, clean_modules: None) -> None:
    path = tmp_path / "incomplete.py"
    path.write_text(
        textwrap.dedent(
            """
            from gameserver.game import Game
            class NoSchema(Game):
                name = "x"
            class TooFast(Game):
                from shared.schema import EntityType, Schema, InputSchema, Float
                name = "fast"
                schema = Schema(EntityType("e", a=Float(0, 1, 0.5)))
                input_schema = InputSchema()
                tick_rate = 500
            """
        )
    )
    with pytest.raises(GameLoadError, match="needs a `schema`"):
        load_spec(f"{path}:NoSchema")
    with pytest.raises(GameLoadError, match=r"tick_rate 500 must be 1\.\.120"):
        load_spec(f"{path}:TooFast")


def test_registry_order_default_and_clashes(game_file: Path) -> None:
    registry, sources = build_registry(())
    assert registry.default == "arena"  # arena stays the default without --game
    assert {"arena", "pong"} <= set(registry)
    registry, sources = build_registry((f"{game_file}:Dots",))
    assert registry.default == "dots" and sources[0].origin.startswith("--game")
    assert registry.get("") is registry.get("dots")  # a JOIN naming no game gets the first
    assert "arena" in set(registry)  # the bundled games stay available
    # the same class twice is fine; two different games with one name are not
    build_registry((f"{game_file}:Dots", f"{game_file}:registry"))
    clash = game_file.parent / "clash.py"
    clash.write_text(GAME_SOURCE.split("registry = ")[0].replace('name = "other"', 'name = "dots"'))
    with pytest.raises(GameLoadError, match="a game named 'dots' is already given by --game"):
        build_registry((f"{game_file}:Dots", f"{clash}:Other"))


def _fake_distribution(root: Path, entry_points: str, module: str | None = None) -> None:
    info = root / "dotsplugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dotsplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    if module is not None:
        (root / "dotsplugin.py").write_text(module)


def test_installed_packages_register_games_by_entry_point(
    tmp_path: Path, clean_modules: None
) -> None:
    _fake_distribution(
        tmp_path,
        "[gameserver.games]\ndots = dotsplugin:Dots\nbroken = dotsplugin:not_a_game\n",
        GAME_SOURCE,
    )
    sys.path.insert(0, str(tmp_path))
    warnings: list[str] = []
    found = entry_point_games(warnings)
    assert [s.game.name for s in found] == ["dots"]
    assert "dotsplugin (dotsplugin)" not in found[0].origin and "dotsplugin" in found[0].origin
    assert len(warnings) == 1 and "entry point broken" in warnings[0]
    registry, _ = build_registry((), warn=[])
    assert "dots" in set(registry) and registry.default == "arena"
