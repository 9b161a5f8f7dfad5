"""The cluster's routing decision (gameserver.cluster.Router), pure: no trio, no directory.

A fake directory answers the router's calls from a dict of leases and a list of nodes, so
each rule of docs/directory.md ("Routing a join") is one case, and hypothesis drives random
cluster states through it to check the invariants: the router ends in a bounded number of
calls, never redirects to itself, never serves a room another node holds, and only creates
a room when the directory has none.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gameserver.auth import Identity
from gameserver.cluster import (
    PRIVATE_DRAWS,
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
    RouterError,
    join_request,
    redirect_actions,
    refusal_actions,
)
from gameserver.directory.types import (
    DirectoryRefused,
    DirectoryUnavailable,
    NodeRecord,
    Refused,
    RoomLease,
    RoomTaken,
)
from gameserver.lifecycle import Close, JoinReceived, Refuse, Send
from gameserver.reasons import Refusal
from shared.messages import Error, Join, Redirect, parse_server_message
from shared.protocol import CloseCode

ME = "b"
URLS = {"a": "wss://a:1/", "b": "wss://b:1/", "c": "wss://c:1/"}
PRIV = "~" + "p" * 22


def lease(room: str, node: str, epoch: int = 1, game: str = "pong") -> RoomLease:
    return RoomLease(room, node, epoch, 99.0, url=URLS[node], game=game)


@attrs.define
class FakeDirectory:
    """Answers the router's calls: leases by room, the node pick_node returns, failures."""

    leases: dict[str, RoomLease] = attrs.Factory(dict)
    pick: str | None = "b"
    down: bool = False
    rate_spent: bool = False
    #: rooms that another node creates between our lookup and our create (a race)
    racing: dict[str, str] = attrs.Factory(dict)
    epoch: int = 10

    def answer(self, call: object) -> Answer:
        if self.down:
            return DirectoryUnavailable("down")
        if isinstance(call, Lookup):
            return self.leases.get(call.room)
        if isinstance(call, PickNode):
            if self.pick is None:
                return DirectoryRefused(Refused.NO_NODE)
            return NodeRecord(self.pick, URLS[self.pick])
        assert isinstance(call, CreateHere | CreateFor)
        node = ME if isinstance(call, CreateHere) else call.node.node_id
        winner = self.racing.pop(call.room, None)
        if winner is not None:
            self.leases[call.room] = lease(call.room, winner)
        if call.room in self.leases:
            return RoomTaken(self.leases[call.room])
        if self.rate_spent:
            return DirectoryRefused(Refused.CREATE_RATE)
        self.epoch += 1
        made = lease(call.room, node, self.epoch, call.game)
        self.leases[call.room] = made
        return made


def ids() -> Callable[[], str]:
    n = iter(range(1000))
    return lambda: f"~{next(n):022d}"


def run(
    request: RouteRequest,
    directory: FakeDirectory,
    hosted: bool = False,
    may_host: bool = True,
    new_id: Callable[[], str] | None = None,
) -> tuple[Router, Local | RedirectTo | RefuseJoin]:
    router = Router(request, ME, may_host=may_host, new_private_id=new_id or ids())
    step = router.start(hosted)
    for _ in range(20):
        if isinstance(step, Local | RedirectTo | RefuseJoin):
            return router, step
        step = router.answer(directory.answer(step))
    raise AssertionError(f"no outcome after 20 calls: {router.calls}")


def join(room: str = "lobby", game: str = "pong") -> RouteRequest:
    return RouteRequest(Kind.JOIN, room, "alice", game)


def resume(room: str = "lobby") -> RouteRequest:
    return RouteRequest(Kind.RESUME, room)


# ---------------------------------------------------------------- the rules, one by one


def test_a_room_hosted_here_needs_no_directory() -> None:
    router, out = run(join(), FakeDirectory(down=True), hosted=True)
    assert out == Local("lobby")
    assert router.calls == []


def test_a_room_on_another_node_is_redirected_there() -> None:
    d = FakeDirectory({"lobby": lease("lobby", "a")})
    router, out = run(join(), d)
    assert out == RedirectTo(URLS["a"], "lobby")
    assert router.calls == [Lookup("lobby")]


def test_a_lease_naming_this_node_is_adopted() -> None:
    mine = lease("lobby", ME)
    _, out = run(join(), FakeDirectory({"lobby": mine}))
    assert out == Local("lobby", mine)


def test_an_absent_room_placed_here_is_created_here() -> None:
    d = FakeDirectory(pick=ME)
    router, out = run(join(), d)
    assert isinstance(out, Local) and out.lease is not None and out.lease.node_id == ME
    assert router.calls == [
        Lookup("lobby"),
        PickNode("lobby"),
        CreateHere("lobby", "alice", "pong"),
    ]


