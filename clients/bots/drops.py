"""``gamebots --drop-every S``: bots whose connections are cut at random, and who resume.

The engine (:class:`clients.bots.lean.Engine`) cuts each bot's connection S seconds apart on
average (exponential intervals, independent per bot): it resets the socket (RST, no close
frame, no LEAVE) and hands the bot back to the trio thread, where :func:`recover` brings it
back the way the SDKs do (gamesync.v2):

* wait a jittered backoff (``random(0, min(0.75, 0.1 * 2**n))`` s before attempt n), connect
  and send RESUME(room, the last JOINED's token, the tick of the bot's state); at most
  :data:`MAX_ATTEMPTS` attempts (connect failures, timeouts, 4012 draining: try again);
* on JOINED(RESUMED) with the same player number, apply the first state message (a catch-up
  DELTA from the bot's tick, or a SNAPSHOT: a replica bot checks it, a lean bot checks that
  the delta starts at its tick), send again the inputs the server has not applied (seq above
  JOINED's ``input_seq``, the same seq numbers and contents), and go back into the engine;
* a RESUME refused with 4013 (seat lost) or 4001 (token refused), a resumed JOINED with
  another player number, or a seat without a resume token (a v1 server, holds off) is a lost
  seat: the bot joins afresh (a new player: seq from 1, a new replica) and plays on;
* attempts used up: the bot fails (kind ``resume_failed``).

In a cluster the RESUME goes to the node the bot was seated on first (``bot.url``); if that
node cannot be reached, the same attempt goes back to the entry URL (``--url``), whose
REDIRECT (at most 3 per attempt) leads to where the room lives now.

A bot counts ``drops``, ``resumes``, ``resume_failures``, ``seats_lost`` and its resume times
(ms from the cut to the first state message applied after RESUMED). Inputs sent before a cut
and still unacknowledged lose their latency samples; their re-sent copies are measured from
the resend. A catch-up delta counts as the ticks it spans in ``updates`` (the bot is back in
step with the room), so the update rate stays comparable with a run without drops.
"""

from __future__ import annotations

import random
import ssl
import time
from typing import TYPE_CHECKING, Any

import trio

from clients.bots.lean import (
    _RING_MASK,
    RING,
    Bot,
    BotFailed,
    LeanConnection,
    connect_node,
    follow_redirect,
)
from shared import delta_v3, wire
from shared.delta_v3 import coding_for
from shared.errors import RemoteProtocolError
from shared.messages import (
    DELTA_BASE,
    DELTA_CHECKSUM,
    Delta,
    Joined,
    Redirect,
    Resume,
    ServerMessage,
    Snapshot,
    parse_server_message,
    read_acks,
)
from shared.protocol import SUPPORTED_SUBPROTOCOLS, CloseCode, Kind

if TYPE_CHECKING:
    from clients.bots.behaviours import Behaviour
    from clients.bots.lean import LatencyHistogram

#: the SDKs' reconnect backoff: attempt n waits random(0, min(CAP, BASE * 2**n)) seconds
BACKOFF_BASE = 0.1
BACKOFF_CAP = 0.75
MAX_ATTEMPTS = 40
#: refusals that mean the seat is gone: join afresh
SEAT_LOST_CODES = frozenset({int(CloseCode.SEAT_LOST), int(CloseCode.UNAUTHORIZED)})


class SeatLost(Exception):
    """The held seat cannot be had back; ``why`` says so."""

    def __init__(self, why: str, joined: tuple[LeanConnection, Joined] | None = None) -> None:
        super().__init__(why)
        self.why = why
        #: a resumed JOINED for another player: the connection is seated, as that player
        self.joined = joined


