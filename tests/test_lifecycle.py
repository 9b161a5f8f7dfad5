"""The connection lifecycle core, driven with no sockets: admission, refusals, takeover, ends,
and (gamesync.v2) resume admission and the seat's fate at a session's end.

``Pair`` is the harness (as h11's ``ConnectionPair``): a client end that speaks the wire
protocol's bytes, and a server end made of a :class:`Lifecycle` and ``World``, a fake of the
server's state that carries out the core's actions the way ``gameserver.server`` does. A JOIN
goes in as bytes and the refusal comes back as bytes, so the test sees what a client would.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import hypothesis.strategies as st
import jwt
import pytest
from hypothesis import given, settings

from gameserver.auth import ALGORITHM, AuthError, Identity, TokenVerifier, mint_token
from gameserver.game import Game
from gameserver.games.arena import Arena
from gameserver.lifecycle import (
    ADMISSION,
    HOLDS,
    RESUME_ADMISSION,
    SEAT_FATES,
    TRANSITIONS,
    Action,
    Close,
    ConnectionLost,
    CreateRoom,
    Detach,
    Draining,
    EndCause,
    Evict,
    JoinReceived,
    JoinTimedOut,
    Lifecycle,
    LifecycleError,
    PeerError,
    Reattach,
    Refuse,
    ReplaceAttached,
    ResumeReceived,
    RoomInfo,
    Seat,
    SeatFate,
    SeatTaken,
    Send,
    SessionEnded,
    State,
    Step,
    Unseat,
)
from gameserver.load import SMOOTH_WINDOWS, LoadMonitor
from gameserver.reasons import (
    CLOSE_CODES,
    RESUME_REFUSALS,
    ErrorKind,
    Refusal,
    Violation,
    flood_error,
    join_twice_error,
    not_join_error,
    pre_join_flood_error,
    text_frame_error,
)
from gameserver.resume import ResumeClaims, ResumeKey, ResumeRefusal, ResumeTokenError
from shared.errors import RemoteProtocolError
from shared.messages import Close as CloseMessage
from shared.messages import Error, Join, Resume, parse_client_message, parse_server_message
from shared.protocol import DRAINING_MESSAGE, CloseCode
from tests.views_game import ViewsGame

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
RESUME_KEY = ResumeKey(b"r" * 32)


class Other(Arena):
    name = "other"


class Tiny(Arena):
    name = "tiny"
    max_players = 2


GAMES: dict[str, type[Game]] = {"arena": Arena, "other": Other, "tiny": Tiny, "views": ViewsGame}


# ---------------------------------------------------------------- the harness


@attrs.define
class FakeRoom:
    name: str
    game: type[Game]
    private: bool = False
    closing: bool = False
    max_players: int = 8
    seats: dict[int, str] = attrs.Factory(dict)  # number -> player id
    next_number: int = 1
    epoch: bytes = b"e" * 8
    generations: dict[int, int] = attrs.Factory(dict)  # number -> token generation
    held: set[int] = attrs.Factory(set)  # seats held for a resume


@attrs.define
class World:
    """The server's state as the core reads it (a ``lifecycle.Directory``), and a driver that
    carries out the core's actions on it, as ``GameServer._connection`` does."""

    draining: bool = False
    monitor: LoadMonitor = attrs.Factory(lambda: LoadMonitor(0.85, 2.0))
    max_rooms: int = 100
    creation_tokens: int = 1000
    rooms: dict[str, FakeRoom] = attrs.Factory(dict)
    evicted: list[str] = attrs.Factory(list)
    #: (room, number) of the old connections a RESUME replaced
    replaced: list[tuple[str, int]] = attrs.Factory(list)
    hold_seconds: float = 20.0
    _ids: int = 0

    # ---- lifecycle.Directory
    @property
    def overloaded(self) -> bool:
        return self.monitor.overloaded

    def room_count(self) -> int:
        return len(self.rooms)

    def game(self, name: str) -> type[Game] | None:
        return GAMES.get(name or "arena")

    def room(self, name: str) -> RoomInfo | None:
        r = self.rooms.get(name)
        if r is None:
            return None
        return RoomInfo(r.name, r.game.name, r.private, r.closing, len(r.seats), r.max_players)

    def seat_of(self, player_id: str) -> str | None:
        for room in self.rooms.values():
            if player_id in room.seats.values():
                return room.name
        return None

    def new_private_room_id(self) -> str:
        self._ids += 1
        return "~" + f"{self._ids:022d}"

    def may_create_room(self, creator: str) -> bool:
        if self.creation_tokens <= 0:
            return False
        self.creation_tokens -= 1
        return True

    def seat_hold(self, room: str) -> float:
        return self.hold_seconds if room in self.rooms else 0.0

    def resume_check(self, room: str, claims: ResumeClaims) -> ResumeRefusal | None:
        r = self.rooms.get(room)
        if r is None or r.closing or r.epoch != claims.epoch or claims.number not in r.seats:
            return ResumeRefusal.SEAT_LOST
        if r.generations[claims.number] != claims.generation:
            return ResumeRefusal.TOKEN_USED
        return None

    def seat_attached(self, room: str, number: int) -> bool:
        r = self.rooms.get(room)
        return r is not None and number in r.seats and number not in r.held

    # ---- what a client holds
    def token(self, room: str, number: int) -> str:
        """The resume token of the seat's latest JOINED."""
        r = self.rooms[room]
        return RESUME_KEY.mint(room, r.epoch, number, r.generations[number])

    # ---- the driver
    def add_room(self, name: str, game: type[Game] = Arena, **kw: Any) -> FakeRoom:
        room = self.rooms[name] = FakeRoom(name, game, **kw)
        return room

    def seat(self, room: str, player_id: str) -> int:
        r = self.rooms[room]
        assert len(r.seats) < r.max_players, "the core seated a player in a full room"
        number = r.next_number
        r.next_number += 1
        r.seats[number] = player_id
        r.generations[number] = 1  # its JOINED's token
        return number

    def _unseat(self, room: FakeRoom, number: int) -> None:
        room.seats.pop(number, None)
        room.held.discard(number)
        room.generations.pop(number, None)

    def carry_out(self, life: Lifecycle, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, CreateRoom):
                assert action.name not in self.rooms
                self.add_room(action.name, action.game, private=action.private)
            elif isinstance(action, Evict):
                self.evicted.append(action.player_id)
                for room in self.rooms.values():
                    for n in [n for n, p in room.seats.items() if p == action.player_id]:
                        self._unseat(room, n)
            elif isinstance(action, Seat):
                number = self.seat(action.room, action.identity.player_id)
                assert life.receive(SeatTaken(number)) == []
            elif isinstance(action, ReplaceAttached):
                r = self.rooms[action.room]
                assert action.number in r.seats and action.number not in r.held
                self.replaced.append((action.room, action.number))
            elif isinstance(action, Reattach):
                r = self.rooms[action.room]
                assert action.number in r.seats
                r.generations[action.number] += 1  # rotated: the token used is dead now
                r.held.discard(action.number)
                assert life.receive(SeatTaken(action.number)) == []
            elif isinstance(action, Detach):
                r = self.rooms[action.room]
                assert action.number in r.seats
                r.held.add(action.number)
            elif isinstance(action, Unseat):
                self._unseat(self.rooms[action.room], action.number)

    def seats(self) -> dict[str, dict[int, str]]:
        return {name: dict(room.seats) for name, room in self.rooms.items()}


