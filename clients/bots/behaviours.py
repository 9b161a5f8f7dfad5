"""What a lean bot does: a behaviour steers the bot before each of its inputs.

A behaviour is a stateless object shared by every bot that has it; per-bot state lives on the
:class:`~clients.bots.lean.Bot` (its ``heading``, ``next_event_at``, ``own_id``, own random
generator). ``start(bot, now)`` runs once when the bot enters the engine, ``step(bot, now)``
before each input; it calls ``bot.steer(...)`` with one value per input field it drives (its
``inputs``, e.g. ``dx, dy``) when they change (the encoded input is cached) and may send a room
event. Bots whose behaviour has ``sends_inputs = False`` are never scheduled; those with
``needs_replica = True`` keep a full replica.

A behaviour fits a game whose input schema (from JOINED) has Float fields for its ``inputs``
and whose schema has the entity types and fields it ``reads``; :meth:`Behaviour.misfit` says
why not. A bot whose behaviour doesn't fit fails at JOINED (kind ``misfit:NAME``); for the
bundled games ``gamebots`` checks before it starts.

* ``wander`` (arena): a random walk: keep a heading, turn by up to 90 degrees on ~10% of inputs;
* ``roam`` (field): walk straight for 2-4 s (400-800 units at field's speed, two or three
  250-unit cells), then take a new random heading: bots cross cells all the time;
* ``chase`` (arena): steer toward the nearest other player (by the bot's replica);
* ``idle`` (any game): join and read; never send anything;
* ``chatty`` (arena): wander, plus a room event ("chat") every ~2 s;
* ``paddle`` (pong): move the bot's paddle toward the ball (by the bot's replica).

:func:`parse_mix` reads ``--behaviour``: a name, or ``wander:0.6,chase:0.2,...``;
:func:`default_behaviour` picks one for a game.
:func:`assign` picks a bot's behaviour from its global index so that every run with the same
rooms, players and mix gets the same bots, however the rooms are split over processes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from shared.messages import Event
from shared.schema import Float, InputSchema, Schema

if TYPE_CHECKING:
    from clients.bots.lean import Bot

#: the chance that a wandering bot turns before an input
TURN_CHANCE = 0.1
#: seconds a roaming bot keeps its heading (uniform range)
ROAM_LEG_S = (2.0, 4.0)
#: seconds between a chatty bot's room events (uniformly 0.75x..1.25x of this)
CHAT_PERIOD = 2.0
#: a paddle bot's speed is full (dir = +-1) when the ball is this far from its aim point
PADDLE_SPAN = 20.0
#: how far off the paddle's middle a paddle bot aims to take the ball, at most (pong's
#: paddles are 100 long): off-centre returns come back at an angle, so rallies end
PADDLE_AIM = 40.0
#: the chance that a paddle bot picks a new aim before an input
AIM_CHANCE = 0.05
_GOLDEN = (math.sqrt(5) - 1) / 2


class Behaviour:
    name: ClassVar[str] = ""
    needs_replica: ClassVar[bool] = False
    sends_inputs: ClassVar[bool] = True
    #: the input fields ``bot.steer(...)`` sets, in its argument order; the others stay at
    #: their defaults
    inputs: ClassVar[tuple[str, ...]] = ()
    #: entity types the behaviour reads from the replica, with the fields it needs
    reads: ClassVar[dict[str, tuple[str, ...]]] = {}

    def misfit(self, input_schema: InputSchema, schema: Schema) -> str | None:
        """Why this behaviour can't play a game with these schemas; None if it can."""
        fields = input_schema.fields
        if not all(isinstance(fields.get(f), Float) for f in self.inputs):
            have = ", ".join(input_schema.names) or "none"
            return (
                f"behaviour {self.name} sends the input fields {', '.join(self.inputs)} "
                f"(Float); the game's input fields are {have}"
            )
        for type_name, needed in self.reads.items():
            etype = schema.by_name.get(type_name)
            if etype is None or not set(needed) <= set(etype.names):
                return (
                    f"behaviour {self.name} reads {type_name} entities with "
                    f"{', '.join(needed)}; the game has none"
                )
        return None

    def start(self, bot: Bot, now: float) -> None:
        """The bot enters the engine (it has joined)."""

    def step(self, bot: Bot, now: float) -> None:
        """Before each input: steer, maybe send an event."""

    def __repr__(self) -> str:
        return f"<behaviour {self.name}>"