class ResumingBot(Bot):
    """A lean bot that keeps what it needs to resume: its inputs' contents by seq, its own
    random generator for the cuts and the backoff, and its resume counters."""

    __slots__ = (
        "cut_at",
        "drop_rng",
        "drops",
        "resume_failures",
        "resume_ms",
        "resumes",
        "seats_lost",
        "sent_codes",
    )

    def __init__(
        self,
        index: int,
        room: str,
        *,
        verify: bool,
        rng: random.Random,
        drop_rng: random.Random,
        behaviour: Behaviour | None = None,
        protocol: str = "gamesync",
        name: str = "",
        player_id: str = "",
        token: str = "",
        latency: LatencyHistogram | None = None,
    ) -> None:
        super().__init__(
            index,
            room,
            verify=verify,
            rng=rng,
            behaviour=behaviour,
            protocol=protocol,
            name=name,
            player_id=player_id,
            token=token,
            latency=latency,
        )
        self.drop_rng = drop_rng
        self.sent_codes: list[bytes] = [b""] * RING
        self.cut_at = 0.0
        self.drops = 0
        self.resumes = 0
        self.resume_failures = 0
        self.seats_lost = 0
        self.resume_ms: list[float] = []

    def drop_delay(self, mean: float) -> float:
        return self.drop_rng.expovariate(1.0 / mean)

    def send_input(self, now: float) -> None:
        super().send_input(now)
        self.sent_codes[self.seq & _RING_MASK] = self.codes


def state_head(
    data: bytes, coding: int = 2
) -> tuple[int, int, int | None, tuple[tuple[int, int], ...]]:
    """(kind, tick, base tick or None, acks) of a SNAPSHOT or DELTA, without the schema
    (``coding`` 3: a gamesync.v3 DELTA, whose acks are its own layout)."""
    r = wire.Reader(data, 1)
    kind = data[0]
    if kind == Kind.SNAPSHOT:
        tick = r.varint()
        r.fixed(4)
        return kind, tick, None, read_acks(r)
    if kind != Kind.DELTA:
        raise RemoteProtocolError(f"expected state, got message kind 0x{kind:02x}")
    flags = r.u8()
    tick = r.varint()
    base = r.varint() if flags & DELTA_BASE else None
    if flags & DELTA_CHECKSUM:
        r.fixed(4)
    if coding == 3:
        return kind, tick, base, delta_v3.read_acks(r, flags)
    return kind, tick, base, read_acks(r)


def input_message(seq: int, codes: bytes) -> bytes:
    return bytes((Kind.INPUT,)) + wire.varint(seq) + codes


def _desync(bot: Bot, why: str) -> BotFailed:
    bot.desyncs += 1
    bot.failed = "desync"
    return BotFailed("desync", why)


def apply_resumed_state(bot: ResumingBot, data: bytes, version: int) -> None:
    """Apply the first state message after JOINED(RESUMED): a catch-up DELTA (its base must be
    the bot's tick) or a SNAPSHOT. Raises BotFailed("desync") if it does not fit."""
    old_tick = bot.tick
    replica = bot.replica
    try:
        if replica is not None:
            assert bot.joined is not None
            msg = parse_server_message(
                data,
                bot.joined.schema,
                replica.type_of,
                version=version,
                coding=replica.coding,
                predict=replica.predicted,
            )
            if isinstance(msg, Delta):
                replica.apply_delta(msg, verify=bot.verify)
                span = msg.tick - msg.base_tick
            elif isinstance(msg, Snapshot):
                replica.apply_snapshot(msg)
                bot.snapshots += 1
                span = msg.tick - old_tick if old_tick > 0 else 1
            else:
                raise RemoteProtocolError(f"expected state, got {type(msg).__name__}")
            tick = replica.tick
            ack = replica.acks.get(bot.player, 0)
        else:
            view = bot.joined is not None and bot.joined.view
            kind, tick, base, acks = state_head(data, coding_for(version, view))
            own = next((v for p, v in acks if p == bot.player), 0)
            if kind == Kind.DELTA:
                start = tick - 1 if base is None else base
                if start != old_tick:
                    raise _desync(bot, f"catch-up delta from tick {start} after tick {old_tick}")
                span = tick - start
                ack = bot.acked + own
            else:
                bot.snapshots += 1
                span = tick - old_tick if old_tick > 0 else 1
                ack = own
    except RemoteProtocolError as exc:  # a DesyncError, or a malformed message
        raise _desync(bot, f"after a resume: {exc}") from None
    bot.updates += max(span, 0)
    bot.tick = tick
    bot.acked = ack