@attrs.frozen
class Outcome:
    life: Lifecycle
    actions: list[Action]
    #: what the client read: the ERROR/CLOSE message, then the close frame's code
    messages: list[Any]
    close_code: int | None

    @property
    def refusal(self) -> Refusal | None:
        return self.life.refused.refusal if self.life.refused else None

    @property
    def step(self) -> Step | None:
        return self.life.refused.step if self.life.refused else None


class Pair:
    """A client and the server core with a fake network between them: bytes in, bytes out."""

    def __init__(self, world: World | None = None, verifier: TokenVerifier | None = None) -> None:
        self.world = world if world is not None else World()
        self.verifier = verifier if verifier is not None else TokenVerifier([SECRET])

    def token(self, player: str = "alice", **kw: Any) -> str:
        return mint_token(SECRET, player, **kw)

    def _verify(self, token: str) -> Identity | AuthError:
        try:
            return self.verifier.verify(token)
        except AuthError as exc:
            return exc

    def connect(self, version: int = 2) -> Lifecycle:
        life = Lifecycle(self.world, version)
        assert life.state is State.AWAITING_JOIN
        return life

    def deliver(self, life: Lifecycle, event: Any) -> Outcome:
        """Feed ``event``; carry out the actions; return what reached the client."""
        actions = life.receive(event)
        self.world.carry_out(life, actions)
        messages: list[Any] = []
        code = None
        for action in actions:
            if isinstance(action, Send):
                messages.append(parse_server_message(action.data))
            elif isinstance(action, Close):
                code = action.code
        return Outcome(life, actions, messages, code)

    def join(
        self,
        room: str = "lobby",
        game: str = "",
        token: str | None = None,
        private: bool = False,
        player: str = "alice",
        version: int = 2,
    ) -> Outcome:
        """A client sends JOIN (as bytes) on a fresh connection."""
        if token is None:
            token = self.token(player)
        data = Join(room, game, "", token, private=private, version=version).to_bytes()
        msg = parse_client_message(data)  # the server end reads the bytes
        assert isinstance(msg, Join)
        return self.deliver(self.connect(version), JoinReceived(msg, self._verify(msg.token)))

    def resume(self, room: str, token: str, have_tick: int = 7, version: int = 2) -> Outcome:
        """A client sends RESUME (as bytes) on a fresh v2 connection."""
        msg = parse_client_message(Resume(room, token, have_tick, version).to_bytes(), version=2)
        assert isinstance(msg, Resume)
        verdict: ResumeClaims | ResumeTokenError
        try:
            verdict = RESUME_KEY.parse(msg.room, msg.token)
        except ResumeTokenError as exc:
            verdict = exc
        return self.deliver(self.connect(), ResumeReceived(msg, verdict))

    def end(self, life: Lifecycle, cause: EndCause, code: int = 1001) -> Outcome:
        return self.deliver(life, SessionEnded(code, cause.value, False, cause=cause))


def refused_with(out: Outcome, refusal: Refusal, step: Step | None = None) -> None:
    """Refused: one Refuse, then ERROR and the close, with the refusal's code; nothing else."""
    assert out.life.state is State.CLOSED
    assert out.refusal is refusal
    if step is not None:
        assert out.step is step
    code = CLOSE_CODES[refusal]
    assert [type(a) for a in out.actions] == [Refuse, Send, Close]
    [message] = out.messages
    assert isinstance(message, Error) and message.code == code
    assert out.close_code == code


def admitted(out: Outcome) -> None:
    assert out.life.state is State.SEATED, out.life.refused
    assert out.life.refused is None
    assert isinstance(out.actions[-1], Seat)
    assert not out.messages and out.close_code is None


# ---------------------------------------------------------------- admitted


