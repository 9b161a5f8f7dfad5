"""The dashboard's pure parts: sessions, CSRF, the watcher cap, cookies, the activity feed,
and the feed's watchers on MockClock (a watcher that never reads is closed; one that reads
slowly skips to the newest snapshot instead of queueing)."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from gameserver.activity import MAX_TEXT, ActivityKind, ActivityLog
from gameserver.admin import MetricsTLSError, metrics_endpoint_tls
from gameserver.dashboard_auth import (
    SessionStore,
    WatcherGate,
    cookie_value,
    session_cookie,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_idle_and_at_their_lifetime() -> None:
    clock = Clock()
    store = SessionStore(clock, idle=60, lifetime=300)
    sid, session = store.create("ops")
    assert store.get(sid) is session and session.admin == "ops"
    clock.now = 59
    assert store.get(sid) is session  # use restarts the idle timer
    clock.now = 118
    assert store.get(sid) is session
    clock.now = 178.5
    assert store.get(sid) is None  # idle for 60.5 s
    sid, _ = store.create("ops")
    for t in range(1, 6):
        clock.now = 178.5 + 59 * t
        alive = store.get(sid)
        assert (alive is not None) == (59 * t < 300)
    assert store.get(None) is None and store.get("") is None and store.get("nope") is None


def test_the_store_is_bounded_and_drops_the_oldest() -> None:
    store = SessionStore(Clock(), max_sessions=3)
    sids = [store.create(f"a{i}")[0] for i in range(5)]
    assert len(store) == 3
    assert [store.get(s) is not None for s in sids] == [False, False, True, True, True]
    assert len(set(sids)) == 5 and all(len(s) >= 40 for s in sids)


def test_csrf_must_match_its_own_session() -> None:
    store = SessionStore(Clock())
    a, sa = store.create("a")
    _, sb = store.create("b")
    assert sa.csrf != sb.csrf and sa.csrf != a
    assert store.check_csrf(a, sa.csrf) is sa
    assert store.check_csrf(a, sb.csrf) is None  # another session's token
    assert store.check_csrf(a, None) is None and store.check_csrf(a, "") is None
    assert store.check_csrf(None, sa.csrf) is None
    assert store.check_csrf(a, "é" * 10) is None  # non-ASCII never raises
    store.remove(a)
    assert store.check_csrf(a, sa.csrf) is None


def test_the_watcher_gate_caps() -> None:
    gate = WatcherGate(2)
    assert gate.try_enter() and gate.try_enter() and not gate.try_enter()
    gate.leave()
    assert gate.try_enter() and gate.count == 2
    gate.leave()
    gate.leave()
    with pytest.raises(RuntimeError):
        gate.leave()


def test_cookies() -> None:
    assert cookie_value("a=1; gs_dashboard=xyz; b=2") == "xyz"
    assert cookie_value("gs_dashboardx=1") is None and cookie_value("") is None
    assert cookie_value('gs_dashboard="q"') == "q"
    c = session_cookie("abc", secure=False)
    assert c == "gs_dashboard=abc; Path=/dashboard; HttpOnly; SameSite=Strict"
    assert session_cookie("", secure=True, max_age=0).endswith("Secure; Max-Age=0")


def test_activity_is_bounded_and_coalesces_refusal_floods() -> None:
    t = [100.0]
    log = ActivityLog(5, clock=lambda: t[0])
    log.record(ActivityKind.JOIN, "r", "p1")
    for _ in range(1000):
        log.refused("connection_limit")
    assert len(log) == 2
    newest = log.recent()[0]
    assert (newest.kind, newest.count, newest.reason) == (
        ActivityKind.REFUSED,
        1000,
        "connection_limit",
    )
    log.ended("r", "p1", 1000, "left")
    log.ended("r", "p2", 4010, "kicked")
    assert [a.kind for a in log.recent(2)] == [ActivityKind.DISCONNECT, ActivityKind.LEAVE]
    for i in range(10):
        log.record(ActivityKind.JOIN, "r" * 500, f"p{i}")
    assert len(log) == 5 and log.capacity == 5
    assert [a.player for a in log.recent()] == ["p9", "p8", "p7", "p6", "p5"]
    assert len(log.recent()[0].room) == MAX_TEXT
    assert log.recent()[0].to_json()["kind"] == "join"
    with pytest.raises(ValueError):
        ActivityLog(0)


def test_metrics_tls_choice(caplog: pytest.LogCaptureFixture) -> None:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert metrics_endpoint_tls(True, "0.0.0.0", ctx) is True
    with pytest.raises(MetricsTLSError):
        metrics_endpoint_tls(True, "127.0.0.1", None)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert metrics_endpoint_tls(False, host, ctx) is False
    assert not caplog.records
    for host in ("0.0.0.0", "", "10.1.2.3", "metrics.example"):
        caplog.clear()
        assert metrics_endpoint_tls(False, host, ctx) is False
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "clear text" in caplog.records[0].getMessage()


# ------------------------------------------------------------------ watchers on MockClock


class _Rooms:
    def __init__(self) -> None:
        self.rooms: dict[str, object] = {}
        self.activity = ActivityLog()


class _Server:
    def __init__(self) -> None:
        from gameserver.stats import ServerStats

        self.stats = ServerStats()
        self.rooms = _Rooms()
        self.draining = False


class _Stream(trio.abc.Stream):
    """A peer that takes each send after ``delay`` seconds (math.inf: never)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sent: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.sleep(self.delay) if self.delay < math.inf else await trio.sleep_forever()
        self.sent.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    async def aclose(self) -> None:
        return None


def _dashboard() -> object:
    from gameserver.dashboard import Dashboard

    server = _Server()
    return Dashboard(
        server,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        secure=False,
        send_timeout=5.0,
        sample_process=lambda: (1.0, 1000),
    )


async def test_a_watcher_that_never_reads_is_closed_and_one_that_is_slow_skips(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from gameserver.dashboard import Dashboard

    dash = _dashboard()
    assert isinstance(dash, Dashboard)
    sid, _ = dash.sessions.create("ops")
    never, slow, fast = _Stream(math.inf), _Stream(3.0), _Stream(0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(dash.run)
        for stream in (never, slow, fast):
            assert dash.watchers.try_enter()
            nursery.start_soon(dash._watch, stream, sid)
        await trio.sleep(30.5)
        assert dash.stalled == 1 and dash.watchers.count == 2  # "never" closed after 5 s
        assert never.sent == []
        assert 29 <= len(fast.sent) <= 32  # one a second
        # the slow one took one every ~3 s: it skipped, it did not queue
        assert 9 <= len(slow.sent) <= 11
        assert dash.version >= 30
        dash.sessions.remove(sid)  # signing out ends every watcher at the next snapshot
        await trio.sleep(4)
        assert dash.watchers.count == 0
        nursery.cancel_scope.cancel()


async def test_an_unwatched_feed_samples_every_idle_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from gameserver.dashboard import Dashboard

    dash = _dashboard()
    assert isinstance(dash, Dashboard)
    async with trio.open_nursery() as nursery:
        await nursery.start(dash.run)
        start = dash.version
        await trio.sleep(20.5)
        assert dash.version - start == 4  # one every 5 s, not one a second
        assert dash.watchers.try_enter()  # someone watches: one a second again
        await trio.sleep(5)
        assert dash.version - start == 9
        nursery.cancel_scope.cancel()
