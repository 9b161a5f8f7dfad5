"""The trio layer of a cluster node: the directory calls of routing, seats, leases.

:class:`ClusterNode` is what ``GameServer.cluster`` holds. It drives the pure
:class:`~gameserver.cluster.Router` (one directory call at a time), claims the player's seat
cluster-wide before it is seated, adopts leases placed here, closes a room whose lease was
lost (1001 "room moved; join again"), closes a session whose player sat down elsewhere (4009), and
releases a room's lease when the room is disposed of. Nothing here runs in a tick: the room
tasks never await the directory (the lease cache, ``LiveDirectory.owns``, is a dict).
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from gameserver.cluster import (
    Answer,
    CreateFor,
    CreateHere,
    Kind,
    Local,
    Lookup,
    PickNode,
    RedirectTo,
    RefuseJoin,
    Router,
    RouteRequest,
    Step,
    join_request,
    redirect_actions,
    refusal_actions,
    resume_request,
)
from gameserver.cluster import ClusterOptions as ClusterOptions
from gameserver.directory.live import LiveDirectory, open_directory
from gameserver.directory.types import (
    DirectoryRefused,
    DirectoryUnavailable,
    LeaseLost,
    RoomLease,
    Seat,
    SeatTaken,
)
from gameserver.game import Game
from gameserver.lifecycle import (
    Action,
    ConnectionEvent,
    Directory,
    EndCause,
    JoinReceived,
    Lifecycle,
    ResumeReceived,
    RoomInfo,
    passes_before,
)
from gameserver.lifecycle import Step as AdmissionStep
from gameserver.reasons import Refusal
from gameserver.resume import ResumeClaims, ResumeRefusal
from shared.protocol import ROOM_MOVED_REASON, CloseCode

if TYPE_CHECKING:
    from gameserver.roomhost import RoomHost
    from gameserver.server import GameServer

log = logging.getLogger("gameserver.cluster")

#: a draining node reports this much more load, so that placement avoids it
DRAINING_LOAD = 1e9


class RoutedState:
    """The server's state as one routed connection's lifecycle reads it: the server's, except
    that a new private room gets the id this node just created in the directory, and the
    creation limit is the directory's (cluster-wide: spent when the lease was made)."""

    def __init__(self, base: Directory, local: Local) -> None:
        self._base = base
        self.local = local
        self.max_rooms = base.max_rooms

    @property
    def draining(self) -> bool:
        return self._base.draining

    @property
    def overloaded(self) -> bool:
        return self._base.overloaded

    def room_count(self) -> int:
        return self._base.room_count()

    def game(self, name: str) -> type[Game] | None:
        return self._base.game(name)

    def room(self, name: str) -> RoomInfo | None:
        return self._base.room(name)

    def seat_of(self, player_id: str) -> str | None:
        return self._base.seat_of(player_id)

    def new_private_room_id(self) -> str:
        return self.local.room

    def may_create_room(self, creator: str) -> bool:
        return True  # the directory took the creator's token when it made the lease

    def seat_hold(self, room: str) -> float:
        return self._base.seat_hold(room)

    def resume_check(self, room: str, claims: ResumeClaims) -> ResumeRefusal | None:
        return self._base.resume_check(room, claims)

    def seat_attached(self, room: str, number: int) -> bool:
        return self._base.seat_attached(room, number)