def test_a_join_walks_the_states_and_seats_the_player() -> None:
    pair = Pair()
    out = pair.join("lobby")
    admitted(out)
    assert [type(a) for a in out.actions] == [CreateRoom, Seat]
    assert out.life.history == [
        State.AWAITING_JOIN,
        State.JOIN_RECEIVED,
        State.AUTHENTICATED,
        State.ADMITTED,
        State.SEATED,
    ]
    assert out.life.identity is not None and out.life.identity.player_id == "alice"
    assert out.life.room == "lobby" and out.life.number == 1
    assert pair.world.seats() == {"lobby": {1: "alice"}}
    # a second player joins the existing room: no room is created
    out = pair.join("lobby", player="bob")
    admitted(out)
    assert [type(a) for a in out.actions] == [Seat]
    assert pair.world.seats() == {"lobby": {1: "alice", 2: "bob"}}


def test_private_rooms_are_created_with_a_fresh_id_and_joined_by_it() -> None:
    pair = Pair()
    out = pair.join("ignored", private=True)
    admitted(out)
    create = out.actions[0]
    assert isinstance(create, CreateRoom) and create.private
    assert create.name.startswith("~") and len(create.name) == 23
    admitted(pair.join(create.name, player="bob"))
    assert pair.world.seats() == {create.name: {1: "alice", 2: "bob"}}


def test_a_seated_session_ends_with_close_or_error_by_who_decided() -> None:
    pair = Pair()
    out = pair.join()
    # the server's own decision: CLOSE before the close frame
    end = pair.deliver(
        out.life, SessionEnded(CloseCode.REPLACED, "replaced", cause=EndCause.REPLACED)
    )
    assert out.life.state is State.CLOSED
    assert end.messages == [CloseMessage(CloseCode.REPLACED, "replaced")]
    assert end.close_code == CloseCode.REPLACED
    # the peer's mistake: ERROR
    life = pair.join(player="bob").life
    end = pair.deliver(
        life, SessionEnded(CloseCode.POLICY_VIOLATION, "flood", cause=EndCause.FLOOD)
    )
    assert end.messages == [Error(CloseCode.POLICY_VIOLATION, "flood")]
    # nothing can reach the peer (too slow, left, connection lost): the close frame only
    life = pair.join(player="carol").life
    end = pair.deliver(
        life,
        SessionEnded(CloseCode.TOO_SLOW, "too slow", send_message=False, cause=EndCause.TOO_SLOW),
    )
    assert end.messages == []
    assert end.actions == [Detach("lobby", 3), Close(CloseCode.TOO_SLOW, "too slow")]


# ---------------------------------------------------------------- every refusal kind


def _bad_claims_token() -> str:
    return jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 600, "rooms": "lobby"}, SECRET, ALGORITHM
    )


def _setup_wrong_game(pair: Pair) -> dict[str, Any]:
    pair.world.add_room("lobby", Other)
    return {}


def _setup_closed(pair: Pair) -> dict[str, Any]:
    pair.world.add_room("lobby", closing=True)
    return {}


def _setup_full(pair: Pair) -> dict[str, Any]:
    room = pair.world.add_room("lobby", max_players=2)
    room.seats = {1: "x", 2: "y"}
    return {}


def _setup_max_rooms(pair: Pair) -> dict[str, Any]:
    pair.world.max_rooms = 1
    pair.world.add_room("elsewhere")
    return {}


def _setup_rate(pair: Pair) -> dict[str, Any]:
    pair.world.creation_tokens = 0
    return {}


def _setup_draining(pair: Pair) -> dict[str, Any]:
    pair.world.draining = True
    return {}


def _setup_overloaded(pair: Pair) -> dict[str, Any]:
    pair.world.monitor.load = 2.0
    return {}


#: (refusal, step, setup, join keyword arguments) for every refusal the admission can give
ADMISSION_CASES: list[tuple[Refusal, Step, Any, dict[str, Any]]] = [
    (Refusal.AUTH_MISSING, Step.TOKEN, None, {"token": ""}),
    (Refusal.AUTH_MALFORMED, Step.TOKEN, None, {"token": "not-a-jwt"}),
    (
        Refusal.AUTH_BAD_SIGNATURE,
        Step.TOKEN,
        None,
        {"token": mint_token(OTHER_SECRET, "alice")},
    ),
    (
        Refusal.AUTH_EXPIRED,
        Step.TOKEN,
        None,
        {"token": mint_token(SECRET, "alice", ttl=60, now=time.time() - 3600)},
    ),
    (Refusal.AUTH_BAD_CLAIMS, Step.TOKEN, None, {"token": _bad_claims_token()}),
    (Refusal.DRAINING, Step.DRAINING, _setup_draining, {}),
    (Refusal.SERVER_FULL, Step.CPU_BUDGET, _setup_overloaded, {}),
    (Refusal.UNKNOWN_GAME, Step.GAME, None, {"game": "chess"}),
    (Refusal.FORBIDDEN_GAME, Step.GAME, None, {"token": mint_token(SECRET, "a", games=["x"])}),
    (Refusal.VERSION_REQUIRED, Step.GAME, None, {"game": "views", "version": 1}),
    (Refusal.FORBIDDEN_ROOM, Step.ROOM, None, {"token": mint_token(SECRET, "a", rooms=["x"])}),
    (Refusal.NO_SUCH_ROOM, Step.ROOM, None, {"room": "~" + "a" * 22}),
    (Refusal.BAD_ROOM, Step.ROOM, None, {"room": "no spaces!"}),
    (Refusal.WRONG_GAME, Step.ROOM, _setup_wrong_game, {}),
    (Refusal.SERVER_FULL, Step.ROOM, _setup_max_rooms, {}),
    (Refusal.ROOM_CREATE_RATE, Step.ROOM, _setup_rate, {}),
    (Refusal.ROOM_CLOSED, Step.ROOM_OPEN, _setup_closed, {}),
    (Refusal.ROOM_FULL, Step.CAPACITY, _setup_full, {}),
]


