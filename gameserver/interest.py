"""Views (interest management, gamesync.v2): each player gets only the entities near it,
encoded once per cell, not once per player. Pure: no trio, no I/O.

A game opts in with an :class:`Interest` (``Game.interest``): a cell size, a view radius in
cells, and the position fields of its positioned entity types. Types not named there are
*global*: every view holds them (a scoreboard, a clock). Relevance is decided per cell (plus
the global types), never per entity: that is what lets the server encode a cell's changes once
per tick and send the same bytes to everyone who sees it, and add up per-cell checksums
instead of hashing once per player. Per-entity relevance (line of sight, stealth) is not
offered for that reason; a game widens or narrows a view by choosing cells
(``Game.view``: a team's cells, fog of war by cell).

:class:`Grid` keeps cell -> entities and entity -> cell, updated from the State's change
tracking at the end of each tick (only created, removed and changed entities whose position
bits changed move), never rebuilt. :class:`ViewEncoder` replaces ``State.encode_delta`` for a
view room: :meth:`ViewEncoder.tick` consumes the tracking and returns one DELTA per client,
assembled from per-cell chunks that are encoded lazily, at most once each per tick:

* ``stay_patches[c]``: patches of the entities that stayed in cell ``c`` and changed;
* ``stay_records[c]``: full records of the entities that stayed in ``c`` (for clients that
  newly see ``c``), and ``stay_ids[c]`` (for clients that stop seeing it);
* per entity its patch and its record (records are also kept across ticks until the entity
  changes); arrivals ``(entity, from-cell)``, departures ``(entity, to-cell or removed)`` and
  creations per cell; the global types' section.

A client with previous cells ``P`` and current cells ``V`` held entity ``e`` iff ``e``'s cell
was in ``P`` (or ``e`` is global). Its delta is, for ``c`` in ``V``: ``stay_patches[c]`` if
``c`` in ``P`` else ``stay_records[c]``; each arrival into ``c`` from ``p``: a patch if ``p``
in ``P`` else a record; each creation in ``c``: a record. For ``c`` in ``P``: ``stay_ids[c]``
if ``c`` not in ``V``; each departure from ``c`` to ``q`` not in ``V`` (or out of the world):
its id. So a client costs O(|V| + |P| + crossings of those cells), never O(visible entities).

Checksums (the view checksum, ``shared.state.view_checksum``): each entity's record CRC is
recomputed only when the entity changed since it was computed (on checksum ticks, or for a
snapshot); per-cell sums; a client's checksum is the global sum plus its cells' sums, mod
2**32.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import attrs

from shared import wire
from shared.errors import LocalProtocolError
from shared.protocol import Kind
from shared.schema import Entity, EntityType, FieldKind, Schema
from shared.state import State, encode_masked, encode_record

#: a cell of the world: ``(floor(x / cell_size), floor(y / cell_size))``
Cell = tuple[int, int]
#: a chunk of a DELTA section: how many items, and their bytes
Chunk = tuple[int, bytes]

_EMPTY: Chunk = (0, b"")
_KIND_DELTA = bytes((Kind.DELTA,))
_KIND_SNAPSHOT = bytes((Kind.SNAPSHOT,))
_MOD = 1 << 32
#: the one-byte varints
_SMALL = [bytes((i,)) for i in range(128)]
_NUMERIC = frozenset(
    {
        FieldKind.FLOAT,
        FieldKind.U8,
        FieldKind.U16,
        FieldKind.U32,
        FieldKind.I8,
        FieldKind.I16,
        FieldKind.I32,
        FieldKind.VARUINT,
        FieldKind.VARINT,
    }
)


def _positions(value: Mapping[EntityType, tuple[str, str]]) -> dict[EntityType, tuple[str, str]]:
    return {etype: (str(fx), str(fy)) for etype, (fx, fy) in dict(value).items()}


@attrs.frozen(eq=False)
class Interest:
    """A game's view settings: ``cell_size`` (world units per cell side), ``view_cells`` (the
    default view is the ``(2 * view_cells + 1)`` squared cells around the focus) and
    ``positions`` (entity type -> its x and y field names; numeric fields). Types not in
    ``positions`` are global: in every view."""

    cell_size: float
    view_cells: int = 1
    positions: Mapping[EntityType, tuple[str, str]] = attrs.field(
        factory=dict, converter=_positions
    )

    def __attrs_post_init__(self) -> None:
        size = self.cell_size
        if not (isinstance(size, int | float) and math.isfinite(size) and size > 0):
            raise LocalProtocolError(f"Interest.cell_size must be a number > 0, got {size!r}")
        if not (isinstance(self.view_cells, int) and 0 <= self.view_cells <= 64):
            raise LocalProtocolError(f"Interest.view_cells must be 0..64, got {self.view_cells!r}")
        for etype, names in self.positions.items():
            for name in names:
                i = etype.index.get(name)
                if i is None:
                    raise LocalProtocolError(f"{etype.name} has no position field {name!r}")
                if etype.types[i].kind not in _NUMERIC:
                    raise LocalProtocolError(f"{etype.name}.{name} is not a numeric field")

    def cell_of(self, x: float, y: float) -> Cell:
        """The cell of a position: ``(floor(x / cell_size), floor(y / cell_size))``."""
        size = self.cell_size
        return (math.floor(x / size), math.floor(y / size))

    def cells_around(self, focus: tuple[float, float] | None) -> list[Cell]:
        """The default view: the cells within ``view_cells`` of the focus's cell (a square);
        none for no focus (the player then sees only the global types)."""
        if focus is None:
            return []
        cx, cy = self.cell_of(focus[0], focus[1])
        r = self.view_cells
        return [(x, y) for x in range(cx - r, cx + r + 1) for y in range(cy - r, cy + r + 1)]

    def check(self, schema: Schema) -> None:
        """Raise LocalProtocolError unless every positioned type is one of ``schema``'s."""
        for etype in self.positions:
            tid = etype.type_id
            if not 0 <= tid < len(schema.types) or schema.types[tid] is not etype:
                raise LocalProtocolError(f"Interest names {etype!r}, which is not in the schema")