class ClusterNode:
    """One server's side of the cluster (made by :func:`open_cluster_node`)."""

    def __init__(self, server: GameServer, node_id: str, url: str) -> None:
        self.server = server
        self.node_id = node_id
        self.url = url
        self._live: LiveDirectory | None = None
        self._nursery: trio.Nursery | None = None
        #: rooms whose lease is being released: a join for one waits for it
        self._releasing: dict[str, trio.Event] = {}
        #: when each lease was taken here (created or adopted), for :meth:`sweep`
        self._taken: dict[str, float] = {}

    @property
    def live(self) -> LiveDirectory:
        assert self._live is not None, "the cluster node is not open"
        return self._live

    def load(self) -> float:
        """The node's load for placement: its players plus its rooms (far more while
        draining). A room counts from its creation, before anyone is seated in it (and the
        directory counts it from its placement, for ``placement_hold``: a room placed here
        by another node's ``pick_node`` exists here only once its first player arrives)."""
        load = float(self.server.stats.players + len(self.server.rooms.rooms))
        return load + DRAINING_LOAD if self.server.draining else load

    def hosted(self, room: str) -> bool:
        """The room runs here (and has not moved away), is held by an admin's close, or this
        node holds its lease: a join for it is served here with no directory call."""
        rooms = self.server.rooms
        host = rooms.rooms.get(room)
        if host is not None and not host.moved:
            return True
        return self.live.owns(room) is not None or rooms.held(room) is not None

    # ------------------------------------------------------------ routing a join
    async def route(
        self, first: ConnectionEvent, life: Lifecycle
    ) -> tuple[Lifecycle, list[Action] | None]:
        """Route the first message of a connection. Returns the lifecycle to admit it with
        (a routed one when the directory was asked) and None, or the final actions: a
        redirect, or a refusal (ERROR, close)."""
        state = life.directory
        request: RouteRequest | None = None
        if isinstance(first, JoinReceived):
            if passes_before(first, state, AdmissionStep.ROOM):
                game = state.game(first.join.game)
                assert game is not None and not isinstance(first.verdict, Exception)
                request = join_request(first, first.verdict, game.name)
        elif isinstance(first, ResumeReceived) and passes_before(first, state, AdmissionStep.SEAT):
            request = resume_request(first)
        if request is None:
            return life, None
        outcome: Local | RedirectTo | RefuseJoin = RefuseJoin(Refusal.SERVER_FULL, "")
        for _ in range(3):  # again if the room went away while its seat was being claimed
            outcome = await self._decide(request)
            if isinstance(outcome, RedirectTo):
                self.server.stats.redirects += 1
                return life, redirect_actions(outcome.url, outcome.room, life.version)
            if isinstance(outcome, RefuseJoin):
                return life, refusal_actions(outcome)
            if request.kind is Kind.RESUME:
                break  # its seat was claimed when it was first taken
            await self._claim_seat(request.player_id, outcome.room)
            if self.hosted(outcome.room):
                break
        assert isinstance(outcome, Local)
        return Lifecycle(RoutedState(state, outcome), life.version), None

    async def _decide(self, request: RouteRequest) -> Local | RedirectTo | RefuseJoin:
        releasing = self._releasing.get(request.room)
        if releasing is not None:
            await releasing.wait()  # bounded by the directory's call timeout
        server = self.server
        router = Router(
            request,
            self.node_id,
            may_host=len(server.rooms.rooms) < server.config.max_rooms,
            new_private_id=server._directory.new_private_room_id,
        )
        step: Step = router.start(self.hosted(request.room))
        while not isinstance(step, Local | RedirectTo | RefuseJoin):
            try:
                answer = await self._call(step)
                self.live.reachable = True
            except DirectoryUnavailable as exc:
                answer = exc
                self.live.reachable = False  # seat claims skip it until it answers again
            except DirectoryRefused as exc:
                answer = exc
            step = router.answer(answer)
        if isinstance(step, Local) and step.lease is not None:
            self.live.adopt(step.lease)  # (already cached if this node just created it)
            self._taken[step.lease.room] = trio.current_time()
        if isinstance(step, RefuseJoin):
            log.debug("join for %r refused: %s", request.room, step.refusal.value)
        return step

    async def _call(self, call: Lookup | PickNode | CreateHere | CreateFor) -> Answer:
        live = self.live
        directory = live.directory
        if isinstance(call, Lookup):
            return await directory.lookup(call.room)
        if isinstance(call, PickNode):
            return await directory.pick_node(call.room)
        if isinstance(call, CreateHere):
            return await live.create_room(
                call.room, call.creator, game=call.game, private=call.private
            )
        return await directory.create_room(call.room, call.node, call.creator, game=call.game)

    # ------------------------------------------------------------ seats
    async def _claim_seat(self, player_id: str, room: str) -> None:
        """One seat per player, cluster-wide: take the player's seat in ``room``, replacing
        a seat it holds elsewhere (the newest join wins; that node closes the old session
        with 4009 at its next renewal). Without the directory the local seat proceeds."""
        live = self.live
        if live.owns(room) is None:
            return
        if not live.reachable:  # known down (a call or a renewal failed): don't wait on it
            log.info("seat of %s in %s not claimed: the directory is unreachable", player_id, room)
            return
        replace: Seat | None = None
        for _ in range(3):
            try:
                await live.claim_seat(player_id, room, replace)
                return
            except SeatTaken as taken:
                replace = taken.seat
            except DirectoryUnavailable as exc:
                log.info("seat of %s in %s not claimed in the directory: %s", player_id, room, exc)
                return
            except DirectoryRefused as exc:  # NOT_OWNER: the next renewal tells us
                log.info("seat of %s in %s not claimed: %s", player_id, room, exc.kind.value)
                return
            except KeyError:  # the lease went away meanwhile
                return

    def seat_freed(self, player_id: str) -> None:
        """The player has no seat on this node any more: free its seat in the directory."""
        if player_id in self.server.by_player or self._nursery is None:
            return
        seat = self.live.seats.pop(player_id, None)
        if seat is not None:
            self._nursery.start_soon(self._release_seat, seat)

    async def _release_seat(self, seat: Seat) -> None:
        try:
            await self.live.directory.release_seat(seat)
        except DirectoryUnavailable:
            pass  # it lapses with the room's lease, or is replaced by the next claim

    def on_seat_lost(self, seat: Seat) -> None:
        """The player took a seat on another node (the renewal said so): close it here."""
        session = self.server.by_player.get(seat.player_id)
        host = session.host if session is not None else None
        if host is None or host.room.name != seat.room:
            return
        log.info("player %s sat down elsewhere; closing its seat in %s", seat.player_id, seat.room)
        self.server._take_over_player(seat.player_id)

    # ------------------------------------------------------------ leases
    def on_lost(self, lost: LeaseLost) -> None:
        """The room's lease was fenced (another node holds the room now): close it here."""
        host = self.server.rooms.rooms.get(lost.lease.room)
        if host is None or host.closed:
            return
        host.moved = True
        # 1001, not 4011 (an admin's final close): the SDKs reconnect, their RESUME is
        # redirected to the new owner, which answers 4013, and they JOIN again there
        host.close(CloseCode.GOING_AWAY, ROOM_MOVED_REASON, EndCause.ROOM_CLOSED)

    def on_dispose(self, host: RoomHost) -> None:
        """A room was disposed of: release its lease (in the background)."""
        name = host.room.name
        if host.moved or self._nursery is None:
            return
        self._taken.pop(name, None)
        lease = self.live.forget(name)
        if lease is not None:
            self._nursery.start_soon(self._release, lease, self._event(name))

    async def _release(self, lease: RoomLease, done: trio.Event) -> None:
        try:
            await self.live.release_lease(lease)
        finally:
            done.set()
            if self._releasing.get(lease.room) is done:
                del self._releasing[lease.room]

    def sweep(self, now: float) -> None:
        """Release the leases held for a room that does not run here (its join was refused
        after the lease was taken, or the player never came) once they are a TTL old."""
        rooms = self.server.rooms.rooms
        grace = self.live.directory.limits.lease_ttl
        for room in [r for r in self._taken if r not in self.live.leases]:
            del self._taken[room]
        for room in list(self.live.leases):
            if room in rooms or now - self._taken.get(room, -math.inf) < grace:
                continue
            self._taken.pop(room, None)
            lease = self.live.forget(room)
            if lease is not None and self._nursery is not None:
                log.info("room %s was placed here but never made; releasing it", room)
                self._nursery.start_soon(self._release, lease, self._event(room))

    def _event(self, room: str) -> trio.Event:
        done = self._releasing[room] = trio.Event()
        return done

    def publish(self) -> None:
        """The directory gauges (``gameserver_directory_reachable``, ``_leases``)."""
        stats = self.server.stats
        stats.directory_reachable = int(self.live.reachable)
        stats.directory_leases = len(self.live.leases)

    async def _sweeping(self) -> None:
        every = self.live.directory.limits.renew_interval
        while True:
            self.publish()
            await trio.sleep(every)
            self.sweep(trio.current_time())

    async def release_all(self) -> None:
        """At shutdown: release every lease still held (best effort, bounded)."""
        live = self.live
        with trio.move_on_after(1.0) as scope:
            scope.shield = True
            for room in list(live.leases):
                lease = live.forget(room)
                if lease is not None:
                    await live.release_lease(lease)