@pytest.mark.parametrize(
    ("refusal", "step", "setup", "kwargs"),
    ADMISSION_CASES,
    ids=[f"{r.value}-{s.value}" for r, s, _, _ in ADMISSION_CASES],
)
def test_every_admission_refusal(
    refusal: Refusal, step: Step, setup: Any, kwargs: dict[str, Any]
) -> None:
    pair = Pair()
    if setup is not None:
        setup(pair)
    before = pair.world.seats()
    out = pair.join(**kwargs)
    refused_with(out, refusal, step)
    # nothing was created, evicted or seated
    assert pair.world.seats() == before and not pair.world.evicted
    if step is not Step.TOKEN:
        assert out.life.identity is not None
        assert State.AUTHENTICATED in out.life.history


def test_a_private_room_needs_a_token_for_any_room() -> None:
    pair = Pair()
    out = pair.join(private=True, token=mint_token(SECRET, "a", rooms=["lobby"]))
    refused_with(out, Refusal.FORBIDDEN_ROOM, Step.ROOM)
    assert not pair.world.rooms


def test_a_private_id_names_only_a_private_room() -> None:
    pair = Pair()
    pair.world.add_room("~" + "b" * 22, private=False)  # not made by the server: not private
    refused_with(pair.join("~" + "b" * 22), Refusal.NO_SUCH_ROOM, Step.ROOM)


def test_join_timeout_and_drain_refuse_a_connection_that_never_joined() -> None:
    pair = Pair()
    out = pair.deliver(pair.connect(), JoinTimedOut())
    refused_with(out, Refusal.JOIN_TIMEOUT)
    out = pair.deliver(pair.connect(), Draining())
    refused_with(out, Refusal.DRAINING)
    assert out.messages == [Error(CloseCode.DRAINING, DRAINING_MESSAGE)]


def test_every_refusal_with_a_close_code_is_covered() -> None:
    covered = {r for r, _, _, _ in ADMISSION_CASES} | {Refusal.JOIN_TIMEOUT, Refusal.DRAINING}
    covered |= {r for r, _, _ in RESUME_CASES}
    # a cluster node's own refusal (gameserver.cluster): not the lifecycle's
    covered.add(Refusal.DIRECTORY_UNAVAILABLE)
    assert covered == set(CLOSE_CODES)
    assert {r for r, _, _ in RESUME_CASES} == RESUME_REFUSALS
    # and every refusal in the table has a close code and a step that may give it
    for row in (*ADMISSION, *RESUME_ADMISSION):
        assert row.refusals <= set(CLOSE_CODES)
    for refusal, step, _, _ in ADMISSION_CASES:
        assert refusal in next(row for row in ADMISSION if row.step is step).refusals


def test_metrics_labels_keep_their_names() -> None:
    labels = {r.value for r in Refusal} | {k.value for k in ErrorKind}
    assert {
        "auth_missing",
        "auth_malformed",
        "auth_expired",
        "auth_bad_signature",
        "auth_bad_claims",
        "forbidden_room",
        "forbidden_game",
        "room_full",
        "server_full",
        "join_twice",
        "text_frame",
        "flood",
        "wrong_game",
        "room_closed",
        "room_create_rate",
        "no_such_room",
        "bad_room",
        "unknown_game",
        "join_timeout",
        "pre_join_flood",
        "not_join",
        "idle_timeout",
        "close_1002",
        "close_1007",
        "close_1009",
        "draining",
        "resume_bad_token",
        "resume_replayed",
        "seat_lost",
    } <= labels


# ---------------------------------------------------------------- the order of the checks


def test_the_first_failing_check_in_table_order_refuses() -> None:
    assert [row.step for row in ADMISSION] == [s for s in Step if s is not Step.SEAT]
    assert [row.step for row in RESUME_ADMISSION] == [Step.DRAINING, Step.TOKEN, Step.SEAT]
    pair = Pair()
    pair.world.draining = True
    pair.world.monitor.load = 2.0
    # a bad token is reported before the drain; the drain before the CPU budget
    refused_with(pair.join(token=""), Refusal.AUTH_MISSING, Step.TOKEN)
    refused_with(pair.join(game="chess"), Refusal.DRAINING, Step.DRAINING)
    pair.world.draining = False
    # the CPU budget before the game and the room
    refused_with(pair.join(game="chess", room="bad name"), Refusal.SERVER_FULL, Step.CPU_BUDGET)
    pair.world.monitor.load = 0.0
    refused_with(pair.join(game="chess", room="bad name"), Refusal.UNKNOWN_GAME, Step.GAME)
    # a closed room that is also full says "closed"
    room = pair.world.add_room("shut", closing=True, max_players=1)
    room.seats = {1: "x"}
    refused_with(pair.join("shut"), Refusal.ROOM_CLOSED, Step.ROOM_OPEN)


def test_a_refusing_check_must_list_its_refusal() -> None:
    """The table is the truth: a check that refuses with a kind its row does not list is our
    bug, and the core says so instead of sending it."""
    bad = attrs.evolve(ADMISSION[1], refusals=frozenset({Refusal.ROOM_FULL}))
    import gameserver.lifecycle as lifecycle

    original = lifecycle.ADMISSION
    lifecycle.ADMISSION = (ADMISSION[0], bad, *ADMISSION[2:])
    try:
        pair = Pair()
        pair.world.draining = True
        with pytest.raises(LifecycleError, match="DRAINING refused with DRAINING"):
            pair.join()
    finally:
        lifecycle.ADMISSION = original


# ---------------------------------------------------------------- one seat per player


