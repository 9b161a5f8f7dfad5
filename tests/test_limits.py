"""Token buckets and the per-player message limiter, driven with explicit clock values."""

from __future__ import annotations

import math

import pytest

from gameserver.limits import MessageLimiter, TokenBucket
from gameserver.server import ServerConfig

# ---------------------------------------------------------------- TokenBucket


def test_bucket_starts_full_and_allows_a_burst_of_its_capacity() -> None:
    bucket = TokenBucket(rate=10.0, capacity=5.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(7)] == [True] * 5 + [False] * 2


def test_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, capacity=5.0, now=0.0)
    for _ in range(5):
        assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert not bucket.take(0.05)  # half a token so far
    assert bucket.take(0.1)  # one token after 1/rate seconds
    assert not bucket.take(0.1)
    # three tokens after 0.3 s more
    assert [bucket.take(0.4) for _ in range(4)] == [True, True, True, False]


def test_bucket_never_holds_more_than_its_capacity() -> None:
    bucket = TokenBucket(rate=10.0, capacity=3.0, now=0.0)
    assert bucket.take(0.0)
    # an hour idle: still only `capacity` tokens
    assert [bucket.take(3600.0) for _ in range(5)] == [True, True, True, False, False]


def test_refused_takes_do_not_spend_tokens() -> None:
    bucket = TokenBucket(rate=4.0, capacity=1.0, now=0.0)
    assert bucket.take(0.0)
    # knocking repeatedly does not delay the next token
    for i in range(1, 10):
        assert not bucket.take(i * 0.02)
    assert bucket.take(0.25)


