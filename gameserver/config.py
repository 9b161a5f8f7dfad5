"""The server's configuration: everything tunable, as one frozen value. No trio.

The CLI (``gameserver serve``) maps its flags onto these fields; embedders build one directly
(``ServerConfig(port=0, ...)``) and pass it to :func:`gameserver.server.open_gameserver`.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from gameserver.game import MAX_TICK_RATE


@attrs.frozen
class ServerConfig:
    """Everything tunable about the server. The CLI maps flags onto these fields."""

    host: str = "127.0.0.1"
    port: int = 8443
    #: overrides every game's own tick rate (1..120 Hz)
    tick_rate: int | None = None
    #: overrides every game's own room size
    max_players: int | None = None
    max_rooms: int = 1000
    #: largest WebSocket message accepted from a client; larger ones close with 1009
    max_message_size: int = 4096
    #: seconds to finish the TLS + WebSocket handshake (slowloris guard)
    connect_timeout: float = 5.0
    #: seconds from the WebSocket handshake to an authenticated JOIN
    join_timeout: float = 5.0
    #: seconds allowed for the closing handshake
    close_timeout: float = 2.0
    #: bytes of reliable messages a player may have queued before it is dropped as too slow
    outbound_limit: int = 256 * 1024
    #: bytes read from one player's socket per tick at most (the rest waits in the kernel)
    read_budget: int = 16 * 1024
    #: seconds an empty room lives before it is disposed of
    room_grace: float = 10.0
    input_queue_limit: int = 8
    checksum_interval: int = 5
    #: open connections at most, in total and from one IP address (0 = no limit)
    max_connections: int = 10000
    max_connections_per_ip: int = 256
    #: per-player token buckets: sustained rate per second and burst; the excess is dropped.
    #: Inputs: at least 3 per tick at the room's tick rate (60/s at 20 Hz), whichever is more.
    input_rate: float = 60.0
    input_burst: float = 30.0
    event_rate: float = 5.0
    event_burst: float = 10.0
    #: dropped messages tolerated beyond the rate, refilled at the rate; past it: close 1008
    abuse_allowance: float = 5.0  # in seconds' worth of the rate
    #: a WebSocket ping after this many seconds without a byte from the player ...
    ping_interval: float = 15.0
    #: ... and a close (1001) after this many
    idle_timeout: float = 30.0
    #: browser Origins allowed to connect ("*" = any); requests without Origin are not browsers
    allowed_origins: tuple[str, ...] = ()
    #: rooms one player id may create: a sustained rate per second and a burst (a player hopping
    #: through new room names must not fill ``max_rooms`` for everyone)
    room_create_rate: float = 0.2
    room_create_burst: float = 5.0
    #: refuse new joins (4006 "server full") while the lasting load (the CPU share of one core
    #: the process uses, less connection setup: TLS, upgrade, JOIN) projected with one more
    #: player is over this, measured over the last ``load_window`` seconds; 0 disables it
    cpu_budget: float = 0.85
    load_window: float = 2.0
    #: ... or while more than this share of the last window's ticks ran late (or were skipped)
    late_tick_budget: float = 0.01
    #: new connections start their TLS handshake at the rate that fits the lasting load and
    #: the setups under this share of one core (0: no pacing) ...
    setup_ceiling: float = 0.95
    #: ... each waiting at most this many seconds for its turn; then it is told "server full"
    #: (0: never wait, no pacing)
    setup_wait: float = 5.0
    #: seconds a drain (SIGTERM, ``POST /admin/drain``) gives the players to leave; then the
    #: rest get 1001 "server restarting; come back later"
    drain_timeout: float = 30.0
    #: answer plain HTTPS GET on the WSS port with the web demo and the JavaScript SDK
    #: (gameserver.http_static); off: every plain HTTP request gets 426
    web: bool = True
    #: the folder served (its demo/, src/ and games/); None: the bundled clients/web
    web_root: Path | None = None
    #: seconds a gamesync.v2 player's seat is held after its connection is lost without LEAVE,
    #: for a RESUME; None: each game's own ``Game.seat_hold``; 0: seats are never held
    seat_hold: float | None = None
    #: seconds of per-tick changes a room keeps to answer a RESUME with a catch-up delta
    #: (older ones, or 0, get a SNAPSHOT)
    resume_history: float = 10.0
    #: RESYNC (a fresh SNAPSHOT on request): ``resync_burst`` at once, then one per
    #: ``resync_interval`` seconds; the excess is ignored (and counted)
    resync_interval: float = 2.0
    resync_burst: float = 2.0

    def __attrs_post_init__(self) -> None:
        if self.tick_rate is not None and not 1 <= self.tick_rate <= MAX_TICK_RATE:
            raise ValueError(f"tick rate must be 1..{MAX_TICK_RATE} Hz")
        if self.seat_hold is not None and not 0 <= self.seat_hold < float("inf"):
            raise ValueError("seat hold must be 0 or more seconds")