def test_a_newer_join_evicts_the_older_seat_only_once_admitted() -> None:
    pair = Pair()
    admitted(pair.join("a"))
    # the same player again, into another room: the old seat goes, the new one is taken
    out = pair.join("b")
    admitted(out)
    assert [type(a) for a in out.actions] == [CreateRoom, Evict, Seat]
    assert pair.world.evicted == ["alice"]
    assert pair.world.seats() == {"a": {}, "b": {1: "alice"}}


def test_a_refused_join_never_evicts_the_older_seat() -> None:
    pair = Pair()
    admitted(pair.join("a"))
    full = pair.world.add_room("full", max_players=1)
    full.seats = {1: "someone"}
    pair.world.add_room("closed", closing=True)
    pair.world.add_room("otherworld", Other)
    for room in ("full", "closed", "otherworld", "bad name!"):
        out = pair.join(room)
        assert out.life.state is State.CLOSED
        assert not any(isinstance(a, (Evict, Seat, CreateRoom)) for a in out.actions)
    pair.world.monitor.load = 2.0
    refused_with(pair.join("a"), Refusal.SERVER_FULL, Step.CPU_BUDGET)
    assert pair.world.evicted == []
    assert pair.world.seats()["a"] == {1: "alice"}


def test_a_takeover_in_a_full_room_reuses_the_players_own_seat() -> None:
    pair = Pair()
    pair.world.add_room("duo", max_players=2)
    admitted(pair.join("duo", player="alice"))
    admitted(pair.join("duo", player="bob"))
    # full, but alice's own older seat is freed by the takeover
    out = pair.join("duo", player="alice")
    admitted(out)
    assert [type(a) for a in out.actions] == [Evict, Seat]
    assert sorted(pair.world.seats()["duo"].values()) == ["alice", "bob"]
    # carol finds it full
    refused_with(pair.join("duo", player="carol"), Refusal.ROOM_FULL, Step.CAPACITY)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2", "p3"]),
            st.sampled_from(["r1", "r2", "~" + "0" * 21 + "1", "bad room", ""]),
            st.sampled_from(["", "arena", "other", "tiny", "nope"]),
            st.booleans(),  # private
            st.booleans(),  # draining
            st.booleans(),  # overloaded
            st.integers(0, 2),  # room creation tokens
        ),
        max_size=25,
    )
)
def test_one_seat_per_player_and_no_refusal_costs_a_seat(joins: list[Any]) -> None:
    """Whatever the sequence of joins and server states: a player holds at most one seat; a
    refused JOIN changes no seat; an admitted one leaves the player seated exactly once."""
    world = World(max_rooms=3)
    for room in ("r1", "r2"):
        world.add_room(room, Tiny, max_players=2)
    pair = Pair(world)
    for player, room, game, private, draining, overloaded, tokens in joins:
        world.draining = draining
        world.monitor.load = 2.0 if overloaded else 0.0
        world.creation_tokens = tokens
        before = world.seats()
        out = pair.join(room, game, private=private, player=player)
        after = world.seats()
        if out.life.state is State.CLOSED:
            assert out.refusal is not None and out.close_code == CLOSE_CODES[out.refusal]
            assert {k: v for k, v in after.items() if k in before} == before
            assert not any(isinstance(a, (Evict, Seat, CreateRoom)) for a in out.actions)
        else:
            assert out.life.state is State.SEATED
            assert not draining and not overloaded
            holders = [n for seats in after.values() for n, p in seats.items() if p == player]
            assert holders == [out.life.number]
        for seats in after.values():
            assert len(seats.values()) == len(set(seats.values()))
        everyone = [p for seats in after.values() for p in seats.values()]
        assert len(everyone) == len(set(everyone))


# ---------------------------------------------------------------- CPU budget


