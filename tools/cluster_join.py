"""The join client of tools/bench_cluster.py (trio): one timed join through any node,
following REDIRECTs as the SDKs do, and the measurement of a route."""

from __future__ import annotations

import contextlib
import random
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clusterlib as cl
from cluster_procs import CLK_TCK, Tokens, cpu_ticks

import bench as bm

MAX_HOPS = 3  # as the SDKs follow
WARMUP_JOINS = 10
TICK_PERIOD = 1 / 20  # arena, the default game


def run_trio(fn: Callable[..., Any], *args: Any) -> Any:
    """``trio.run(fn, *args)``, with our own errors taken out of trio's exception groups."""
    import trio

    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        for kind in (cl.Unsupported, JoinRefused):
            found: BaseException | None = group.subgroup(kind)
            while isinstance(found, BaseExceptionGroup):
                found = found.exceptions[0]
            if found is not None:
                raise found from None
        raise


# ------------------------------------------------------------------ the join client (trio)
class JoinRefused(Exception):
    pass


async def _connect(nursery: Any, url: str, ctx: ssl.SSLContext) -> Any:
    import trio_websocket

    from shared.protocol import SUBPROTOCOL_V2

    return await trio_websocket.connect_websocket_url(
        nursery, url, ssl_context=ctx, subprotocols=[SUBPROTOCOL_V2]
    )


async def timed_join(
    nursery: Any, url: str, room: str, token: str, ctx: ssl.SSLContext, *, stay: bool = False
) -> tuple[cl.JoinSample, Any]:
    """Join ``room`` through ``url``, following REDIRECTs; the connections live in
    ``nursery``. Returns the sample and, if ``stay``, the open connection (else None: it sent
    LEAVE and closes in the background). Raises JoinRefused on an ERROR or too many hops."""
    from shared.messages import Error, Join, Leave, Redirect, parse_server_message
    from shared.protocol import Kind

    t0 = time.perf_counter()
    hops = 0
    while True:
        ws = await _connect(nursery, url, ctx)
        await ws.send_message(Join(room, token=token, version=2).to_bytes())  # gamesync.v2
        reached = time.perf_counter()
        data = await ws.get_message()
        kind = data[0] if data else -1
        if kind == Kind.JOINED:
            done = time.perf_counter()
            sample = cl.JoinSample(
                round((done - t0) * 1000, 3), hops, url, round((reached - t0) * 1000, 3)
            )
            if stay:
                return sample, ws
            await ws.send_message(Leave().to_bytes())
            nursery.start_soon(ws.aclose)
            return sample, None
        msg = parse_server_message(bytes(data)) if kind in (Kind.REDIRECT, Kind.ERROR) else None
        nursery.start_soon(ws.aclose)  # the next hop does not wait for this close
        if isinstance(msg, Redirect):
            hops += 1
            if hops > MAX_HOPS:
                raise JoinRefused(f"more than {MAX_HOPS} redirects (last to {msg.url})")
            url = msg.url
            continue
        if isinstance(msg, Error):
            raise JoinRefused(f"ERROR {msg.code} {msg.message!r} from {url}")
        raise JoinRefused(f"unexpected first message kind {kind} from {url}")


async def one_join(url: str, room: str, token: str, ctx: ssl.SSLContext) -> cl.JoinSample:
    """A join that leaves at once; returns when its connections are closed."""
    import trio

    async with trio.open_nursery() as nursery:
        sample, _ = await timed_join(nursery, url, room, token, ctx)
    return sample


@dataclass
class RouteRun:
    route: cl.Route
    dial: str  # the URL each measured join dials
    room: str


async def measure_routes(
    holder_url: str,
    room: str,
    runs_for: Any,
    tokens: Tokens,
    ctx: ssl.SSLContext,
    pids: list[int],
    redis_pids: list[int],
    joins: int,
    tag: str,
) -> list[dict[str, Any]]:
    """Seat the holder, then measure each route ``runs_for(owner_url)`` returns."""
    import trio

    rows = []
    async with trio.open_nursery() as nursery:
        sample, holder = await timed_join(
            nursery, holder_url, room, tokens(f"{tag}-holder"), ctx, stay=True
        )
        bm.log(f"  room {room!r} lives at {sample.url} (the holder took {sample.hops} redirects)")

        async def drain() -> None:  # keep the holder reading (pings, deltas)
            with contextlib.suppress(Exception):
                while True:
                    await holder.get_message()

        nursery.start_soon(drain)
        for run in runs_for(sample.url):
            rows.append(await _measure(run, tokens, ctx, pids, redis_pids, joins, tag))
        await holder.aclose()
        nursery.cancel_scope.cancel()
    return rows


async def _measure(
    run: RouteRun,
    tokens: Tokens,
    ctx: ssl.SSLContext,
    pids: list[int],
    redis_pids: list[int],
    joins: int,
    tag: str,
) -> dict[str, Any]:
    import trio

    name = run.route.value
    warm = time.monotonic()
    for i in range(WARMUP_JOINS):
        sample = await one_join(run.dial, run.room, tokens(f"{tag}-{name}-warm{i}"), ctx)
        cl.check_redirected(run.route, sample.hops, run.dial, run.room)
    per_join = (time.monotonic() - warm) / WARMUP_JOINS
    toks = [tokens(f"{tag}-{name}-{i}") for i in range(joins)]
    rng = random.Random(f"{tag}-{name}")
    # a join completes in the room's next tick: start each at a random phase of the tick, as
    # real joins arrive, or back-to-back joins would lock onto the tick and all wait ~1 period
    phases = [rng.uniform(0.0, TICK_PERIOD) for _ in range(joins)]
    # idle: the same rooms open, no joins, about as long as the joins will take
    idle_s = max(1.0, min(10.0, (per_join + TICK_PERIOD / 2) * joins))
    t0, s0, r0 = time.monotonic(), cpu_ticks(pids), cpu_ticks(redis_pids)
    await trio.sleep(idle_s)
    t1, s1, r1 = time.monotonic(), cpu_ticks(pids), cpu_ticks(redis_pids)
    c1 = time.process_time()
    samples = []
    for tok, phase in zip(toks, phases, strict=True):
        await trio.sleep(phase)
        sample = await one_join(run.dial, run.room, tok, ctx)
        samples.append(sample)
    t2, s2, r2 = time.monotonic(), cpu_ticks(pids), cpu_ticks(redis_pids)
    client_cpu = time.process_time() - c1
    row: dict[str, Any] = {"route": name, "label": run.route.label, "dialled": run.dial}
    row.update(cl.summarize_joins(samples))
    row["server_cpu_ms"] = cl.cpu_ms_per_join(s2 - s1, t2 - t1, s1 - s0, t1 - t0, joins, CLK_TCK)
    row["redis_cpu_ms"] = (
        cl.cpu_ms_per_join(r2 - r1, t2 - t1, r1 - r0, t1 - t0, joins, CLK_TCK)
        if redis_pids
        else None
    )
    row["client_cpu_ms"] = round(1000 * client_cpu / joins, 3)
    row["wall_s"] = round(t2 - t1, 2)
    bm.log(
        f"  {name}: at the owner p50 {row['reach_ms_p50']} ms, JOINED p50 {row['ms_p50']} ms, "
        f"p99 {row['ms_p99']} ms, hops {row['hops']}, "
        f"server CPU {row['server_cpu_ms']} ms/join"
    )
    return row
