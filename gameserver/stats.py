"""Server counters: plain mutable state, read by tests, logs and (later) the metrics endpoint."""

from __future__ import annotations

from collections import Counter

import attrs

from gameserver.logging_setup import PeerLog
from gameserver.metrics import TickHistogram


@attrs.define
class ServerStats:
    connections_open: int = 0
    connections_accepted: int = 0
    #: handshakes or joins refused, by reason (e.g. "subprotocol", "room_full")
    refused: Counter[str] = attrs.Factory(Counter)
    #: peers closed for bad input, by kind (e.g. "text_frame", "1007")
    protocol_errors: Counter[str] = attrs.Factory(Counter)
    rooms_created: int = 0
    rooms_disposed: int = 0
    players: int = 0
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    ticks: int = 0
    ticks_late: int = 0
    ticks_skipped: int = 0
    #: deltas a player's outbound path could not take (the player gets a snapshot instead)
    deltas_skipped: int = 0
    snapshot_resyncs: int = 0
    inputs_dropped: int = 0
    #: player EVENT messages dropped because their room's event queue was full
    events_dropped: int = 0
    slow_disconnects: int = 0
    #: JOINs and RESUMEs sent to the node that owns their room (a cluster: REDIRECT, 4015)
    redirects: int = 0
    #: a cluster node's directory: 1 while its store answers (or without a cluster), else 0
    directory_reachable: int = 1
    #: a cluster node's room leases held now
    directory_leases: int = 0
    #: joins refused because the server's CPU budget was in use
    overload_refusals: int = 0
    #: answers to plain HTTP requests on the WSS port (the web demo), by status ("200", "404")
    http_responses: Counter[str] = attrs.Factory(Counter)
    #: RESUMEs admitted (a held, or still attached, seat taken back)
    resumes: int = 0
    #: RESUMEs refused, by reason ("seat_lost", "resume_replayed", ...; also in ``refused``)
    resume_refusals: Counter[str] = attrs.Factory(Counter)
    #: seats held for a resume now
    seats_held: int = 0
    #: held seats whose hold ran out (the player left)
    seats_expired: int = 0
    #: RESYNCs answered with a snapshot, and those ignored (over the rate limit)
    resyncs: int = 0
    resyncs_limited: int = 0
    #: records, patches and (view rooms) cell chunks the rooms encoded, snapshots included:
    #: ``gameserver_encode_calls_total``; per tick = its increase / the increase of ``ticks``
    encode_calls: int = 0
    tick_histogram: TickHistogram = attrs.Factory(TickHistogram)
    #: the rate-limited log of peers' bad input (refusals, protocol errors), shared by every
    #: place that counts one, so that a flood of it cannot fill a disk
    peer_log: PeerLog = attrs.field(factory=PeerLog, eq=False, repr=False)