def test_fractional_capacity_rounds_down() -> None:
    bucket = TokenBucket(rate=1.0, capacity=2.5, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("rate", [1.0, 20.0, 60.0, 333.0])
def test_bucket_long_run_rate_is_exact(rate: float) -> None:
    """Knocking far more often than the rate, the accepted count is burst + rate * time."""
    capacity = 5.0
    bucket = TokenBucket(rate, capacity, now=0.0)
    seconds = 30
    steps = int(seconds * rate * 4)
    ok = sum(bucket.take(i * seconds / steps) for i in range(steps + 1))
    assert abs(ok - (capacity + rate * seconds)) <= 1


# ---------------------------------------------------------------- MessageLimiter


def _limiter(
    rate: float = 60.0,
    burst: float = 30.0,
    event_rate: float = 5.0,
    event_burst: float = 10.0,
    allowance: float = 5.0,
    now: float = 0.0,
) -> MessageLimiter:
    return MessageLimiter(rate, burst, event_rate, event_burst, allowance, now)


def test_burst_then_drops_then_abuse_at_one_instant() -> None:
    lim = _limiter(rate=60.0, burst=30.0, allowance=5.0)
    verdicts = [lim.take_input(0.0) for _ in range(30 + 300 + 1)]
    # the burst is accepted, then `allowance * rate` drops are tolerated, then: close
    assert verdicts[:30] == [True] * 30
    assert verdicts[30:330] == [False] * 300
    assert verdicts[330] is None
    assert lim.dropped == 301


def test_abuse_bucket_holds_at_least_one_drop() -> None:
    lim = _limiter(rate=10.0, burst=1.0, allowance=0.0)
    assert [lim.take_input(0.0) for _ in range(3)] == [True, False, None]


def test_default_config_matches_the_documented_bucket_math() -> None:
    cfg = ServerConfig()
    lim = MessageLimiter(
        cfg.input_rate,
        cfg.input_burst,
        cfg.event_rate,
        cfg.event_burst,
        cfg.abuse_allowance,
        0.0,
    )
    assert lim.inputs.capacity == cfg.input_burst
    assert lim.abuse.capacity == cfg.abuse_allowance * cfg.input_rate
    assert lim.abuse.rate == cfg.input_rate


@pytest.mark.parametrize(
    ("rate", "burst", "allowance", "tick_rate"),
    # the guarantee needs a burst of more than two ticks' worth of inputs (the server reads a
    # player's inputs once per tick, so they arrive in clumps); see the test after this one
    [(60.0, 30.0, 5.0, 20), (20.0, 5.0, 1.0, 20), (10.0, 3.0, 1.0, 30), (120.0, 10.0, 2.0, 60)],
)
def test_a_client_at_twice_the_rate_is_never_closed(
    rate: float, burst: float, allowance: float, tick_rate: int
) -> None:
    """Inputs arriving at exactly 2x the rate for ten minutes, read once per tick as the
    server does: about half are dropped, and the connection is never judged abusive."""
    lim = _limiter(rate=rate, burst=burst, allowance=allowance)
    per_tick = 2 * rate / tick_rate
    owed = 0.0
    sent = accepted = 0
    for n in range(1, 600 * tick_rate + 1):
        now = n / tick_rate
        owed += per_tick
        while owed >= 1.0:
            owed -= 1.0
            verdict = lim.take_input(now)
            assert verdict is not None, f"closed after {now:.2f} s at 2x the rate"
            sent += 1
            accepted += verdict
    seconds = 600
    # the first tick's refill is lost to the full bucket
    assert burst + rate * seconds - rate / tick_rate - 2 <= accepted <= burst + rate * seconds
    assert lim.dropped == sent - accepted
    assert lim.dropped >= rate * seconds - burst - 2


def test_a_burst_under_one_ticks_worth_drops_inputs_of_a_compliant_client() -> None:
    """Why ``input_burst`` must exceed ``input_rate / tick_rate``: inputs are read once per tick,
    so a client sending at exactly the rate delivers rate/tick_rate inputs per read, and a bucket
    smaller than that loses refill at its cap every tick."""
    rate, tick_rate = 60.0, 20
    per_tick = int(rate / tick_rate)  # 3
    small = _limiter(rate=rate, burst=2.0, allowance=5.0)
    ample = _limiter(rate=rate, burst=30.0, allowance=5.0)
    dropped = {id(small): 0, id(ample): 0}
    for n in range(1, 10 * tick_rate + 1):
        for lim in (small, ample):
            for _ in range(per_tick):
                verdict = lim.take_input(n / tick_rate)
                assert verdict is not None
                dropped[id(lim)] += not verdict
    assert dropped[id(ample)] == 0
    assert dropped[id(small)] == 10 * tick_rate  # one input in three lost, every tick


def test_a_client_evenly_spaced_at_twice_the_rate_is_never_closed() -> None:
    lim = _limiter(rate=60.0, burst=30.0, allowance=5.0)
    spacing = 1 / 120
    verdicts = [lim.take_input(i * spacing) for i in range(120 * 600)]
    assert None not in verdicts
    assert abs(sum(v is True for v in verdicts) - (30 + 60 * 600)) <= 2


@pytest.mark.parametrize("factor", [2.5, 3.0, 10.0])
def test_a_client_well_over_twice_the_rate_is_closed_in_predictable_time(factor: float) -> None:
    """Over 2x, the abuse bucket drains at (factor - 2) * rate per second once the burst is
    gone: it empties after about allowance / (factor - 2) seconds."""
    rate, burst, allowance = 60.0, 30.0, 5.0
    lim = _limiter(rate=rate, burst=burst, allowance=allowance)
    spacing = 1 / (factor * rate)
    closed_at = None
    for i in range(10**7):
        now = i * spacing
        if lim.take_input(now) is None:
            closed_at = now
            break
    assert closed_at is not None
    # the burst buys burst / ((factor - 1) * rate) seconds of extra drops before the
    # steady state; bound the close time from both sides
    expected = allowance / (factor - 2)
    slack = burst / ((factor - 1) * rate) + 2 * spacing
    assert expected - 2 * spacing <= closed_at <= expected + slack


def test_abuse_allowance_refills_after_the_client_calms_down() -> None:
    lim = _limiter(rate=20.0, burst=5.0, allowance=1.0)  # 20 drops tolerated
    verdicts = [lim.take_input(0.0) for _ in range(5 + 19)]
    assert verdicts.count(False) == 19
    # one more drop is still tolerated, but the bucket is then empty
    assert lim.take_input(0.0) is False
    # a quiet second refills the allowance (and the burst)
    again = [lim.take_input(1.0) for _ in range(5 + 20 + 1)]
    assert again == [True] * 5 + [False] * 20 + [None]


def test_events_have_their_own_rate_but_share_the_abuse_allowance() -> None:
    lim = _limiter(rate=60.0, burst=30.0, event_rate=5.0, event_burst=10.0, allowance=1.0)
    assert [lim.take_event(0.0) for _ in range(10)] == [True] * 10
    assert lim.take_event(0.0) is False  # event burst spent
    # inputs are untouched by the event bucket
    assert all(lim.take_input(0.0) for _ in range(30))
    # event and input drops drain the same abuse bucket (60 drops at 60/s * 1 s)
    drops = [lim.take_event(0.0) for _ in range(29)] + [lim.take_input(0.0) for _ in range(30)]
    assert drops == [False] * 59
    assert lim.take_input(0.0) is None
    assert lim.dropped == 61


def test_events_at_twice_their_rate_are_never_closed() -> None:
    lim = _limiter(event_rate=5.0, event_burst=10.0, allowance=5.0)
    verdicts = [lim.take_event(i / 10) for i in range(10 * 600)]
    assert None not in verdicts
    assert abs(sum(v is True for v in verdicts) - (10 + 5 * 600)) <= 2


def test_verdicts_are_exactly_true_false_or_none() -> None:
    lim = _limiter(rate=1.0, burst=1.0, allowance=1.0)
    assert lim.take_input(0.0) is True
    assert lim.take_input(0.0) is False
    assert lim.take_input(0.0) is None
    assert math.isclose(lim.abuse.tokens, 0.0, abs_tol=1e-9)


def test_bucket_reports_full_once_refilled() -> None:
    bucket = TokenBucket(rate=1.0, capacity=2.0, now=0.0)
    assert bucket.full(0.0)
    assert bucket.take(0.0)
    assert not bucket.full(0.5)
    assert bucket.full(1.0)