class FakeCPU:
    """A process clock whose CPU use runs at ``busy`` cores' worth of wall time."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.busy = 0.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.cpu += seconds * self.busy

    def sample(self) -> tuple[float, float]:
        return self.cpu, self.wall


def test_cpu_budget_admission_control() -> None:
    cpu = FakeCPU()
    monitor = LoadMonitor(budget=0.85, window=2.0, sample=cpu.sample)
    pair = Pair(World(monitor=monitor))
    monitor.observe(*cpu.sample())
    admitted(pair.join(player="early"))
    # two windows at 1.5 cores: over budget, so every JOIN is refused with 4006
    cpu.busy = 1.5
    for _ in range(2):
        cpu.advance(2.0)
        monitor.observe(*cpu.sample())
    assert monitor.load == pytest.approx(1.5) and monitor.overloaded
    out = pair.join(player="late")
    refused_with(out, Refusal.SERVER_FULL, Step.CPU_BUDGET)
    assert out.messages[0].message.startswith("server full: its CPU budget")
    # the seated player keeps its seat
    assert pair.world.seats()["lobby"] == {1: "early"}
    # just under the budget: admitted again once the windows the projection averages are
    # under it (a single quiet window among overloaded ones is not enough)
    cpu.busy = 0.8
    for _ in range(SMOOTH_WINDOWS - 1):
        cpu.advance(2.0)
        monitor.observe(*cpu.sample())
        assert monitor.overloaded
        refused_with(pair.join(player="late"), Refusal.SERVER_FULL, Step.CPU_BUDGET)
    cpu.advance(2.0)
    monitor.observe(*cpu.sample())
    assert not monitor.overloaded
    admitted(pair.join(player="later"))


def test_load_monitor_ignores_samples_closer_than_half_a_window() -> None:
    cpu = FakeCPU()
    monitor = LoadMonitor(budget=0.5, window=2.0, sample=cpu.sample)
    monitor.observe(*cpu.sample())
    cpu.busy = 1.0
    cpu.advance(0.5)  # a mock clock that jumped ahead of real time, say
    monitor.observe(*cpu.sample())
    assert monitor.load == 0.0
    cpu.advance(0.5)
    monitor.observe(*cpu.sample())
    assert monitor.load == pytest.approx(1.0) and monitor.overloaded


def test_a_zero_cpu_budget_turns_the_check_off() -> None:
    monitor = LoadMonitor(budget=0.0, window=2.0)
    monitor.load = 50.0
    assert not monitor.overloaded
    admitted(Pair(World(monitor=monitor)).join())


# ---------------------------------------------------------------- peer errors and transitions


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (text_frame_error(), ErrorKind.TEXT_FRAME, 1003),
        (flood_error(), ErrorKind.FLOOD, 1008),
        (join_twice_error(), ErrorKind.JOIN_TWICE, 1002),
        (not_join_error(), ErrorKind.NOT_JOIN, 1002),
        (pre_join_flood_error(), ErrorKind.PRE_JOIN_FLOOD, 1008),
        (RemoteProtocolError("truncated"), ErrorKind.INVALID_PAYLOAD, 1007),
        (RemoteProtocolError("bad kind", 1002), ErrorKind.PROTOCOL, 1002),
        (RemoteProtocolError("too big", 1009), ErrorKind.TOO_BIG, 1009),
        (RemoteProtocolError("odd", 1011), ErrorKind.OTHER, 1011),
    ],
)
def test_peer_errors_are_typed_by_kind_not_text(
    exc: RemoteProtocolError, kind: ErrorKind, code: int
) -> None:
    assert ErrorKind.of(exc) is kind
    assert isinstance(exc, RemoteProtocolError) and exc.close_code == code
    pair = Pair()
    out = pair.deliver(pair.connect(), PeerError.from_exc(exc))
    assert out.life.state is State.CLOSED and out.life.refused is None
    assert out.messages == [Error(code, str(exc))] and out.close_code == code


def test_the_kind_survives_any_message_text() -> None:
    exc = Violation(ErrorKind.JOIN_TWICE, "someone reworded this", 1002)
    assert ErrorKind.of(exc) is ErrorKind.JOIN_TWICE


def test_a_lost_connection_sends_nothing() -> None:
    pair = Pair()
    out = pair.deliver(pair.connect(), ConnectionLost())
    assert out.life.state is State.CLOSED and out.actions == []
    life = pair.join().life
    # seated: nothing is sent; the seat is held as for a lost transport
    assert pair.deliver(life, ConnectionLost()).actions == [Detach("lobby", 1)]
    assert life.state is State.DETACHED


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([SeatTaken(1)], "can't handle event SeatTaken in state AWAITING_JOIN"),
        ([JoinTimedOut(), JoinTimedOut()], "can't handle event JoinTimedOut in state CLOSED"),
        (
            [ConnectionLost(), SessionEnded(1000, "", cause=EndCause.LEFT)],
            "event SessionEnded in state CLOSED",
        ),
    ],
)
def test_a_missing_transition_names_the_state_and_the_event(
    events: list[Any], message: str
) -> None:
    pair = Pair()
    life = pair.connect()
    with pytest.raises(LifecycleError, match=message):
        for event in events:
            life.receive(event)


def test_a_second_join_on_a_seated_connection_is_our_bug() -> None:
    """A JOIN after the seat is the peer's mistake (1002 join_twice, found by the room's read
    loop); feeding it to the core as a new JOIN would be the driver's bug."""
    pair = Pair()
    life = pair.join().life
    join = Join("lobby", token=pair.token())
    with pytest.raises(LifecycleError, match="JoinReceived in state SEATED"):
        life.receive(JoinReceived(join, TokenVerifier([SECRET]).verify(join.token)))


def test_the_transition_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(State)
    # the final states
    assert TRANSITIONS[State.CLOSED] == {} and TRANSITIONS[State.DETACHED] == {}
    assert TRANSITIONS[State.RESUMED] == {SeatTaken: State.SEATED}
    assert TRANSITIONS[State.AWAITING_JOIN][ResumeReceived] is State.RESUME_RECEIVED


# ---------------------------------------------------------------- resume (gamesync.v2)


def _seated(pair: Pair, player: str = "alice", room: str = "lobby") -> Outcome:
    out = pair.join(room, player=player)
    admitted(out)
    return out


def test_a_dropped_seat_is_held_and_a_resume_takes_it_back() -> None:
    pair = Pair()
    first = _seated(pair)
    number = first.life.number
    assert number is not None
    token = pair.world.token("lobby", number)
    end = pair.end(first.life, EndCause.TRANSPORT_LOST)
    assert first.life.state is State.DETACHED and first.life.fate is SeatFate.HOLD
    assert end.actions == [Detach("lobby", number), Close(1001, "transport_lost")]
    assert pair.world.rooms["lobby"].held == {number}
    out = pair.resume("lobby", token, have_tick=42)
    assert out.life.state is State.SEATED and out.life.refused is None
    assert out.actions == [Reattach("lobby", number, 42)]
    assert out.life.history == [
        State.AWAITING_JOIN,
        State.RESUME_RECEIVED,
        State.RESUMED,
        State.SEATED,
    ]
    assert out.life.room == "lobby" and out.life.number == number
    assert pair.world.rooms["lobby"].held == set()
    assert not out.messages and out.close_code is None