def test_an_absent_room_placed_elsewhere_is_created_for_that_node_and_redirected() -> None:
    d = FakeDirectory(pick="c")
    router, out = run(join(), d)
    assert out == RedirectTo(URLS["c"], "lobby")
    assert d.leases["lobby"].node_id == "c"
    assert router.calls[-1] == CreateFor("lobby", NodeRecord("c", URLS["c"]), "alice", "pong")


@pytest.mark.parametrize("winner", ["a", ME])
def test_a_creation_race_goes_to_the_winner(winner: str) -> None:
    d = FakeDirectory(pick=ME, racing={"lobby": winner})
    _, out = run(join(), d)
    if winner == ME:
        assert out == Local("lobby", d.leases["lobby"])
    else:
        assert out == RedirectTo(URLS[winner], "lobby")


def test_a_race_lost_while_creating_for_another_node_redirects_to_the_winner() -> None:
    d = FakeDirectory(pick="c", racing={"lobby": "a"})
    _, out = run(join(), d)
    assert out == RedirectTo(URLS["a"], "lobby")


def test_no_live_node_creates_here() -> None:
    _, out = run(join(), FakeDirectory(pick=None))
    assert isinstance(out, Local) and out.lease is not None


def test_the_directory_down_refuses_with_4016_unless_the_room_is_here() -> None:
    _, out = run(join(), FakeDirectory(down=True))
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.DIRECTORY_UNAVAILABLE
    assert out.refusal.code == CloseCode.DIRECTORY_UNAVAILABLE
    _, out = run(join(), FakeDirectory(down=True), hosted=True)
    assert out == Local("lobby")


def test_the_cluster_wide_creation_limit_is_the_create_rate_refusal() -> None:
    _, out = run(join(), FakeDirectory(rate_spent=True))
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.ROOM_CREATE_RATE
    assert out.refusal.code == CloseCode.POLICY_VIOLATION
    # placing it on another node spends the same tokens
    _, out = run(join(), FakeDirectory(pick="a", rate_spent=True))
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.ROOM_CREATE_RATE


def test_a_full_node_creates_nothing_but_still_redirects() -> None:
    _, out = run(join(), FakeDirectory(pick=ME), may_host=False)
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.SERVER_FULL
    _, out = run(join(), FakeDirectory({"lobby": lease("lobby", ME)}), may_host=False)
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.SERVER_FULL
    d = FakeDirectory(pick="a")
    _, out = run(join(), d, may_host=False)
    assert out == RedirectTo(URLS["a"], "lobby")
    d = FakeDirectory({"lobby": lease("lobby", "a")})
    _, out = run(join(), d, may_host=False)
    assert out == RedirectTo(URLS["a"], "lobby")


def test_a_room_elsewhere_running_another_game_is_refused_here() -> None:
    d = FakeDirectory({"lobby": lease("lobby", "a", game="arena")})
    _, out = run(join(game="pong"), d)
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.WRONG_GAME


def test_private_rooms_are_created_here_drawing_again_on_a_collision() -> None:
    taken = "~" + "0" * 22
    d = FakeDirectory({taken: lease(taken, "a")}, pick="a")
    req = RouteRequest(Kind.JOIN, "", "alice", "pong", private=True)
    router, out = run(req, d, hosted=False)
    assert isinstance(out, Local) and out.room == "~" + "1".zfill(22)
    assert out.lease is not None and out.lease.node_id == ME
    assert [type(c) for c in router.calls] == [CreateHere, CreateHere]  # no lookup, no pick


def test_private_ids_are_drawn_a_bounded_number_of_times() -> None:
    req = RouteRequest(Kind.JOIN, "", "alice", "pong", private=True)
    d = FakeDirectory({PRIV: lease(PRIV, "a")})
    with pytest.raises(RouterError):
        run(req, d, new_id=lambda: PRIV)
    assert PRIVATE_DRAWS == 3


def test_a_private_id_not_here_is_looked_up_never_created() -> None:
    _, out = run(join(PRIV), FakeDirectory({PRIV: lease(PRIV, "a")}))
    assert out == RedirectTo(URLS["a"], PRIV)
    _, out = run(join(PRIV), FakeDirectory())
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.NO_SUCH_ROOM
    _, out = run(join(PRIV), FakeDirectory({PRIV: lease(PRIV, ME)}))  # left from a restart
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.NO_SUCH_ROOM


def test_a_resume_is_redirected_to_the_owner_or_its_seat_is_lost() -> None:
    _, out = run(resume(), FakeDirectory({"lobby": lease("lobby", "a")}))
    assert out == RedirectTo(URLS["a"], "lobby")
    _, out = run(resume(), FakeDirectory())
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.SEAT_LOST
    assert out.refusal.code == CloseCode.SEAT_LOST
    _, out = run(resume(), FakeDirectory({"lobby": lease("lobby", ME)}))
    assert isinstance(out, RefuseJoin) and out.refusal is Refusal.SEAT_LOST
    router, out = run(resume(), FakeDirectory(down=True), hosted=True)
    assert out == Local("lobby") and router.calls == []


