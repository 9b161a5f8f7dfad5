"""The server's state as the connection lifecycle reads it (``gameserver.lifecycle.Directory``).

No I/O: every answer comes from the server's rooms, seats and flags as they are now.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from gameserver.game import Game
from gameserver.lifecycle import RoomInfo
from gameserver.resume import ResumeClaims, ResumeRefusal

if TYPE_CHECKING:
    from gameserver.server import GameServer


class ServerState:
    """The server's state as the lifecycle core reads it (a ``lifecycle.Directory``)."""

    def __init__(self, server: GameServer) -> None:
        self._server = server
        self.max_rooms = server.config.max_rooms

    @property
    def draining(self) -> bool:
        return self._server.draining

    @property
    def overloaded(self) -> bool:
        return self._server.load.overloaded

    def room_count(self) -> int:
        return len(self._server.rooms.rooms)

    def game(self, name: str) -> type[Game] | None:
        return self._server.registry.get(name)

    def room(self, name: str) -> RoomInfo | None:
        host = self._server.rooms.rooms.get(name)
        if host is None or host.closed:
            return self._server.rooms.held(name)  # an admin closed it a moment ago
        r = host.room
        return RoomInfo(
            name, r.game_cls.name, host.private, host.closing, r.player_count, r.max_players
        )

    def seat_of(self, player_id: str) -> str | None:
        session = self._server.by_player.get(player_id)
        return None if session is None or session.host is None else session.host.room.name

    def new_private_room_id(self) -> str:
        return "~" + secrets.token_urlsafe(16)

    def may_create_room(self, creator: str) -> bool:
        return self._server.rooms.may_create(creator)

    def seat_hold(self, room: str) -> float:
        host = self._server.rooms.rooms.get(room)
        return 0.0 if host is None else host.seat_hold

    def resume_check(self, room: str, claims: ResumeClaims) -> ResumeRefusal | None:
        host = self._server.rooms.rooms.get(room)
        if host is None or host.closed or host.closing:
            return ResumeRefusal.SEAT_LOST
        return host.room.resume_check(claims)

    def seat_attached(self, room: str, number: int) -> bool:
        host = self._server.rooms.rooms.get(room)
        return host is not None and number in host.sessions
