"""The Python SDK in a cluster: REDIRECT followed (at most 3 per join), the owner's URL
remembered for resumes and forgotten when it cannot be reached, 4016 retried, ERROR 4015 on
v1. The pure Route, the session core, then ``open_game_client`` against in-memory nodes on the
autojump clock. The real-WSS version is tests/integration/test_sdk_redirect.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import clients.connect
from clients.client import (
    MAX_REDIRECTS,
    ConnectError,
    EndCause,
    GameClient,
    Lost,
    LostReason,
    Redirected,
    RedirectError,
    RedirectProblem,
    Rejoined,
    ServerError,
    open_game_client,
)
from clients.reconnect import ConnectionEnd, Phase, Verdict, classify
from clients.routing import GotRedirect, Route, check_redirect_url
from shared.errors import RemoteProtocolError
from shared.messages import Join, Redirect, Resume
from shared.protocol import CloseCode
from tests.sdk_fakes import MemoryCluster, MemoryServer

A, B, C, D = "ws://a.test/", "ws://b.test/", "ws://c.test/", "ws://d.test/"

# ================================================================ the route (pure)


def test_route_follows_up_to_three_redirects_per_join() -> None:
    route = Route(A)
    assert route.start() == A and route.current == A and MAX_REDIRECTS == 3
    assert route.redirect(B) == B and route.redirect(C) == C and route.redirect(D) == D
    assert (route.hops, route.total, route.current) == (3, 3, D)
    with pytest.raises(RedirectError) as caught:
        route.redirect(A)
    err = caught.value
    assert err.problem is RedirectProblem.TOO_MANY and err.code == CloseCode.REDIRECT
    assert (err.url, err.hops) == (A, 3) and "try again in a moment" in str(err)
    assert route.current == D and route.total == 3  # nothing followed
    assert route.start() == A and route.hops == 0  # the next join counts afresh


def test_route_remembers_the_owner_and_falls_back_to_the_entry() -> None:
    route = Route(A)
    route.start()
    route.seated()
    assert route.owner is None  # the entry hosts the room: nothing to remember
    assert route.unreachable() is None  # and nowhere else to go
    route.start()
    route.redirect(B)
    route.seated()
    assert route.owner == B and route.start() == B  # a RESUME goes straight there
    assert route.unreachable() == A  # the owner is gone: back to the entry, at once
    assert route.owner is None and route.current == A and route.hops == 0
    assert route.unreachable() is None  # the entry itself: the attempt fails
    route.redirect(C)
    assert route.unreachable() is None  # a redirect target that fails is no owner
    route.seated()
    route.forget_owner()
    assert route.start() == A


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ws://b.test:8443/", None),
        ("WS://B.test/x?y=1", None),
        ("wss://b.test/", RedirectProblem.SCHEME_CHANGED),
        ("http://b.test/", RedirectProblem.BAD_URL),
        ("ws:///nohost", RedirectProblem.BAD_URL),
        ("ws://b.test:99999/", RedirectProblem.BAD_URL),
        ("", RedirectProblem.BAD_URL),
        ("javascript:alert(1)", RedirectProblem.BAD_URL),
    ],
)
def test_redirect_urls(url: str, problem: RedirectProblem | None) -> None:
    assert check_redirect_url(url, A) is problem
    route = Route(A)
    if problem is None:
        assert route.redirect(url) == url
    else:
        with pytest.raises(RedirectError) as caught:
            route.redirect(url)
        assert caught.value.problem is problem and route.hops == 0


def test_tls_is_never_turned_off_by_a_redirect() -> None:
    assert check_redirect_url("ws://b.test/", "wss://a.test/") is RedirectProblem.SCHEME_CHANGED
    assert check_redirect_url("wss://b.test/", "wss://a.test/") is None


@given(st.lists(st.sampled_from(["redirect", "seated", "start", "unreachable"]), max_size=40))
def test_route_never_exceeds_the_hop_limit(steps: list[str]) -> None:
    route = Route(A)
    for i, step in enumerate(steps):
        if step == "redirect":
            try:
                route.redirect(f"ws://n{i}.test/")
            except RedirectError as exc:
                assert exc.problem is RedirectProblem.TOO_MANY
        else:
            getattr(route, step)()
        assert 0 <= route.hops <= MAX_REDIRECTS
        assert route.owner != A


@pytest.mark.parametrize(
    ("end", "seated", "attempt"),
    [
        (ConnectionEnd(EndCause.REDIRECT, 4015), Verdict.FINAL, Verdict.RETRY),
        (ConnectionEnd(EndCause.REFUSED, 4016), Verdict.FINAL, Verdict.RETRY),
        (ConnectionEnd(EndCause.CLOSED, 4015), Verdict.FINAL, Verdict.RETRY),
    ],
)
def test_redirect_failures_and_4016_are_retried(
    end: ConnectionEnd, seated: Verdict, attempt: Verdict
) -> None:
    assert classify(end, Phase.SEATED) is seated
    assert classify(end, Phase.RESUMING) is attempt
    assert classify(end, Phase.JOINING) is attempt


def test_session_raises_got_redirect_only_in_a_handshake() -> None:
    client = GameClient()
    client.begin_join(2)
    with pytest.raises(GotRedirect) as caught:
        client.handle_message(Redirect(B, "lobby").to_bytes())
    assert caught.value.redirect == Redirect(B, "lobby")
    assert client.failure is None and list(client.redirects_received) == [Redirect(B, "lobby")]
    other = GameClient()  # not joining: a REDIRECT out of place
    with pytest.raises(RemoteProtocolError) as bad:
        other.handle_message(Redirect(B, "lobby").to_bytes())
    assert bad.value.close_code == CloseCode.PROTOCOL_ERROR


def test_error_4015_on_v1_says_what_to_do() -> None:
    err = ServerError(4015, "room 'lobby' lives at wss://b.test:8443/")
    assert err.code == 4015 and err.message == "room 'lobby' lives at wss://b.test:8443/"
    assert "gamesync.v1" in str(err) and "cannot follow a redirect" in str(err)
    assert "cannot follow" not in str(ServerError(4005, "room full"))


# ================================================================ open_game_client, in memory


@pytest.fixture
async def cluster(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MemoryCluster]:
    c = MemoryCluster()
    monkeypatch.setattr(clients.connect, "_open_stream", c.open_stream)
    yield c


def _to(url: str) -> Any:
    return lambda first: url


def _joins(node: MemoryServer) -> list[Join]:
    return [m for _, m in node.received if isinstance(m, Join)]


def _resumes(node: MemoryServer) -> list[Resume]:
    return [m for _, m in node.received if isinstance(m, Resume)]


async def _events(c: GameClient) -> list[Any]:
    return list(c.iter_connection_events())


async def test_a_redirect_is_followed_with_the_same_join(
    nursery: trio.Nursery, cluster: MemoryCluster, autojump_clock: Any
) -> None:
    a = cluster.add(nursery, "a.test", redirect=_to(B))
    b = cluster.add(nursery, "b.test")
    tokens = iter(["tok-1", "tok-2"])
    async with open_game_client(A, "lobby", name="ann", token=lambda: next(tokens)) as c:
        assert (c.url, c.entry_url, c.owner_url) == (B, A, B)
        assert c.redirects == 1 and c.stats.redirects == 1
        assert await _events(c) == [Redirected(B, "lobby", 1)]
        assert _joins(a) == _joins(b) == [Join("lobby", "", "ann", "tok-1", 2)]  # the same token
        assert a.offered == b.offered == [("gamesync.v3", "gamesync.v2", "gamesync.v1")]
        assert a.close_codes == [CloseCode.REDIRECT]
        await c.wait_for_tick(c.tick + 2)
        assert [s.room for s in b.seats] == ["lobby"] and not a.rooms and not a.seats
    assert c.failure is None and cluster.dialled == ["a.test", "b.test"]


async def test_three_redirects_are_followed_a_fourth_is_an_error(
    nursery: trio.Nursery, cluster: MemoryCluster, autojump_clock: Any
) -> None:
    cluster.add(nursery, "a.test", redirect=_to(B))
    cluster.add(nursery, "b.test", redirect=_to(C))
    cluster.add(nursery, "c.test", redirect=_to(D))
    d = cluster.add(nursery, "d.test")
    async with open_game_client(A, "r", name="ann") as c:
        assert c.url == D and c.redirects == 3 and _joins(d)
    # a node that keeps redirecting (the cluster disagrees where the room lives)
    cluster.add(nursery, "a.test", redirect=_to(A))
    cluster.dialled.clear()
    with pytest.raises(RedirectError) as caught:
        async with open_game_client(A, "r", name="ann"):
            pytest.fail("joined")  # pragma: no cover
    assert caught.value.problem is RedirectProblem.TOO_MANY and caught.value.hops == 3
    assert cluster.dialled == ["a.test"] * 4


async def test_a_redirect_to_another_scheme_is_refused(
    nursery: trio.Nursery, cluster: MemoryCluster, autojump_clock: Any
) -> None:
    cluster.add(nursery, "a.test", redirect=_to("wss://b.test/"))
    with pytest.raises(RedirectError) as caught:
        async with open_game_client(A, "r", name="ann"):
            pytest.fail("joined")  # pragma: no cover
    assert caught.value.problem is RedirectProblem.SCHEME_CHANGED
    assert cluster.dialled == ["a.test"]


async def test_an_unreachable_redirect_target_is_a_connect_error(
    nursery: trio.Nursery, cluster: MemoryCluster, autojump_clock: Any
) -> None:
    cluster.add(nursery, "a.test", redirect=_to("ws://gone.test/"))
    with pytest.raises(ConnectError, match=r"redirected there from ws://a") as caught:
        async with open_game_client(A, "r", name="ann"):
            pytest.fail("joined")  # pragma: no cover
    assert "could not connect to ws://gone.test/" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_resume_goes_to_the_owner(
    nursery: trio.Nursery, cluster: MemoryCluster, autojump_clock: Any
) -> None:
    a = cluster.add(nursery, "a.test", redirect=_to(B))
    b = cluster.add(nursery, "b.test")
    async with open_game_client(A, "r", name="ann", random=lambda: 0.5) as c:
        player = c.player
        cluster.dialled.clear()
        await b.cut(b.conn_of(player))
        await c.next_update()  # the catch-up, after the resume
        await c.wait_connected()
        assert cluster.dialled == ["b.test"] and c.player == player
        assert len(_resumes(b)) == 1 and not _resumes(a)
        assert c.url == B and c.redirects == 0 and c.stats.resumes == 1


async def test_the_owner_gone_the_client_goes_back_to_the_entry(
    nursery: trio.Nursery, cluster: MemoryCluster, autojump_clock: Any
) -> None:
    """The owner's node dies: the resume falls back to the entry URL at once, which sends it
    where the room lives now (c, which has no such seat: a fresh JOIN follows, there too)."""
    a = cluster.add(nursery, "a.test", redirect=_to(B))
    b = cluster.add(nursery, "b.test")
    c_node = cluster.add(nursery, "c.test")
    async with open_game_client(A, "r", name="ann", random=lambda: 0.5) as c:
        await c.wait_for_tick(c.tick + 1)
        assert c.owner_url == B
        list(c.iter_connection_events())
        a.redirect = _to(C)  # the directory now says c
        cluster.dialled.clear()
        del cluster.nodes["b.test"]  # b is gone: connections refused
        await b.cut(b.conn_of(c.player))
        while not isinstance(await c.next_connection_event(), Rejoined):
            pass
        await c.wait_connected()
        assert c.url == C and c.owner_url == C
        # the RESUME: b refuses the connection, so the same attempt dials a, which redirects
        # to c, which knows no such seat (4001); the fresh JOIN starts at the entry again (the
        # owner was forgotten), redirected to c
        assert cluster.dialled == ["b.test", "a.test", "c.test", "a.test", "c.test"]
        assert len(_resumes(a)) == 1 and len(_resumes(c_node)) == 1
        assert len(_joins(c_node)) == 1
        lost = [e for e in c.connection_events if isinstance(e, Lost)]
        assert lost and lost[0].reason is LostReason.RESUME_REFUSED
        assert c.stats.redirects == 3


async def test_directory_unavailable_on_the_first_join_is_retried(
    nursery: trio.Nursery, cluster: MemoryCluster, autojump_clock: Any
) -> None:
    refusals = iter([int(CloseCode.DIRECTORY_UNAVAILABLE)] * 2)
    a = cluster.add(nursery, "a.test", redirect=lambda first: next(refusals, None))
    start = trio.current_time()
    async with open_game_client(A, "r", name="ann", random=lambda: 0.5) as c:
        assert c.stats.directory_retries == 2 and len(_joins(a)) == 3
        assert c.failure is None and trio.current_time() - start < 1
    # without reconnects, or once connect_timeout is over: the refusal is the answer
    a.redirect = lambda first: int(CloseCode.DIRECTORY_UNAVAILABLE)
    with pytest.raises(ServerError) as caught:
        async with open_game_client(A, "r", name="ann", reconnect=False):
            pytest.fail("joined")  # pragma: no cover
    assert caught.value.code == CloseCode.DIRECTORY_UNAVAILABLE
    start = trio.current_time()
    with pytest.raises(ServerError):
        async with open_game_client(A, "r", name="ann", connect_timeout=3):
            pytest.fail("joined")  # pragma: no cover
    assert 2 < trio.current_time() - start <= 3


async def test_v1_gets_error_4015(
    nursery: trio.Nursery, cluster: MemoryCluster, autojump_clock: Any
) -> None:
    cluster.add(nursery, "a.test", versions=(1,), redirect=_to(B))
    cluster.add(nursery, "b.test")
    with pytest.raises(ServerError) as caught:
        async with open_game_client(A, "lobby", name="ann"):
            pytest.fail("joined")  # pragma: no cover
    assert caught.value.code == CloseCode.REDIRECT and "gamesync.v1" in str(caught.value)
    assert caught.value.message == f"room 'lobby' lives at {B}"
    assert cluster.dialled == ["a.test"]