async def _resume_connection(
    bot: ResumingBot, entry: str, ctx: ssl.SSLContext | None, token: str, have_tick: int
) -> tuple[LeanConnection, ServerMessage]:
    """Connect and RESUME: at the bot's node first (back to ``entry`` if it cannot be
    reached), following REDIRECTs. Returns the connection and the answer to the RESUME."""
    current = bot.url or entry
    hops = 0
    while True:
        try:
            conn = await connect_node(current, ctx, list(SUPPORTED_SUBPROTOCOLS), hops > 0)
        except (BotFailed, OSError):
            if hops or current == entry:
                raise
            bot.url = current = entry  # the node is gone: the entry knows where the room is
            continue
        try:
            if conn.version < 2:
                raise SeatLost("the server speaks gamesync.v1: no resume")
            conn.send(Resume(bot.room, token, have_tick, conn.version).to_bytes())
            try:
                msg = parse_server_message(await conn.next_message(), version=conn.version)
            except RemoteProtocolError as exc:
                raise BotFailed("protocol", str(exc)) from None
            if isinstance(msg, Redirect):
                conn.close()
                current = follow_redirect(msg, current, entry, hops)
                hops += 1
                bot.redirects += 1
                continue
        except BaseException:
            conn.close()
            raise
        bot.url = current
        return conn, msg


async def _resume_once(
    bot: ResumingBot, url: str, ctx: ssl.SSLContext | None, token: str, have_tick: int
) -> LeanConnection:
    """One attempt: connect, RESUME, JOINED(RESUMED), the first state. Returns the new
    connection (the bot is seated again); SeatLost or BotFailed otherwise. ``url`` is the
    entry URL (the bot's own node is dialled first)."""
    conn, msg = await _resume_connection(bot, url, ctx, token, have_tick)
    try:
        if not isinstance(msg, Joined):
            code = getattr(msg, "code", None)
            text = getattr(msg, "message", None) or getattr(msg, "reason", "")
            if code in SEAT_LOST_CODES:
                raise SeatLost(f"resume refused: {code} {text}")
            raise BotFailed(f"resume:{code}", str(text), code)
        if not msg.resumed or msg.player != bot.player:
            raise SeatLost(f"resumed as player {msg.player} (was {bot.player})", joined=(conn, msg))
        old = bot.conn
        if old is not None:
            conn.bytes_down += old.bytes_down
            conn.bytes_up += old.bytes_up
        bot.joined = msg
        bot.coding = coding_for(msg.version, msg.view)  # this connection's, maybe another
        if bot.replica is not None:
            bot.replica.coding = bot.coding
        while True:  # the state comes first; a room event before it is counted all the same
            data = await conn.next_message()
            if data and data[0] in (Kind.DELTA, Kind.SNAPSHOT):
                break
            bot._on_other(data)  # raises BotFailed for an ERROR or CLOSE
        bot.conn = conn
        apply_resumed_state(bot, data, conn.version)
    except BaseException as exc:
        if not (isinstance(exc, SeatLost) and exc.joined is not None):
            conn.close()
        raise
    return conn


def _resend(bot: ResumingBot, input_seq: int, now: float) -> int:
    """Send again the inputs after ``input_seq`` (those still kept); how many."""
    conn = bot.conn
    assert conn is not None
    first = max(input_seq + 1, bot.seq - RING + 1)
    for seq in range(first, bot.seq + 1):
        i = seq & _RING_MASK
        conn.send(input_message(seq, bot.sent_codes[i]))
        bot.sent_ring[i] = now
    return max(0, bot.seq - first + 1)


def _forget_seat(bot: ResumingBot) -> None:
    """A new player from now on: inputs from seq 1, no state."""
    bot.seq = 0
    bot.acked = 0
    bot.sent_ring[:] = [-1.0] * RING
    bot.tick = -1
    bot.replica = None
    bot.joined = None