#: per type id: None (global), or (x index, y index, x to_value, y to_value, position mask)
_Place = tuple[int, int, Callable[[Any], Any], Callable[[Any], Any], int] | None


class Grid:
    """Cell -> entities (in arrival order) and entity -> cell, for positioned entities;
    global entities apart. Updated incrementally; :meth:`check` compares it with a state."""

    def __init__(self) -> None:
        self.cells: dict[Cell, dict[int, Entity]] = {}
        self.where: dict[int, Cell] = {}
        self.globals: dict[int, Entity] = {}

    def add(self, entity: Entity, cell: Cell | None) -> None:
        if cell is None:
            self.globals[entity.id] = entity
            return
        self.where[entity.id] = cell
        members = self.cells.get(cell)
        if members is None:
            members = self.cells[cell] = {}
        members[entity.id] = entity

    def move(self, entity: Entity, old: Cell, new: Cell) -> None:
        self._leave(entity.id, old)
        self.where[entity.id] = new
        members = self.cells.get(new)
        if members is None:
            members = self.cells[new] = {}
        members[entity.id] = entity

    def remove(self, entity_id: int) -> Cell | None:
        """Forget an entity; its cell, or None if it was global (or unknown)."""
        cell = self.where.pop(entity_id, None)
        if cell is None:
            self.globals.pop(entity_id, None)
            return None
        self._leave(entity_id, cell)
        return cell

    def _leave(self, entity_id: int, cell: Cell) -> None:
        members = self.cells[cell]
        del members[entity_id]
        if not members:
            del self.cells[cell]

    def members(self, cell: Cell) -> Mapping[int, Entity]:
        return self.cells.get(cell, {})


class _Arrivals:
    """The entities that came into a cell from one origin cell in a tick (None: created),
    with their patches and records as chunks, each encoded when first needed."""

    __slots__ = ("items", "origin", "patches", "records")

    def __init__(self, origin: Cell | None) -> None:
        self.origin = origin
        self.items: list[tuple[Entity, int]] = []
        self.patches: Chunk | None = None
        self.records: Chunk | None = None


class _Client:
    __slots__ = ("cells", "number")

    def __init__(self, number: int) -> None:
        self.number = number
        self.cells: frozenset[Cell] = frozenset()


