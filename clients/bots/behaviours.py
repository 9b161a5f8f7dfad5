"""What a bot does each tick: a behaviour turns the client's view into the next input.

A behaviour is any object with ``next_input(client) -> dict`` (input field name -> value).
Behaviours are made per bot by :func:`make_behaviour` from a name and the bot's own
``random.Random``, so a run is reproducible from its seed.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

import attrs

from clients.client import GameClient
from shared.schema import Bool, Float, InputSchema

#: the names :func:`make_behaviour` knows
BEHAVIOURS: tuple[str, ...] = ("wander", "idle")


class Behaviour(Protocol):
    def next_input(self, client: GameClient) -> dict[str, Any]:
        """The values of the next input to send (fields left out take their defaults)."""
        ...


def _reflect(value: float, lo: float, hi: float) -> float:
    """Fold ``value`` back into [lo, hi] as if it bounced off the ends."""
    span = hi - lo
    if span <= 0:
        return lo
    offset = (value - lo) % (2 * span)
    return lo + (offset if offset <= span else 2 * span - offset)


@attrs.define
class Wander:
    """A random walk on every Float input field (dx/dy in arena), bouncing off the ends.

    Each call moves each value by a uniform step of up to ``step`` times half its range; Bool
    fields flip with probability ``flip``; other fields keep their defaults.
    """

    rng: random.Random
    step: float = 0.25
    flip: float = 0.05
    values: dict[str, Any] = attrs.field(factory=dict)

    def next_input(self, client: GameClient) -> dict[str, Any]:
        return self.next_values(client.joined.input_schema)

    def next_values(self, schema: InputSchema) -> dict[str, Any]:
        values = self.values
        for name, ftype in schema.fields.items():
            if isinstance(ftype, Float):
                lo, hi = ftype.lo, ftype.hi
                current = values.get(name, min(max(0.0, lo), hi))
                delta = self.rng.uniform(-self.step, self.step) * (hi - lo) / 2
                values[name] = _reflect(current + delta, lo, hi)
            elif isinstance(ftype, Bool):
                current = bool(values.get(name, False))
                values[name] = (not current) if self.rng.random() < self.flip else current
        return dict(values)


@attrs.define
class Idle:
    """Sends the default input every time (all zeros in arena): keeps the connection busy."""

    def next_input(self, client: GameClient) -> dict[str, Any]:
        return {}


def wander(rng: random.Random, step: float = 0.25) -> Wander:
    """The ``wander`` behaviour: a bouncing random walk on dx/dy."""
    return Wander(rng, step)


def make_behaviour(name: str, rng: random.Random) -> Behaviour:
    """A fresh behaviour by name (see :data:`BEHAVIOURS`)."""
    if name == "wander":
        return wander(rng)
    if name == "idle":
        return Idle()
    raise ValueError(f"unknown behaviour {name!r}; known: {', '.join(BEHAVIOURS)}")