class Wander(Behaviour):
    name = "wander"
    inputs = ("dx", "dy")

    def start(self, bot: Bot, now: float) -> None:
        bot.heading = bot.rng.uniform(0.0, 2 * math.pi)
        bot.steer(math.cos(bot.heading), math.sin(bot.heading))

    def step(self, bot: Bot, now: float) -> None:
        rng = bot.rng
        if rng.random() < TURN_CHANCE:
            bot.heading += rng.uniform(-math.pi / 2, math.pi / 2)
            bot.steer(math.cos(bot.heading), math.sin(bot.heading))


class Roam(Behaviour):
    """Long straight legs in random directions, so that the bot crosses cells of a big world
    (field's views) instead of circling in one; ``bot.next_event_at`` is when the leg ends."""

    name = "roam"
    inputs = ("dx", "dy")

    def start(self, bot: Bot, now: float) -> None:
        self._turn(bot, now)

    def step(self, bot: Bot, now: float) -> None:
        if now >= bot.next_event_at:
            self._turn(bot, now)

    @staticmethod
    def _turn(bot: Bot, now: float) -> None:
        rng = bot.rng
        bot.heading = rng.uniform(0.0, 2 * math.pi)
        bot.next_event_at = now + rng.uniform(*ROAM_LEG_S)
        bot.steer(math.cos(bot.heading), math.sin(bot.heading))


class Idle(Behaviour):
    name = "idle"
    sends_inputs = False


class Chatty(Wander):
    name = "chatty"

    def start(self, bot: Bot, now: float) -> None:
        super().start(bot, now)
        bot.next_event_at = now + bot.rng.uniform(0.0, CHAT_PERIOD)
        bot.event_bytes = Event("chat", f"hello from {bot.name}".encode()).to_bytes()

    def step(self, bot: Bot, now: float) -> None:
        super().step(bot, now)
        if now >= bot.next_event_at:
            bot.next_event_at = now + CHAT_PERIOD * bot.rng.uniform(0.75, 1.25)
            bot.send_event()


def steer_toward(
    own: tuple[float, float], others: list[tuple[float, float]]
) -> tuple[float, float]:
    """The unit vector from ``own`` toward the nearest of ``others``; (0, 0) if none or there."""
    ox, oy = own
    best = None
    best_d2 = math.inf
    for x, y in others:
        d2 = (x - ox) ** 2 + (y - oy) ** 2
        if d2 < best_d2:
            best, best_d2 = (x, y), d2
    if best is None or best_d2 < 1e-12:
        return 0.0, 0.0
    d = math.sqrt(best_d2)
    return (best[0] - ox) / d, (best[1] - oy) / d


def player_positions(bot: Bot) -> tuple[tuple[float, float] | None, list[tuple[float, float]]]:
    """(this bot's position or None, the other players' positions), from what the bot holds:
    its replica (entities of type ``player`` with ``x``, ``y``, ``owner``; its own is the one
    whose ``owner`` is the bot's player number) or the JSON baseline's last state."""
    own = None
    others: list[tuple[float, float]] = []
    replica = bot.replica
    if replica is not None:
        etype = replica.schema.by_name.get("player")
        if etype is None or not {"x", "y", "owner"} <= set(etype.names):
            return None, []
        ix, iy, io = etype.index["x"], etype.index["y"], etype.index["owner"]
        tx, ty = etype.types[ix].to_value, etype.types[iy].to_value
        for ent in replica.entities.values():
            if ent.etype is not etype:
                continue
            codes = ent.codes
            pos = (tx(codes[ix]), ty(codes[iy]))
            if codes[io] == bot.player:
                own = pos
                bot.own_id = ent.id
            else:
                others.append(pos)
        return own, others
    state = bot.json_state
    if state is not None:
        for ent in state.get("entities", ()):
            if ent.get("type") != "player":
                continue
            pos = (float(ent["x"]), float(ent["y"]))
            if ent.get("owner") == bot.player:
                own = pos
            else:
                others.append(pos)
    return own, others


class Chase(Wander):
    """Steer toward the nearest other player; wander while there is none (or no replica)."""

    name = "chase"
    needs_replica = True

    def step(self, bot: Bot, now: float) -> None:
        own, others = player_positions(bot)
        if own is None or not others:
            super().step(bot, now)
            return
        dx, dy = steer_toward(own, others)
        if (dx, dy) != (bot.dx, bot.dy):
            bot.steer(dx, dy)


