"""The admin API, on the metrics port: list rooms, kick a player, close a room.

Every request needs ``Authorization: Bearer <token>`` with a token whose ``admin`` claim is
true (``gameserver token --player ops --admin``).

=======================================  ===================================================
``GET /admin/rooms``                     every room (private ones too) and its players (JSON)
``POST /admin/kick?room=R&player=N``     close player number N of room R with 4010 (a held
                                         seat is freed: the player leaves at the next tick)
``POST /admin/kick?player_id=ID``        close the session of player id ID with 4010 (or free
                                         its held seat)
``POST /admin/close?room=R``             close every session of room R with 4011
``POST /admin/drain[?timeout=S]``        drain the server: no new joins (4012); the players get
                                         S seconds (default ``--drain-timeout``) to leave, then
                                         1001; then the process exits 0 (202; 200 if already)
=======================================  ===================================================
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import trio

from gameserver.auth import AuthError, TokenVerifier
from gameserver.logsafe import peer_text
from shared.protocol import CloseCode

if TYPE_CHECKING:
    from gameserver.server import GameServer

log = logging.getLogger("gameserver")
_JSON = "application/json"


class AdminAPI:
    def __init__(self, server: GameServer, verifier: TokenVerifier) -> None:
        self.server = server
        self.verifier = verifier

    def __call__(
        self, method: str, path: str, query: str, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _reply(401, {"error": "an admin token is required (Authorization: Bearer)"})
        try:
            identity = self.verifier.verify(token.strip())
        except AuthError as exc:
            self.server.stats.refused[f"admin_{exc.failure.value}"] += 1
            return _reply(401, {"error": str(exc)})
        if not identity.admin:
            self.server.stats.refused["admin_forbidden"] += 1
            return _reply(403, {"error": "this token has no admin claim"})
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if path == "/admin/rooms":
            if method != "GET":
                return _reply(405, {"error": "use GET"})
            return _reply(200, {"rooms": self.rooms()})
        if method != "POST":
            return _reply(405, {"error": "use POST"})
        if path == "/admin/kick":
            return self.kick(params, identity.player_id)
        if path == "/admin/close":
            return self.close_room(params, identity.player_id)
        if path == "/admin/drain":
            return self.drain(params, identity.player_id)
        return _reply(404, {"error": "unknown admin action"})

    def rooms(self) -> list[dict[str, Any]]:
        out = []
        for name, host in sorted(self.server.rooms.rooms.items()):
            room = host.room
            out.append(
                {
                    "room": name,
                    "game": room.game_cls.name,
                    "private": host.private,
                    "tick_rate": room.config.tick_rate,
                    "tick": room.state_tick,
                    "max_players": room.max_players,
                    "players": [
                        {"number": p.number, "id": p.id, "name": p.name, "connected": p.connected}
                        for p in room.players()
                    ],
                }
            )
        return out

    def kick(self, params: dict[str, str], by: str) -> tuple[int, str, bytes]:
        session = None
        if "player_id" in params:
            session = self.server.by_player.get(params["player_id"])
        elif "room" in params and "player" in params:
            host = self.server.rooms.rooms.get(params["room"])
            if host is not None and params["player"].isdigit():
                number = int(params["player"])
                session = host.sessions.get(number) or host.held_seats.get(number)
        else:
            return _reply(400, {"error": "give player_id, or room and player"})
        if session is None:
            return _reply(404, {"error": "no such player"})
        log.info("admin %s kicked player %s", peer_text(by), peer_text(session.player.id))
        self.server.kick(session)
        return _reply(200, {"kicked": session.player.id})

    def close_room(self, params: dict[str, str], by: str) -> tuple[int, str, bytes]:
        host = self.server.rooms.rooms.get(params.get("room", ""))
        if host is None:
            return _reply(404, {"error": "no such room"})
        log.info("admin %s closed room %s", peer_text(by), host.room.name)
        host.close(CloseCode.ROOM_CLOSED, "the room was closed by an admin")
        return _reply(200, {"closed": host.room.name, "players": len(host.sessions)})

    def drain(self, params: dict[str, str], by: str) -> tuple[int, str, bytes]:
        timeout = None
        if "timeout" in params:
            try:
                timeout = float(params["timeout"])
            except ValueError:
                timeout = math.nan
            if not 0 <= timeout < math.inf:
                return _reply(400, {"error": "timeout must be a number of seconds, 0 or more"})
        server = self.server
        started = server.begin_drain(timeout)
        if started:
            log.info("admin %s started a drain", peer_text(by))
        deadline = server.drain_deadline
        left = 0.0 if deadline is None else max(0.0, deadline - trio.current_time())
        body = {"draining": True, "players": server.stats.players, "closing_in": round(left, 3)}
        return _reply(202 if started else 200, body)


def _reply(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, _JSON, (json.dumps(body) + "\n").encode()


def metrics_endpoint_tls(want_tls: bool, host: str, ssl_context: ssl.SSLContext | None) -> bool:
    """Whether the metrics port (admin API, dashboard) serves HTTPS: ``--metrics-tls`` asks
    for it (a StartupError-style ValueError without a certificate, i.e. with ``--insecure``).
    Plain HTTP off loopback logs a WARNING: the admin token and session cookie would cross
    the network in clear text."""
    if want_tls:
        if ssl_context is None:
            raise MetricsTLSError(
                "--metrics-tls needs the server's certificate; it cannot go with --insecure"
            )
        return True
    if not _is_loopback(host):
        log.warning(
            "the metrics port on %s serves the admin API and dashboard over plain HTTP: admin "
            "tokens and session cookies cross the network in clear text; add --metrics-tls, "
            "or keep --metrics-host on 127.0.0.1",
            host or "every interface",
        )
    return False


class MetricsTLSError(ValueError):
    """--metrics-tls cannot be served (no certificate)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name, or "" (every interface): assume reachable from elsewhere