class ViewEncoder:
    """The per-client DELTAs and SNAPSHOTs of a view room (see the module docstring).

    ``encode_calls`` counts the encodings done (records, patches, per-cell and global chunk
    joins), in total and for the last tick (``tick_encode_calls``); per-client assembly of
    shared chunks is not counted (it costs O(cells in view) per client)."""

    def __init__(self, interest: Interest, schema: Schema) -> None:
        interest.check(schema)
        self.interest = interest
        self.schema = schema
        places: list[_Place] = []
        for etype in schema.types:
            names = interest.positions.get(etype)
            if names is None:
                places.append(None)
                continue
            ix, iy = etype.index[names[0]], etype.index[names[1]]
            places.append(
                (ix, iy, etype.types[ix].to_value, etype.types[iy].to_value, 1 << ix | 1 << iy)
            )
        self._places = places
        self.grid = Grid()
        self._clients: dict[int, _Client] = {}
        self.encode_calls = 0
        self.tick_encode_calls = 0
        self.tick_number = 0
        # kept across ticks: records of unchanged entities, record CRCs and per-cell sums
        self._records: dict[int, bytes] = {}
        self._crc: dict[int, tuple[int, Cell | None]] = {}
        self._sums: dict[Cell, int] = {}
        self._global_sum = 0
        self._dirty: set[int] = set()
        # per tick (reset by tick()): snapshot chunks of the state after the last tick
        self._snap_cells: dict[Cell, Chunk] = {}
        self._snap_globals: Chunk | None = None

    # ------------------------------------------------------------ cells
    def cell_of_entity(self, entity: Entity) -> Cell | None:
        """The cell of a positioned entity from its decoded position; None if global."""
        place = self._places[entity.etype.type_id]
        if place is None:
            return None
        ix, iy, vx, vy, _ = place
        codes = entity.codes
        return self.interest.cell_of(vx(codes[ix]), vy(codes[iy]))

    def cells_of(self, number: int) -> frozenset[Cell]:
        """The cells client ``number`` sees as of the last tick (empty if unknown)."""
        client = self._clients.get(number)
        return frozenset() if client is None else client.cells

    def set_view(self, number: int, cells: Iterable[Cell]) -> None:
        """Set a client's current cells outside a tick (before its first snapshot)."""
        client = self._clients.get(number)
        if client is None:
            client = self._clients[number] = _Client(number)
        client.cells = frozenset(cells)

    def knows(self, number: int) -> bool:
        """Client ``number`` has cells (from a tick, or :meth:`set_view`)."""
        return number in self._clients

    def forget(self, number: int) -> None:
        self._clients.pop(number, None)

    def visible(self, number: int) -> dict[int, Entity]:
        """The entities client ``number`` holds after the last tick: the global ones and those
        in its cells (what its replica must equal)."""
        out = dict(self.grid.globals)
        cells = self.grid.cells
        for c in self.cells_of(number):
            members = cells.get(c)
            if members:
                out.update(members)
        return out

    # ------------------------------------------------------------ encoding helpers
    def _record(self, entity: Entity) -> bytes:
        rec = self._records.get(entity.id)
        if rec is None:
            rec = self._records[entity.id] = encode_record(entity)
            self.encode_calls += 1
        return rec

    def _join(self, parts: list[bytes]) -> bytes:
        if len(parts) == 1:
            return parts[0]
        self.encode_calls += 1
        return b"".join(parts)

    def _refresh_checksums(self) -> None:
        """Bring the record CRCs and per-cell sums up to date with the entities that changed
        (or appeared, moved, went) since they were last computed."""
        dirty = self._dirty
        if not dirty:
            return
        crcs = self._crc
        sums = self._sums
        grid = self.grid
        gsum = self._global_sum
        for eid in dirty:
            old = crcs.pop(eid, None)
            if old is not None:
                crc, cell = old
                if cell is None:
                    gsum -= crc
                else:
                    left = sums[cell] - crc
                    if left or cell in grid.cells:
                        sums[cell] = left
                    else:
                        del sums[cell]
            cell = grid.where.get(eid)
            entity = grid.globals.get(eid) if cell is None else grid.cells[cell][eid]
            if entity is None:
                continue  # gone
            crc = zlib.crc32(self._record(entity))
            crcs[eid] = (crc, cell)
            if cell is None:
                gsum += crc
            else:
                sums[cell] = sums.get(cell, 0) + crc
        self._global_sum = gsum
        dirty.clear()

    def checksum_of(self, cells: Collection[Cell]) -> int:
        """The view checksum of the global entities plus those in ``cells`` (refreshes the
        CRCs of changed entities first)."""
        self._refresh_checksums()
        sums = self._sums
        total = self._global_sum
        for c in cells:
            total += sums.get(c, 0)
        return total % _MOD

    # ------------------------------------------------------------ the tick
    def start(self, state: State) -> None:
        """Take over a state's entities (the room's initial state) and clear its tracking."""
        created, changed, removed = state.take_changes()
        assert not changed and not removed, "start() takes a state with only creations"
        for entity in created:
            self.grid.add(entity, self.cell_of_entity(entity))
            self._dirty.add(entity.id)

    def tick(
        self,
        state: State,
        tick: int,
        views: Mapping[int, Iterable[Cell]],
        acks: Mapping[int, int],
        with_checksum: bool,
        deliver: Collection[int] = (),
    ) -> dict[int, bytes]:
        """Consume the state's change tracking (as ``State.encode_delta`` does), move the
        grid, set each client's cells to ``views[number]`` (clients not in ``views`` are
        forgotten), and return a DELTA for each client in ``deliver`` (each must be in
        ``views``), built from its previous and current cells. ``acks`` maps a player to
        its ack increment in this tick (only players whose inputs were applied)."""
        self.tick_number = tick
        start = self.encode_calls
        self._snap_cells = {}
        self._snap_globals = None
        created, changed, removed = state.take_changes()
        grid = self.grid
        where = grid.where
        places = self._places
        records = self._records
        dirty = self._dirty
        interest = self.interest
        # ---- classify and move the grid: O(changes)
        g_created: list[Entity] = []
        g_changed: list[tuple[Entity, int]] = []
        g_removed: list[int] = []
        stay_changed: dict[Cell, list[tuple[Entity, int]]] = {}
        # arrivals into a cell: (entity, from cell or None for created, mask)
        arrivals: dict[Cell, list[tuple[Entity, Cell | None, int]]] = {}
        # departures from a cell: (id, to cell or None for removed from the world)
        departures: dict[Cell, list[tuple[int, Cell | None]]] = {}
        for eid in removed:
            records.pop(eid, None)
            dirty.add(eid)
            cell = grid.remove(eid)
            if cell is None:
                g_removed.append(eid)
            else:
                departures.setdefault(cell, []).append((eid, None))
        for entity, mask in changed:
            eid = entity.id
            records.pop(eid, None)
            dirty.add(eid)
            place = places[entity.etype.type_id]
            if place is None:
                g_changed.append((entity, mask))
                continue
            old = where[eid]
            if mask & place[4]:
                codes = entity.codes
                new = interest.cell_of(place[2](codes[place[0]]), place[3](codes[place[1]]))
                if new != old:
                    grid.move(entity, old, new)
                    arrivals.setdefault(new, []).append((entity, old, mask))
                    departures.setdefault(old, []).append((eid, new))
                    continue
            stay_changed.setdefault(old, []).append((entity, mask))
        for entity in created:
            dirty.add(entity.id)
            cell = self.cell_of_entity(entity)
            grid.add(entity, cell)
            if cell is None:
                g_created.append(entity)
            else:
                arrivals.setdefault(cell, []).append((entity, None, 0))
        arrived = {e.id for items in arrivals.values() for e, _, _ in items} if arrivals else ()
        # ---- lazily built, once each per tick
        patches: dict[int, bytes] = {}

        def patch(entity: Entity, mask: int) -> bytes:
            p = patches.get(entity.id)
            if p is None:
                p = patches[entity.id] = encode_masked(entity, mask)
                self.encode_calls += 1
            return p

        stay_patch_chunks: dict[Cell, Chunk] = {}
        stay_record_chunks: dict[Cell, Chunk] = {}
        stay_id_chunks: dict[Cell, Chunk] = {}
        # per cell, its arrivals grouped by origin cell (None: created), each group's
        # patches and records encoded when first needed; and its departures grouped by
        # destination (None: removed from the world): their ids
        arrival_groups: dict[Cell, list[_Arrivals]] = {}
        departure_groups: dict[Cell, list[tuple[Cell | None, Chunk]]] = {}

        def arrivals_in(c: Cell) -> list[_Arrivals]:
            groups = arrival_groups.get(c)
            if groups is None:
                by_origin: dict[Cell | None, _Arrivals] = {}
                for entity, origin, mask in arrivals[c]:
                    group = by_origin.get(origin)
                    if group is None:
                        group = by_origin[origin] = _Arrivals(origin)
                    group.items.append((entity, mask))
                groups = arrival_groups[c] = list(by_origin.values())
            return groups

        def arrival_patches(group: _Arrivals) -> Chunk:
            if group.patches is None:
                items = group.items
                group.patches = (len(items), self._join([patch(e, m) for e, m in items]))
            return group.patches

        def arrival_records(group: _Arrivals) -> Chunk:
            if group.records is None:
                items = group.items
                group.records = (len(items), self._join([self._record(e) for e, _ in items]))
            return group.records

        def departures_from(c: Cell) -> list[tuple[Cell | None, Chunk]]:
            groups = departure_groups.get(c)
            if groups is None:
                by_dest: dict[Cell | None, list[int]] = {}
                for eid, dest in departures[c]:
                    by_dest.setdefault(dest, []).append(eid)
                groups = []
                for dest, ids in by_dest.items():
                    groups.append((dest, (len(ids), b"".join([wire.varint(i) for i in ids]))))
                    self.encode_calls += 1
                departure_groups[c] = groups
            return groups

        def stayers(c: Cell) -> list[Entity]:
            members = grid.cells.get(c)
            if not members:
                return []
            if not arrived:
                return list(members.values())
            return [e for eid, e in members.items() if eid not in arrived]

        def stay_patches(c: Cell) -> Chunk:
            chunk = stay_patch_chunks.get(c)
            if chunk is None:
                items = stay_changed.get(c)
                chunk = _EMPTY
                if items:
                    chunk = (len(items), self._join([patch(e, m) for e, m in items]))
                stay_patch_chunks[c] = chunk
            return chunk

        def stay_records(c: Cell) -> Chunk:
            chunk = stay_record_chunks.get(c)
            if chunk is None:
                ents = stayers(c)
                chunk = (len(ents), self._join([self._record(e) for e in ents])) if ents else _EMPTY
                stay_record_chunks[c] = chunk
            return chunk

        def stay_ids(c: Cell) -> Chunk:
            chunk = stay_id_chunks.get(c)
            if chunk is None:
                ents = stayers(c)
                chunk = _EMPTY
                if ents:
                    chunk = (len(ents), b"".join([wire.varint(e.id) for e in ents]))
                    self.encode_calls += 1
                stay_id_chunks[c] = chunk
            return chunk

        # ---- the clients' cells advance (every client, sent a delta or not)
        clients = self._clients
        previous: dict[int, frozenset[Cell]] = {}
        for number in list(clients):
            if number not in views:
                del clients[number]
        for number, cells in views.items():
            client = clients.get(number)
            if client is None:
                client = clients[number] = _Client(number)
            previous[number] = client.cells
            client.cells = cells if isinstance(cells, frozenset) else frozenset(cells)
        out: dict[int, bytes] = {}
        if not deliver:
            self.tick_encode_calls = self.encode_calls - start
            return out
        # ---- the global section, once
        gc = (
            (len(g_created), self._join([self._record(e) for e in g_created]))
            if g_created
            else _EMPTY
        )
        gp = (
            (len(g_changed), self._join([patch(e, m) for e, m in g_changed]))
            if g_changed
            else _EMPTY
        )
        gr = _EMPTY
        if g_removed:
            gr = (len(g_removed), b"".join([wire.varint(i) for i in g_removed]))
            self.encode_calls += 1
        head = _KIND_DELTA + (b"\x01" if with_checksum else b"\x00") + wire.varint(tick)
        varint = wire.varint
        small = _SMALL
        if with_checksum:
            self._refresh_checksums()
        sums = self._sums
        gsum = self._global_sum
        for number in deliver:
            p_cells = previous[number]
            v_cells = clients[number].cells
            n_created, created_parts = gc[0], [gc[1]]
            n_changed, changed_parts = gp[0], [gp[1]]
            n_removed, removed_parts = gr[0], [gr[1]]
            for c in v_cells:
                if c in p_cells:
                    n, data = stay_patch_chunks.get(c) or stay_patches(c)
                    if n:
                        n_changed += n
                        changed_parts.append(data)
                else:
                    n, data = stay_record_chunks.get(c) or stay_records(c)
                    if n:
                        n_created += n
                        created_parts.append(data)
                if c in arrivals:
                    for group in arrival_groups.get(c) or arrivals_in(c):
                        origin = group.origin
                        if origin is not None and origin in p_cells:
                            n, data = group.patches or arrival_patches(group)
                            n_changed += n
                            changed_parts.append(data)
                        else:
                            n, data = group.records or arrival_records(group)
                            n_created += n
                            created_parts.append(data)
            for c in p_cells:
                if c not in v_cells:
                    n, data = stay_id_chunks.get(c) or stay_ids(c)
                    if n:
                        n_removed += n
                        removed_parts.append(data)
                if c in departures:
                    for dest, ids in departure_groups.get(c) or departures_from(c):
                        if dest is None or dest not in v_cells:
                            n_removed += ids[0]
                            removed_parts.append(ids[1])
            inc = acks.get(number)
            parts = [head]
            if with_checksum:
                total = gsum
                for c in v_cells:
                    total += sums.get(c, 0)
                parts.append((total % _MOD).to_bytes(4, "little"))
            parts.append(b"\x01" + varint(number) + varint(inc) if inc else b"\x00")
            parts.append(small[n_created] if n_created < 128 else varint(n_created))
            parts += created_parts
            parts.append(small[n_changed] if n_changed < 128 else varint(n_changed))
            parts += changed_parts
            parts.append(small[n_removed] if n_removed < 128 else varint(n_removed))
            parts += removed_parts
            out[number] = b"".join(parts)
        self.tick_encode_calls = self.encode_calls - start
        return out

    # ------------------------------------------------------------ snapshots
    def snapshot(self, number: int, tick: int, last_applied: int) -> bytes:
        """A SNAPSHOT of client ``number``'s view of the state after the last tick: the
        global records, then the records of each of its cells (chunks shared by every
        snapshot of that tick), its view checksum and its own ack only."""
        cells = self.cells_of(number)
        grid = self.grid
        g = self._snap_globals
        if g is None:
            ents = list(grid.globals.values())
            g = self._snap_globals = (
                (len(ents), self._join([self._record(e) for e in ents])) if ents else _EMPTY
            )
        n = g[0]
        parts = [g[1]]
        chunks = self._snap_cells
        for c in cells:
            chunk = chunks.get(c)
            if chunk is None:
                members = grid.cells.get(c)
                chunk = _EMPTY
                if members:
                    chunk = (len(members), self._join([self._record(e) for e in members.values()]))
                chunks[c] = chunk
            if chunk[0]:
                n += chunk[0]
                parts.append(chunk[1])
        checksum = self.checksum_of(cells)
        return b"".join(
            [
                _KIND_SNAPSHOT,
                wire.varint(tick),
                checksum.to_bytes(4, "little"),
                b"\x01" + wire.varint(number) + wire.varint(last_applied),
                wire.varint(n),
                *parts,
            ]
        )

    def check(self, state: State) -> None:
        """Assert that the grid matches ``state`` (tests): every entity in the cell of its
        position, nothing else."""
        seen: dict[int, Cell | None] = {}
        for c, members in self.grid.cells.items():
            assert members, f"empty cell {c} kept"
            for eid in members:
                seen[eid] = c
        for eid in self.grid.globals:
            seen[eid] = None
        assert seen.keys() == state.entities.keys(), "grid and state hold other entities"
        for eid, entity in state.entities.items():
            assert seen[eid] == self.cell_of_entity(entity), f"entity {eid} in the wrong cell"
