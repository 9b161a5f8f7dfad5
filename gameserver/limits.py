"""Per-player rate limits: token buckets (pure, no I/O)."""

from __future__ import annotations


class TokenBucket:
    """Holds up to ``capacity`` tokens, refilled at ``rate`` per second; ``take`` spends one."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (nothing to remember about its owner)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.capacity

    def take(self, now: float) -> bool:
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.stamp = now
        if tokens > self.capacity:
            tokens = self.capacity
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


class MessageLimiter:
    """Inputs, events and RESYNCs per player: the excess is dropped; sustained abuse is
    reported.

    A dropped message spends a token of the *abuse* bucket (``allowance`` seconds' worth of the
    input rate, refilled at the input rate), so a client that sends up to twice the allowed rate
    only loses its excess, while one that floods well beyond it empties the bucket and is told
    to go (``take_*`` returns None).
    """

    __slots__ = ("abuse", "dropped", "events", "inputs", "resyncs")

    def __init__(
        self,
        input_rate: float,
        input_burst: float,
        event_rate: float,
        event_burst: float,
        allowance: float,
        now: float,
        resync_rate: float = 0.5,
        resync_burst: float = 2.0,
    ) -> None:
        self.inputs = TokenBucket(input_rate, input_burst, now)
        self.events = TokenBucket(event_rate, event_burst, now)
        self.resyncs = TokenBucket(resync_rate, resync_burst, now)
        self.abuse = TokenBucket(input_rate, max(1.0, allowance * input_rate), now)
        self.dropped = 0

    def _verdict(self, ok: bool, now: float) -> bool | None:
        if ok:
            return True
        self.dropped += 1
        return False if self.abuse.take(now) else None

    def take_input(self, now: float) -> bool | None:
        """True: accept. False: drop. None: sustained abuse, close the connection."""
        if self.inputs.take(now):
            return True
        return self._verdict(False, now)

    def take_event(self, now: float) -> bool | None:
        return self._verdict(self.events.take(now), now)

    def take_resync(self, now: float) -> bool | None:
        """A RESYNC: True: serve it. False: ignore it. None: a flood, close the connection."""
        return self._verdict(self.resyncs.take(now), now)