def test_a_resume_while_the_old_connection_is_attached_replaces_it() -> None:
    pair = Pair()
    first = _seated(pair)
    token = pair.world.token("lobby", 1)
    out = pair.resume("lobby", token)
    assert out.actions == [ReplaceAttached("lobby", 1), Reattach("lobby", 1, 7)]
    assert pair.world.replaced == [("lobby", 1)]
    # the old connection's end (the driver sets the cause) never touches the seat
    end = pair.end(first.life, EndCause.RESUMED_ELSEWHERE, CloseCode.REPLACED)
    assert first.life.fate is SeatFate.MOVED and first.life.state is State.CLOSED
    assert end.actions == [Close(CloseCode.REPLACED, "resumed_elsewhere")]
    assert pair.world.seats() == {"lobby": {1: "alice"}}


def _bad_token(pair: Pair) -> dict[str, Any]:
    return {"token": "AAAA" + pair.world.token("lobby", 1)[4:]}


def _garbage_token(pair: Pair) -> dict[str, Any]:
    return {"token": "not a token!"}


def _other_room(pair: Pair) -> dict[str, Any]:
    pair.world.add_room("elsewhere")
    return {"room": "elsewhere", "token": pair.world.token("lobby", 1)}


def _replayed(pair: Pair) -> dict[str, Any]:
    token = pair.world.token("lobby", 1)
    pair.world.rooms["lobby"].generations[1] += 1  # a newer JOINED went out since
    return {"token": token}


def _expired(pair: Pair) -> dict[str, Any]:
    token = pair.world.token("lobby", 1)
    del pair.world.rooms["lobby"].seats[1]  # the hold ran out: the seat left
    return {"token": token}


def _room_gone(pair: Pair) -> dict[str, Any]:
    token = pair.world.token("lobby", 1)
    del pair.world.rooms["lobby"]
    return {"token": token}


def _room_remade(pair: Pair) -> dict[str, Any]:
    token = pair.world.token("lobby", 1)
    pair.world.rooms["lobby"].epoch = b"f" * 8  # closed and made again under the same name
    return {"token": token}


def _resume_draining(pair: Pair) -> dict[str, Any]:
    pair.world.draining = True
    return {"token": "garbage, but the drain is reported first"}


#: (refusal, step, setup) for every refusal a RESUME can get
RESUME_CASES: list[tuple[Refusal, Step, Any]] = [
    (Refusal.DRAINING, Step.DRAINING, _resume_draining),
    (Refusal.RESUME_BAD_TOKEN, Step.TOKEN, _bad_token),
    (Refusal.RESUME_BAD_TOKEN, Step.TOKEN, _garbage_token),
    (Refusal.RESUME_BAD_TOKEN, Step.TOKEN, _other_room),
    (Refusal.RESUME_REPLAYED, Step.SEAT, _replayed),
    (Refusal.SEAT_LOST, Step.SEAT, _expired),
    (Refusal.SEAT_LOST, Step.SEAT, _room_gone),
    (Refusal.SEAT_LOST, Step.SEAT, _room_remade),
]


@pytest.mark.parametrize(
    ("refusal", "step", "setup"),
    RESUME_CASES,
    ids=[s.__name__.strip("_") for _, _, s in RESUME_CASES],
)
def test_every_resume_refusal(refusal: Refusal, step: Step, setup: Any) -> None:
    pair = Pair()
    pair.end(_seated(pair).life, EndCause.TRANSPORT_LOST)
    kwargs = setup(pair)
    before = pair.world.seats()
    out = pair.resume(kwargs.pop("room", "lobby"), **kwargs)
    refused_with(out, refusal, step)
    assert pair.world.seats() == before and not pair.world.replaced
    assert out.life.number is None
    code = {
        Refusal.DRAINING: 4012,
        Refusal.RESUME_BAD_TOKEN: 4001,
        Refusal.RESUME_REPLAYED: 4001,
        Refusal.SEAT_LOST: 4013,
    }[refusal]
    [message] = out.messages
    assert message.code == code == out.close_code
    expected = {
        Refusal.DRAINING: DRAINING_MESSAGE,
        Refusal.RESUME_BAD_TOKEN: "unauthorized: bad resume token",
        Refusal.RESUME_REPLAYED: "unauthorized: resume token already used",
        Refusal.SEAT_LOST: "seat lost: the seat is no longer held",
    }[refusal]
    assert message.message == expected


def test_a_resume_skips_the_cpu_budget_the_seat_is_paid_for() -> None:
    pair = Pair()
    pair.end(_seated(pair).life, EndCause.IDLE)
    pair.world.monitor.load = 2.0
    refused_with(pair.join(player="bob"), Refusal.SERVER_FULL, Step.CPU_BUDGET)
    out = pair.resume("lobby", pair.world.token("lobby", 1))
    assert out.life.state is State.SEATED


def test_racing_resumes_with_one_token_exactly_one_wins() -> None:
    pair = Pair()
    pair.end(_seated(pair).life, EndCause.TRANSPORT_LOST)
    token = pair.world.token("lobby", 1)
    outs = [pair.resume("lobby", token) for _ in range(3)]
    assert [o.life.state for o in outs] == [State.SEATED, State.CLOSED, State.CLOSED]
    assert [o.refusal for o in outs[1:]] == [Refusal.RESUME_REPLAYED] * 2
    # the winner's next token works; the loser's old one never again
    assert pair.resume("lobby", pair.world.token("lobby", 1)).life.state is State.SEATED
    refused_with(pair.resume("lobby", token), Refusal.RESUME_REPLAYED, Step.SEAT)


def test_a_fresh_join_of_the_same_player_evicts_its_held_seat() -> None:
    pair = Pair()
    pair.end(_seated(pair).life, EndCause.TRANSPORT_LOST)
    token = pair.world.token("lobby", 1)
    out = pair.join("lobby")
    assert [type(a) for a in out.actions] == [Evict, Seat]
    assert pair.world.seats() == {"lobby": {2: "alice"}}
    refused_with(pair.resume("lobby", token), Refusal.SEAT_LOST, Step.SEAT)