def default_node_id(port: int) -> str:
    return f"{socket.gethostname()}:{port}"


@asynccontextmanager
async def open_cluster_node(
    server: GameServer, options: ClusterOptions
) -> AsyncIterator[ClusterNode]:
    """Join the cluster for the duration of the block: the node record (heartbeats with the
    public URL and load), lease and seat renewals, and the server's hooks. ``server.port``
    must be bound already (the defaults use it)."""
    node_id = options.node_id or default_node_id(server.port)
    url = options.public_url or server.url + "/"
    node = ClusterNode(server, node_id, url)
    async with (
        open_directory(
            options.directory,
            node_id,
            url,
            load=node.load,
            on_lost=node.on_lost,
            on_seat_lost=node.on_seat_lost,
        ) as live,
        trio.open_nursery() as nursery,
    ):
        node._live = live
        node._nursery = nursery
        server.rooms.on_dispose = node.on_dispose
        nursery.start_soon(node._sweeping)
        if not live.reachable:
            log.warning("the room directory is unreachable at start; retrying in the background")
        try:
            yield node
        finally:
            server.stats.directory_reachable, server.stats.directory_leases = 1, 0
            server.rooms.on_dispose = None
            node._nursery = None
            await node.release_all()
            nursery.cancel_scope.cancel()


__all__ = ["ClusterNode", "ClusterOptions", "open_cluster_node"]
