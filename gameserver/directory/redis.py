"""The Redis directory: the cluster's rooms, seats and nodes in one Redis database.

Every operation is one Lua script (one round trip, atomic on the server); see
:mod:`gameserver.directory.scripts` for the keys and docs/directory.md for the rules. Calls
fail with DirectoryUnavailable within the client's timeout when Redis does not answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

import trio

from gameserver.directory import scripts
from gameserver.directory.redis_client import RedisClient
from gameserver.directory.resp import Reply
from gameserver.directory.types import (
    PLACED_MAX,
    DirectoryLimits,
    DirectoryRefused,
    DirectoryUnavailable,
    LeaseLost,
    LostReason,
    NodeRecord,
    Refused,
    Renewal,
    RoomLease,
    RoomTaken,
    Seat,
    SeatTaken,
)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _s(raw: Reply) -> str:
    if isinstance(raw, bytes):
        return raw.decode()
    if isinstance(raw, int):
        return str(raw)
    raise DirectoryUnavailable(f"unexpected reply from Redis: {raw!r}")


def _i(raw: Reply) -> int:
    return int(_s(raw))


def _list(raw: Reply) -> list[Reply]:
    if not isinstance(raw, list):
        raise DirectoryUnavailable(f"unexpected reply from Redis: {raw!r}")
    return raw


class RedisDirectory:
    """A :class:`~gameserver.directory.base.Directory` in Redis.

    ``prefix`` namespaces every key (several clusters, or tests, may share one database).
    ``clock`` is the local clock that lease expiries are given in (trio's by default)."""

    def __init__(
        self,
        client: RedisClient,
        limits: DirectoryLimits | None = None,
        prefix: str = "gs:",
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.client = client
        self._limits = limits or DirectoryLimits()
        self.prefix = prefix
        self._clock = clock

    @property
    def limits(self) -> DirectoryLimits:
        return self._limits

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _lease(self, room: str, fields: Sequence[Reply], now: float) -> RoomLease:
        node, epoch, gen, url, game, private, pttl = fields
        return RoomLease(
            room,
            _s(node),
            _i(epoch),
            now + max(0, _i(pttl)) / 1000,
            url=_s(url),
            game=_s(game),
            private=_s(private) == "1",
            generation=_s(gen),
        )

    # ------------------------------------------------------------ nodes
    async def heartbeat(self, node: NodeRecord) -> None:
        await self.client.run_script(
            scripts.HEARTBEAT,
            [self._k("node", node.node_id), self._k("nodes", "load"), self._k("nodes", "exp")],
            [
                node.node_id,
                node.url,
                repr(float(node.load)),
                _ms(self._limits.node_ttl),
                self._k("node", ""),
            ],
        )

    async def remove_node(self, node_id: str) -> None:
        await self.client.run_script(
            scripts.REMOVE_NODE,
            [self._k("node", node_id), self._k("nodes", "load"), self._k("nodes", "exp")],
            [node_id],
        )

    async def _nodes(self, room: str | None) -> list[NodeRecord]:
        raw = _list(
            await self.client.run_script(
                scripts.NODES,
                [
                    self._k("nodes", "load"),
                    self._k("nodes", "exp"),
                    self._k("placing", room or ""),
                ],
                [
                    self._k("node", ""),
                    "0" if room is None else "1",
                    str(_ms(self._limits.placement_hold)),
                    str(PLACED_MAX),
                    self._k("placed", ""),
                    room or "",
                ],
            )
        )
        return [
            NodeRecord(_s(raw[i]), _s(raw[i + 1]), float(_s(raw[i + 2])))
            for i in range(0, len(raw) - 2, 3)
        ]

    async def nodes(self) -> list[NodeRecord]:
        return await self._nodes(None)

    async def pick_node(self, room: str) -> NodeRecord:
        found = await self._nodes(room)
        if not found:
            raise DirectoryRefused(Refused.NO_NODE, "no live node")
        return found[0]

    # ------------------------------------------------------------ rooms
    async def create_room(
        self, room: str, node: NodeRecord, creator: str, *, game: str = "", private: bool = False
    ) -> RoomLease:
        lim = self._limits
        now = self._clock()  # before the call: the local expiry can only be early
        raw = _list(
            await self.client.run_script(
                scripts.CREATE,
                [
                    self._k("room", room),
                    self._k("last", room),
                    self._k("rate", creator),
                    self._k("gen"),
                    self._k("epoch"),
                    self._k("placing", room),
                ],
                [
                    node.node_id,
                    node.url,
                    game,
                    "1" if private else "0",
                    _ms(lim.lease_ttl),
                    secrets.token_hex(8),
                    repr(float(lim.create_rate)),
                    repr(float(lim.create_burst)),
                    _ms(lim.epoch_memory),
                ],
            )
        )
        status = _s(raw[0])
        if status == "taken":
            raise RoomTaken(self._lease(room, raw[1:8], now))
        if status == "rate":
            raise DirectoryRefused(Refused.CREATE_RATE, "too many rooms created by this player")
        return RoomLease(
            room,
            node.node_id,
            _i(raw[1]),
            now + lim.lease_ttl,
            url=node.url,
            game=game,
            private=private,
            generation=_s(raw[2]),
        )

    async def lookup(self, room: str) -> RoomLease | None:
        now = self._clock()
        raw = await self.client.run_script(scripts.LOOKUP, [self._k("room", room)], [])
        if raw is None:
            return None
        return self._lease(room, _list(raw), now)

    async def renew(
        self, node_id: str, leases: Sequence[RoomLease], seats: Sequence[Seat]
    ) -> Renewal:
        lim = self._limits
        index = {lease.room: i for i, lease in enumerate(leases, 1)}
        keys = [self._k("gen"), self._k("epoch")]
        args: list[str | int] = [
            node_id,
            _ms(lim.lease_ttl),
            secrets.token_hex(8),
            _ms(lim.epoch_memory),
            len(leases),
            len(seats),
        ]
        for lease in leases:
            keys += [self._k("room", lease.room), self._k("last", lease.room)]
            args += [
                lease.epoch,
                lease.generation,
                lease.url,
                lease.game,
                "1" if lease.private else "0",
            ]
        for seat in seats:
            keys.append(self._k("seat", seat.player_id))
            args += [index.get(seat.room, 0), seat.epoch]
        args += [seat.room for seat in seats]
        now = self._clock()
        raw = _list(await self.client.run_script(scripts.RENEW, keys, args))
        results, seat_results = _list(raw[0]), _list(raw[1])
        expires = now + lim.lease_ttl
        kept: list[RoomLease] = []
        lost: list[LeaseLost] = []
        for lease, res in zip(leases, results, strict=True):
            fields = _list(res)
            status = _s(fields[0])
            if status == "kept":
                kept.append(
                    RoomLease(
                        lease.room,
                        node_id,
                        _i(fields[1]),
                        expires,
                        url=lease.url,
                        game=lease.game,
                        private=lease.private,
                        generation=_s(fields[2]),
                    )
                )
            elif status == "moved":
                current = self._lease(lease.room, fields[1:8], now)
                lost.append(LeaseLost(lease, LostReason.MOVED, current))
            else:
                lost.append(LeaseLost(lease, LostReason.LAPSED))
        seats_kept: list[Seat] = []
        seats_lost: list[Seat] = []
        for seat, res in zip(seats, seat_results, strict=True):
            epoch = res if isinstance(res, int) else 0
            if epoch:
                seats_kept.append(Seat(seat.player_id, seat.room, node_id, epoch, expires))
            else:
                seats_lost.append(seat)
        return Renewal(tuple(kept), tuple(lost), tuple(seats_kept), tuple(seats_lost))

    async def release_room(self, lease: RoomLease) -> bool:
        raw = await self.client.run_script(
            scripts.RELEASE,
            [self._k("room", lease.room), self._k("last", lease.room)],
            [lease.node_id, lease.epoch, lease.generation],
        )
        return raw == 1

    # ------------------------------------------------------------ seats
    async def claim_seat(
        self, player_id: str, lease: RoomLease, replace: Seat | None = None
    ) -> Seat:
        now = self._clock()
        raw = _list(
            await self.client.run_script(
                scripts.CLAIM_SEAT,
                [self._k("room", lease.room), self._k("seat", player_id)],
                [
                    lease.node_id,
                    lease.epoch,
                    lease.generation,
                    player_id,
                    lease.room,
                    self._k("room", ""),
                    replace.room if replace else "",
                    replace.node_id if replace else "",
                    replace.epoch if replace else "",
                ],
            )
        )
        status = _s(raw[0])
        if status == "notowner":
            raise DirectoryRefused(Refused.NOT_OWNER, "the lease does not hold the room")
        if status == "taken":
            held = Seat(
                player_id, _s(raw[1]), _s(raw[2]), _i(raw[3]), now + max(0, _i(raw[4])) / 1000
            )
            raise SeatTaken(held)
        return Seat(
            player_id, lease.room, lease.node_id, lease.epoch, now + max(0, _i(raw[1])) / 1000
        )

    async def seat_of(self, player_id: str) -> Seat | None:
        now = self._clock()
        raw = await self.client.run_script(scripts.SEAT_OF, [self._k("seat", player_id)], [])
        if raw is None:
            return None
        f = _list(raw)
        return Seat(player_id, _s(f[0]), _s(f[1]), _i(f[2]), now + max(0, _i(f[3])) / 1000)

    async def release_seat(self, seat: Seat) -> bool:
        raw = await self.client.run_script(
            scripts.RELEASE_SEAT,
            [self._k("seat", seat.player_id)],
            [seat.room, seat.node_id, seat.epoch],
        )
        return raw == 1
