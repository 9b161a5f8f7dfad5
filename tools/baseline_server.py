"""The baseline for tools/bench.py: what a Python user would otherwise write.

The same arena game (``gameserver.games.arena.Arena``, driven through a minimal room context),
one asyncio task per room ticking at 20 Hz, the FULL state broadcast as JSON every tick with the
``websockets`` library's ``broadcast()`` over TLS. Not part of the product.

    python tools/baseline_server.py --port 9444 --cert CERT.pem --key KEY.pem

Protocol (text frames, JSON):

* client ``{"type": "join", "room": R}`` -> server ``{"type": "joined", "player": N}``
  (rooms hold 8 players; a full room answers ``{"type": "error", ...}`` and closes with 4005);
* client ``{"type": "input", "seq": S, "dx": .., "dy": ..}``, applied at the next tick;
* server, every tick: ``{"tick": n, "acks": {"<player>": last_seq}, "entities": [{"id": ..,
  "type": "player", "x": .., "y": .., "score": .., "hp": .., "owner": .., "name": ..}, ...]}``
  (gems are entities too: ``{"id": .., "type": "gem", "x": .., "y": .., "value": ..}``).

On SIGINT/SIGTERM it closes every connection and prints one ``stats {...}`` JSON line (ticks run,
late and skipped) to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from gameserver.game import Player, RoomContext
from gameserver.games.arena import INPUT, SCHEMA, Arena
from shared.schema import InputValues
from shared.state import State

TICK_RATE = 20
MAX_PLAYERS = 8
INPUT_QUEUE = 8
JOIN_TIMEOUT = 10.0


class Stats:
    def __init__(self) -> None:
        self.ticks = 0
        self.ticks_late = 0
        self.ticks_skipped = 0
        self.rooms = 0
        self.players = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class _Context(RoomContext):
    """The arena broadcasts room events on join; the JSON protocol has none, so drop them."""

    def broadcast(self, name: str, data: bytes = b"", *, sender: int = 0) -> None:
        pass

    def send_to(self, player: Player, name: str, data: bytes = b"") -> None:
        pass


def _forget_changes(state: State) -> None:
    """Full state goes out every tick, so the delta bookkeeping State keeps is not needed: drop
    it (cheaply, through its containers; ``encode_delta`` does the same, at a price)."""
    try:
        state._created = {}
        state._changed.clear()
        state._removed = []
    except AttributeError:  # State changed shape: fall back to the public way
        state.encode_delta(0, (), False)


def entity_json(entity: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entity.id, "type": entity.etype.name}
    for name, value in entity.as_dict().items():
        out[name] = round(value, 2) if isinstance(value, float) else value
    return out


class Room:
    """One arena room: the game, its players' connections, inputs waiting for the next tick."""

    def __init__(self, name: str, seed: int, stats: Stats, rooms: dict[str, Room]) -> None:
        self.name = name
        self.stats = stats
        self.rooms = rooms
        self.ctx = _Context(name, State(SCHEMA), TICK_RATE, seed)
        self.game = Arena(self.ctx)
        self.clients: dict[int, ServerConnection] = {}
        self.acks: dict[int, int] = {}
        self.inputs: dict[int, list[tuple[int, float, float]]] = {}
        self.joining: list[tuple[int, ServerConnection]] = []
        self.leaving: list[int] = []
        self.seats = 0  # players seated or joining
        self.next_player = 1
        self.closed = False
        _forget_changes(self.ctx.state)

    # --------------------------------------------------------- called from connection handlers
    def join(self, ws: ServerConnection) -> int | None:
        if self.seats >= MAX_PLAYERS or self.closed:
            return None
        number = self.next_player
        self.next_player += 1
        self.seats += 1
        self.joining.append((number, ws))
        self.inputs[number] = []
        return number

    def leave(self, number: int) -> None:
        self.seats -= 1
        self.leaving.append(number)

    def push_input(self, number: int, seq: int, dx: float, dy: float) -> None:
        queue = self.inputs.get(number)
        if queue is None or len(queue) >= INPUT_QUEUE:
            return
        last = queue[-1][0] if queue else self.acks.get(number, 0)
        if seq > last:
            queue.append((seq, dx, dy))

    # --------------------------------------------------------- the tick
    def step(self, dt: float) -> None:
        ctx, game = self.ctx, self.game
        for number, ws in self.joining:
            player = Player(number, f"p{number}", f"player{number}")
            ctx.players[number] = player
            game.on_join(player)
            self.clients[number] = ws
            self.acks[number] = 0
        self.joining.clear()
        for number in self.leaving:
            player = ctx.players.pop(number, None)
            if player is not None:
                game.on_leave(player)
            self.clients.pop(number, None)
            self.acks.pop(number, None)
            self.inputs.pop(number, None)
        self.leaving.clear()
        for number, queue in self.inputs.items():
            if not queue:
                continue
            player = ctx.players.get(number)
            if player is None:  # still joining (joins are applied above): keep for next tick
                continue
            for seq, dx, dy in queue:
                game.on_input(player, InputValues(INPUT, (dx, dy)))
                self.acks[number] = seq
            queue.clear()
        game.update(dt)
        ctx.tick += 1
        _forget_changes(ctx.state)

    def encode(self) -> str:
        return json.dumps(
            {
                "tick": self.ctx.tick,
                "acks": self.acks,
                "entities": [entity_json(e) for e in self.ctx.state],
            },
            separators=(",", ":"),
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / TICK_RATE
        deadline = loop.time()
        try:
            while True:
                deadline += period
                delay = deadline - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    if -delay > period:
                        self.stats.ticks_late += 1
                        missed = int(-delay / period)
                        self.stats.ticks_skipped += missed
                        deadline += missed * period
                    await asyncio.sleep(0)
                self.step(period)
                self.stats.ticks += 1
                if not self.clients and not self.joining and self.seats <= 0:
                    return
                broadcast(self.clients.values(), self.encode())
        finally:
            self.closed = True
            if self.rooms.get(self.name) is self:
                del self.rooms[self.name]
            self.stats.rooms -= 1


class BaselineServer:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.stats = Stats()
        self.tasks: set[asyncio.Task[None]] = set()
        self._seed = 0

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None or room.closed:
            self._seed += 1
            room = Room(name, self._seed, self.stats, self.rooms)
            self.rooms[name] = room
            self.stats.rooms += 1
            task = asyncio.get_running_loop().create_task(room.run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return room

    async def handler(self, ws: ServerConnection) -> None:
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), JOIN_TIMEOUT))
        except (TimeoutError, ConnectionClosed, ValueError):
            await ws.close(1008, "expected a join message")
            return
        if not isinstance(first, dict) or first.get("type") != "join":
            await ws.close(1008, "the first message must be a join")
            return
        room = self.room(str(first.get("room", "lobby"))[:64])
        number = room.join(ws)
        if number is None:
            await ws.send(json.dumps({"type": "error", "code": 4005, "message": "room full"}))
            await ws.close(4005, "room full")
            return
        self.stats.players += 1
        try:
            # sent before the room's next tick can add this connection to its broadcast
            await ws.send(json.dumps({"type": "joined", "player": number}))
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                    if msg.get("type") == "input":
                        dx = min(max(float(msg.get("dx", 0.0)), -1.0), 1.0)
                        dy = min(max(float(msg.get("dy", 0.0)), -1.0), 1.0)
                        room.push_input(number, int(msg["seq"]), dx, dy)
                except (ValueError, KeyError, TypeError, AttributeError):
                    await ws.close(1007, "bad message")
                    return
        except ConnectionClosed:
            pass
        finally:
            self.stats.players -= 1
            room.leave(number)


def ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def main_async(args: argparse.Namespace) -> None:
    server = BaselineServer()
    ctx = None if args.insecure else ssl_context(args.cert, args.key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(server.handler, args.host, args.port, ssl=ctx) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        print(f"listening on {'ws' if ctx is None else 'wss'}://{args.host}:{port}", flush=True)
        await stop.wait()
        ws_server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws_server.wait_closed(), 5.0)
    for task in list(server.tasks):
        task.cancel()
    print("stats " + json.dumps(server.stats.as_dict()), file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9444, help="0 picks a free one")
    p.add_argument("--cert", type=Path, help="certificate chain (PEM)")
    p.add_argument("--key", type=Path, help="private key (PEM)")
    p.add_argument("--insecure", action="store_true", help="plain ws:// (tests only)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.insecure and (args.cert is None or args.key is None):
        parser.error("--cert and --key are required (or --insecure)")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