@pytest.mark.parametrize("cause", list(EndCause), ids=[c.value for c in EndCause])
def test_the_end_cause_decides_hold_or_unseat(cause: EndCause) -> None:
    assert set(SEAT_FATES) == set(EndCause)
    fate = SEAT_FATES[cause]
    # v2, a room that holds seats, not draining: the table decides
    pair = Pair()
    out = pair.end(_seated(pair).life, cause)
    assert out.life.fate is fate
    expected: list[Action] = {
        SeatFate.HOLD: [Detach("lobby", 1)],
        SeatFate.UNSEAT: [Unseat("lobby", 1)],
        SeatFate.MOVED: [],
    }[fate]
    assert out.actions[:-1] == expected and isinstance(out.actions[-1], Close)
    assert out.life.state is (State.DETACHED if fate is SeatFate.HOLD else State.CLOSED)
    # never held: on a v1 connection, with holds off, or while draining
    for setup in ("v1", "off", "draining"):
        pair = Pair()
        if setup == "v1":
            life = Lifecycle(pair.world, version=1)
            join = Join("lobby", token=pair.token(), version=1)
            pair.world.carry_out(life, life.receive(JoinReceived(join, pair._verify(join.token))))
        else:
            life = _seated(pair).life
            pair.world.hold_seconds = 0.0 if setup == "off" else 20.0
            pair.world.draining = setup == "draining"
        out = pair.end(life, cause)
        assert out.life.state is State.CLOSED, setup
        assert out.life.fate is (SeatFate.MOVED if fate is SeatFate.MOVED else SeatFate.UNSEAT)


def test_what_holds_a_seat() -> None:
    """Held: a connection lost without LEAVE, not by the server's decision. Not held: LEAVE,
    close 1000, the peer's errors, kick, room closed, drain/shutdown, crash, replaced."""
    assert HOLDS == {
        EndCause.PEER_CLOSED_OTHER,
        EndCause.TRANSPORT_LOST,
        EndCause.IDLE,
        EndCause.TOO_SLOW,
    }


def test_resume_is_v2_only_and_the_version_byte_must_match() -> None:
    pair = Pair()
    life = Lifecycle(pair.world, version=1)
    resume = Resume("lobby", "t", 1, 2)
    with pytest.raises(LifecycleError, match="version 2 message on a version 1 connection"):
        life.receive(ResumeReceived(resume, ResumeTokenError(ResumeRefusal.MALFORMED)))
    life = Lifecycle(pair.world, version=1)
    with pytest.raises(LifecycleError, match="RESUME on a version 1 connection"):
        life.receive(
            ResumeReceived(Resume("lobby", "t", 1, 1), ResumeTokenError(ResumeRefusal.MALFORMED))
        )
    life = Lifecycle(pair.world, version=2)
    join = Join("lobby", token=pair.token(), version=1)
    with pytest.raises(LifecycleError, match="version 1 message on a version 2 connection"):
        life.receive(JoinReceived(join, pair._verify(join.token)))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["join", "resume", "stale", "end"]),
            st.sampled_from(["p1", "p2"]),
            st.sampled_from(list(EndCause)),
            st.booleans(),  # draining
        ),
        max_size=30,
    )
)
def test_resume_never_duplicates_a_seat_and_stale_tokens_never_win(ops: list[Any]) -> None:
    """Whatever the sequence of joins, resumes (with the latest or an older token) and ends:
    a seat has at most one live connection, a player at most one seat, and a token older than
    the seat's latest never takes the seat."""
    world = World()
    pair = Pair(world)
    live: dict[int, Lifecycle] = {}  # seat number -> the lifecycle attached to it
    old_tokens: dict[int, list[str]] = {}
    for op, player, cause, draining in ops:
        world.draining = draining
        mine = [
            n
            for n, p in world.rooms.get("lobby", FakeRoom("lobby", Arena)).seats.items()
            if p == player
        ]
        if op == "join":
            out = pair.join("lobby", player=player)
            if out.life.state is State.SEATED:
                for n in mine:  # evicted
                    live.pop(n, None)
                assert out.life.number is not None
                live[out.life.number] = out.life
        elif op in ("resume", "stale") and mine:
            number = mine[0]
            if op == "resume":
                token = world.token("lobby", number)
            elif old_tokens.get(number):
                token = old_tokens[number][0]
            else:
                continue
            out = pair.resume("lobby", token)
            if op == "stale":
                assert out.life.state is State.CLOSED
                assert out.refusal in (Refusal.RESUME_REPLAYED, Refusal.DRAINING)
            elif out.life.state is State.SEATED:
                old_tokens.setdefault(number, []).append(token)
                previous = live.pop(number, None)
                if previous is not None:  # replaced: its end must not touch the seat
                    assert ("lobby", number) in world.replaced
                    pair.end(previous, EndCause.RESUMED_ELSEWHERE)
                live[number] = out.life
            else:
                assert draining and out.refusal is Refusal.DRAINING
        elif op == "end" and mine and mine[0] in live and cause is not EndCause.RESUMED_ELSEWHERE:
            if cause is EndCause.REPLACED:
                continue  # only ever the end of an evicted session
            pair.end(live.pop(mine[0]), cause)
        seats = world.seats().get("lobby", {})
        assert len(seats.values()) == len(set(seats.values())), "a player has two seats"
        room = world.rooms.get("lobby")
        if room is not None:
            for n in live:
                assert n in seats and n not in room.held, "a live connection on a held seat"
            for n in seats:
                assert (n in live) != (n in room.held), f"seat {n}: live xor held"