class Paddle(Behaviour):
    """Pong: move the bot's paddle toward the ball, taking it a little off the paddle's middle
    (the aim, kept in ``bot.heading``, changes now and then); stand still without a ball."""

    name = "paddle"
    needs_replica = True
    inputs = ("dir",)
    reads = {"paddle": ("y", "owner"), "ball": ("y",)}

    def start(self, bot: Bot, now: float) -> None:
        bot.heading = bot.rng.uniform(-PADDLE_AIM, PADDLE_AIM)
        bot.steer(0.0)

    def step(self, bot: Bot, now: float) -> None:
        own, ball = paddle_and_ball(bot)
        if bot.rng.random() < AIM_CHANCE:
            bot.heading = bot.rng.uniform(-PADDLE_AIM, PADDLE_AIM)
        if own is None or ball is None:
            direction = 0.0
        else:
            direction = min(max((ball - bot.heading - own) / PADDLE_SPAN, -1.0), 1.0)
        if direction != bot.dx:
            bot.steer(direction)


def paddle_and_ball(bot: Bot) -> tuple[float | None, float | None]:
    """(the ``y`` of this bot's paddle, the ``y`` of the ball), None where the bot's replica
    has none; the bot's paddle is the one whose ``owner`` is the bot's player number."""
    own = ball = None
    replica = bot.replica
    if replica is not None:
        for ent in replica.entities.values():
            kind = ent.etype.name
            if kind == "ball":
                ball = ent.y
            elif kind == "paddle" and ent.owner == bot.player:
                own = ent.y
                bot.own_id = ent.id
    return own, ball


WANDER = Wander()
ROAM = Roam()
CHASE = Chase()
IDLE = Idle()
CHATTY = Chatty()
PADDLE = Paddle()
BEHAVIOURS: dict[str, Behaviour] = {b.name: b for b in (WANDER, ROAM, CHASE, IDLE, CHATTY, PADDLE)}
#: the behaviours a game gets by default: its own (by game name) if it fits, else the first
#: of DEFAULTS that fits it
GAME_DEFAULTS: dict[str, Behaviour] = {"field": ROAM}
DEFAULTS = (WANDER, PADDLE)

Mix = tuple[tuple[str, float], ...]


def parse_mix(spec: str) -> Mix:
    """``"wander"`` or ``"wander:0.6,chase:0.2,idle:0.1,chatty:0.1"`` -> normalized weights.

    Raises ValueError with a message for the user.
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ValueError("--behaviour is empty")
    weights: dict[str, float] = {}
    for part in parts:
        name, sep, weight = part.partition(":")
        name = name.strip()
        if name not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {name!r}; known: {', '.join(BEHAVIOURS)}")
        if name in weights:
            raise ValueError(f"behaviour {name!r} given twice")
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"bad weight {weight!r} for {name!r}") from None
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"weight for {name!r} must be a non-negative number")
        weights[name] = w
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the behaviour weights add up to 0")
    return tuple((n, w / total) for n, w in weights.items() if w > 0)


def default_behaviour(input_schema: InputSchema, schema: Schema, game: str = "") -> str | None:
    """The default behaviour for a game with these schemas: the game's own from
    :data:`GAME_DEFAULTS` (``roam`` for field) if it fits, else the first of :data:`DEFAULTS`
    that fits (``wander`` for arena, ``paddle`` for pong); None if none does."""
    own = GAME_DEFAULTS.get(game)
    candidates = (own, *DEFAULTS) if own is not None else DEFAULTS
    return next((b.name for b in candidates if b.misfit(input_schema, schema) is None), None)


def check_mix(mix: Mix, input_schema: InputSchema, schema: Schema) -> str | None:
    """Why a behaviour of ``mix`` can't play a game with these schemas; None if all can."""
    for name, _ in mix:
        why = BEHAVIOURS[name].misfit(input_schema, schema)
        if why is not None:
            return why
    return None


def assign(mix: Mix, global_index: int) -> Behaviour:
    """The behaviour of the bot with this global index (0, 1, ... over every room of a run).

    Bot ``i`` takes the point ``frac(i * golden ratio)`` of the unit interval, cut into the
    mix's weights: any run of consecutive bots gets each behaviour in close proportion to its
    weight, and a bot's behaviour doesn't depend on how the rooms are split over processes.
    """
    u = (global_index * _GOLDEN) % 1.0
    acc = 0.0
    for name, w in mix:
        acc += w
        if u < acc:
            return BEHAVIOURS[name]
    return BEHAVIOURS[mix[-1][0]]