def test_misuse_is_our_bug() -> None:
    router = Router(join(), ME)
    with pytest.raises(RouterError):
        router.answer(None)
    router.start(False)
    with pytest.raises(RouterError):
        router.start(False)
    with pytest.raises(RouterError):
        router.answer(NodeRecord("a", "x"))  # a lookup answered with a node


# ---------------------------------------------------------------- what reaches the router


def identity(rooms: tuple[str, ...] = ("*",)) -> Identity:
    return Identity("alice", "Alice", rooms, ("*",), False, 1e12)


def event(room: str = "lobby", private: bool = False) -> JoinReceived:
    return JoinReceived(Join(room, "pong", "", "t", private=private), identity())


def test_only_joins_admission_would_not_refuse_for_their_room_are_routed() -> None:
    assert join_request(event(), identity(), "pong") == join()
    assert join_request(event(PRIV), identity(), "pong") == join(PRIV)
    assert join_request(event("bad name!"), identity(), "pong") is None
    assert join_request(event("x" * 65), identity(), "pong") is None
    assert join_request(event("lobby"), identity(("other",)), "pong") is None
    private = join_request(event("", private=True), identity(), "pong")
    assert private == RouteRequest(Kind.JOIN, "", "alice", "pong", private=True)
    assert join_request(event("", private=True), identity(("lobby",)), "pong") is None


def test_redirect_actions_per_protocol_version() -> None:
    v2 = redirect_actions("wss://a:1/", "lobby", 2)
    assert isinstance(v2[0], Send) and v2[1] == Close(CloseCode.REDIRECT, "redirect")
    assert parse_server_message(v2[0].data, version=2) == Redirect("wss://a:1/", "lobby")
    v1 = redirect_actions("wss://a:1/", "lobby", 1)
    assert isinstance(v1[0], Send) and v1[1] == Close(CloseCode.REDIRECT, "redirect")
    assert parse_server_message(v1[0].data, version=1) == Error(
        CloseCode.REDIRECT, "room 'lobby' lives at wss://a:1/"
    )
    refused = refusal_actions(RefuseJoin(Refusal.DIRECTORY_UNAVAILABLE, "down"))
    assert isinstance(refused[0], Refuse)
    assert refused[-1] == Close(CloseCode.DIRECTORY_UNAVAILABLE, "down")


# ---------------------------------------------------------------- invariants, any cluster

nodes = st.sampled_from(["a", "b", "c"])
rooms = st.sampled_from(["lobby", "arena", PRIV])


@st.composite
def clusters(draw: st.DrawFn) -> FakeDirectory:
    names = draw(st.lists(rooms, unique=True, max_size=3))
    leases = {n: lease(n, draw(nodes)) for n in names}
    racing = draw(st.dictionaries(rooms, nodes, max_size=2))
    return FakeDirectory(
        leases,
        pick=draw(st.none() | nodes),
        down=draw(st.booleans()),
        rate_spent=draw(st.booleans()),
        racing=racing,
    )


@settings(max_examples=400, deadline=None)
@given(
    clusters(),
    rooms,
    st.sampled_from(list(Kind)),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_routing_invariants(
    d: FakeDirectory, room: str, kind: Kind, private: bool, hosted: bool, may_host: bool
) -> None:
    private = private and kind is Kind.JOIN
    request = RouteRequest(kind, "" if private else room, "alice", "pong", private=private)
    before = dict(d.leases)
    router, out = run(request, d, hosted=hosted, may_host=may_host)
    assert len(router.calls) <= 4 + PRIVATE_DRAWS
    if hosted and not private:
        assert out == Local(room) and router.calls == []  # never a directory call
        return
    if isinstance(out, RedirectTo):
        owner = d.leases[out.room]
        assert owner.node_id != ME and out.url == URLS[owner.node_id]  # never to itself
    if isinstance(out, Local):
        assert out.lease is not None and out.lease.node_id == ME
        assert d.leases[out.room] == out.lease  # it holds what the directory says
        assert may_host
    created = [c for c in router.calls if isinstance(c, CreateHere | CreateFor)]
    for call in created:
        assert private or before.get(call.room) is None  # only ever creates absent rooms
    if kind is Kind.RESUME or request.private_id:
        assert not created  # a RESUME or a private id never creates a room
    if d.down and router.calls:  # (a full node refuses a private room without asking)
        assert isinstance(out, RefuseJoin) and out.refusal is Refusal.DIRECTORY_UNAVAILABLE