async def recover(
    bot: ResumingBot,
    url: str,
    ctx: ssl.SSLContext | None,
    game: str,
    *,
    connect_timeout: float = 10.0,
) -> None:
    """Bring a bot whose connection was cut back into play (see the module docstring). On
    return the bot is seated (resumed, or joined afresh) and ready for ``Engine.add``; raises
    BotFailed if it cannot be."""
    bot.drops += 1
    bot.sent_ring[:] = [-1.0] * RING  # what was waiting for an ack is sent again
    token = bot.joined.resume_token if bot.joined is not None else ""
    last: BotFailed | None = None
    lost: SeatLost | None = None if token else SeatLost("no resume token (holds are off)")
    attempt = 0
    while lost is None and attempt < MAX_ATTEMPTS:
        await trio.sleep(bot.drop_rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
        attempt += 1
        # an attempt that got JOINED and then lost the connection leaves a newer token
        token = bot.joined.resume_token if bot.joined is not None else token
        try:
            with trio.fail_after(connect_timeout):
                await _resume_once(bot, url, ctx, token, max(bot.tick, 0))
        except SeatLost as exc:
            lost = exc
            break
        except BotFailed as exc:
            last = exc
            if exc.kind == "desync":
                raise
        except (OSError, ssl.SSLError) as exc:
            last = BotFailed("connect", str(exc))
        except trio.TooSlowError:
            last = BotFailed("connect_timeout", f"{connect_timeout}s")
        else:
            assert bot.joined is not None
            _resend(bot, bot.joined.input_seq, time.perf_counter())
            bot.resume_ms.append(round((time.perf_counter() - bot.cut_at) * 1000, 2))
            bot.resumes += 1
            bot.keep_behaviour = True
            return
    if lost is None:
        bot.resume_failures += 1
        assert last is not None
        raise BotFailed("resume_failed", f"{attempt} attempts, the last: {last}", last.close_code)
    bot.seats_lost += 1
    old = bot.conn
    _forget_seat(bot)
    if lost.joined is not None:  # seated, as another player: play on as that one
        conn, joined = lost.joined
        bot.conn = conn
        bot.on_joined(joined)
    else:
        await _join_afresh(bot, url, ctx, game, connect_timeout)
    if old is not None and bot.conn is not None and bot.conn is not old:
        bot.conn.bytes_down += old.bytes_down
        bot.conn.bytes_up += old.bytes_up


async def _join_afresh(
    bot: ResumingBot, url: str, ctx: ssl.SSLContext | None, game: str, connect_timeout: float
) -> None:
    last: BotFailed | None = None
    for attempt in range(MAX_ATTEMPTS):
        await trio.sleep(bot.drop_rng.uniform(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
        try:
            with trio.fail_after(connect_timeout):
                await bot.start(url, ctx, game)
            return
        except BotFailed as exc:
            last = exc
            if exc.kind.startswith("misfit"):
                raise
        except (OSError, ssl.SSLError) as exc:
            last = BotFailed("connect", str(exc))
        except trio.TooSlowError:
            last = BotFailed("connect_timeout", f"{connect_timeout}s")
        if bot.conn is not None:
            bot.conn.close()
    assert last is not None
    raise BotFailed("rejoin_failed", f"{MAX_ATTEMPTS} attempts, the last: {last}", last.close_code)


def drop_figures(bots: list[Any]) -> dict[str, Any]:
    """The resume figures of this process's bots (raw: resume times as a list)."""
    out: dict[str, Any] = {
        "drops": 0,
        "resumes": 0,
        "resume_failures": 0,
        "seats_lost": 0,
        "resume_ms": [],
    }
    for bot in bots:
        if isinstance(bot, ResumingBot):
            out["drops"] += bot.drops
            out["resumes"] += bot.resumes
            out["resume_failures"] += bot.resume_failures
            out["seats_lost"] += bot.seats_lost
            out["resume_ms"] += bot.resume_ms
    return out
