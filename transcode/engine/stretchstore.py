"""The stretch statistics of the zone-years a run writes, in the store (docs/format.md, "Stretch statistics"):
marked invalid (count -1) before any of their shards is written, rebuilt from the partials beside the journal
entries once their last shard is done (never from a second read of the shards), and recorded in the sidecar
(`.tessera/stretch/{group}/{year}.json`: which journal entries are folded in, which objects were written) so that a
later run knows what is current and the manifest lists the objects."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from transcode.codecs.spec import spec_from_zarr_config
from transcode.engine.journal import entry_key, iter_records
from transcode.engine.plan import Plan, ShardTask
from transcode.engine.stretchstats import Partial, ZoneYearStats
from transcode.errors import StoreError
from transcode.format.arrays import STRETCH_ARRAYS, STRETCH_STATS_COUNT, ArrayDecl, Zone
from transcode.format.keys import zone_group
from transcode.format.manifest import ObjectRecord
from transcode.format.sidecar import ENTRY_SUFFIX, STRETCH_PREFIX, partial_key, stretch_record_key
from transcode.storage import ObjectNotFoundError, Storage

READ_AHEAD = 8  # partials read in parallel while the previous ones are folded


def encode_chunk(decl: ArrayDecl, chunk: np.ndarray) -> bytes:
    """One plain chunk of a stretch array, as zarr-python writes it (little-endian bytes, then the chain)."""
    data = np.ascontiguousarray(chunk, dtype=decl.dtype.newbyteorder("<"))
    return spec_from_zarr_config(list(decl.chain)).encoder(decl.dtype)(data)


@dataclass
class _ZoneYear:
    """One (zone, year) of the plan: the journal entries its statistics fold once the run is done."""

    zone: int
    year: int
    t: int
    shard_grid: tuple[int, int]
    entries: dict[tuple[int, int], str]  # (shard row, shard col) -> journal entry key
    pending: set[str] = field(default_factory=set)  # its tasks still to finish in this run
    failed: bool = False

    @property
    def group(self) -> str:
        return zone_group(self.zone)

    @property
    def name(self) -> str:
        return f"{self.group}/{self.year}"


class StretchStore:
    """Keeps the stretch statistics of a run's zone-years current, each (zone, year) pass registered as it is
    planned; `problems` names those left invalid. Only the passes with work in flight are held."""

    def __init__(self, store: Storage, plan: Plan, entries: dict[str, dict[str, int]], sample_size: int,
                 part_size: int) -> None:
        self.store = store
        self.plan = plan
        self.sample_size = sample_size
        self.part_size = part_size
        self.remote = store.remote
        self.problems: list[dict] = []
        self.rebuilt: list[str] = []  # the zone-years whose statistics this run wrote
        self.zone_years: dict[tuple[int, int], _ZoneYear] = {}
        # (group, year) -> {(shard row, shard col): entry} of the store's shards with exactly one entry: those the
        # plan no longer has (their tiles left the source) are still in the store, so in its statistics
        self._present: dict[tuple[str, int], dict[tuple[int, int], str]] = defaultdict(dict)
        for name, keys in entries.items():
            if len(keys) == 1:
                group, year, row, col = name.split("/")
                self._present[(group, int(year))][(int(row), int(col))] = next(iter(keys))

    # ------------------------------------------------------------------------------------------ the run

    def register(self, zone: int, year: int, tasks: Iterable[tuple[ShardTask, str]], todo: Iterable[ShardTask]) -> bool:
        """Note one (zone, year) pass as it is planned: every task with its fingerprint, and the tasks still to run.
        True when its statistics will change (the caller withdraws the manifest, then calls `begin`)."""
        entries = self._present.pop((zone_group(zone), year), {})
        entries.update({(t.shard_row, t.shard_col): entry_key(t, fp) for t, fp in tasks})
        grid = Zone(self.plan.grids[zone], tuple(self.plan.time), self.plan.shard, self.plan.chunk).shard_grid
        zy = _ZoneYear(zone, year, self.plan.time.index(year), grid, entries, {t.name for t in todo})
        if not zy.pending and self._current(zy):
            return False
        self.zone_years[(zone, year)] = zy
        return True

    def begin(self, zone: int, year: int) -> None:
        """Before any shard of the registered pass is written: mark its statistics invalid; with no task left to
        run (its shards are all done, its statistics are not: a kill came before the rebuild), rebuild them now."""
        zy = self.zone_years[(zone, year)]
        self._invalidate(zy)
        if not zy.pending:
            self._rebuild(zy)
            del self.zone_years[(zone, year)]

    def finished(self, task: ShardTask, ok: bool) -> None:
        """A task of the run ended (its journal entry written); once its zone-year has no task left, rebuild it
        unless one failed."""
        zy = self.zone_years[(task.zone, task.year)]
        zy.pending.discard(task.name)
        zy.failed |= not ok
        if zy.pending:
            return
        del self.zone_years[(task.zone, task.year)]
        if zy.failed:
            self.problems.append({"shard": zy.name, "error": "stretch statistics left invalid (count -1): "
                                  "a shard of this zone-year failed; re-run to finish it"})
        else:
            self._rebuild(zy)

    # ------------------------------------------------------------------------------------------ the store

    def _record(self, zy: _ZoneYear) -> dict | None:
        try:
            return json.loads(self.store.read(stretch_record_key(zy.group, zy.year)))
        except ObjectNotFoundError:
            return None

    def _current(self, zy: _ZoneYear) -> bool:
        record = self._record(zy)
        return record is not None and record.get("shards") == sorted(zy.entries.values())

    def _put(self, decl: ArrayDecl, zy: _ZoneYear, chunk: np.ndarray) -> ObjectRecord:
        key = decl.shard_key(zy.group, zy.t, 0, 0)
        data = encode_chunk(decl, chunk)
        self.store.put(key, data)
        return ObjectRecord.from_bytes(key, data, self.part_size, self.remote)

    def _write_record(self, zy: _ZoneYear, shards: list[str] | None, objects: list[ObjectRecord]) -> None:
        doc = {"zone_year": zy.name, "shards": shards, "objects": [asdict(o) for o in objects]}
        self.store.put(stretch_record_key(zy.group, zy.year), json.dumps(doc, sort_keys=True).encode())

    def _invalidate(self, zy: _ZoneYear) -> None:
        """Count -1 first (FORMATS: nothing is counted twice); the record goes before, so a kill in between
        leaves no record that calls the zone-year current."""
        before = self._record(zy)
        self.store.delete(stretch_record_key(zy.group, zy.year))
        count = self._put(STRETCH_STATS_COUNT, zy, np.array([-1], STRETCH_STATS_COUNT.dtype))
        kept = [ObjectRecord(**o) for o in (before or {}).get("objects", []) if o["key"] != count.key]
        self._write_record(zy, None, sorted([*kept, count], key=lambda o: o.key))

    def _partials(self, zy: _ZoneYear) -> Iterator[tuple[tuple[int, int], Partial]]:
        """The zone-year's partials in shard order, a few read ahead in parallel."""
        shards = sorted(zy.entries)

        def read(shard: tuple[int, int]) -> Partial:
            key = partial_key(zy.entries[shard])
            try:
                return Partial.from_bytes(self.store.read(key))
            except ObjectNotFoundError:
                raise StoreError(self.store.describe(key), "the partial stretch statistics of a finished shard are "
                                 "missing (written by a run without statistics?)") from None
            except ValueError as e:
                raise StoreError(self.store.describe(key), f"unreadable partial stretch statistics: {e}") from None

        with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
            for i in range(0, len(shards), READ_AHEAD):
                window = shards[i:i + READ_AHEAD]
                yield from zip(window, pool.map(read, window))

    def _rebuild(self, zy: _ZoneYear) -> None:
        """Fold the partials of every shard of the zone-year and write its chunk of each stretch array (count last,
        then the record that calls it current)."""
        folded = ZoneYearStats(self.sample_size, zy.shard_grid)
        try:
            for (row, col), partial in self._partials(zy):
                folded.add(row, col, partial)
        except StoreError as e:
            self.problems.append({"shard": zy.name, "error": f"stretch statistics left invalid (count -1): {e}"})
            return
        chunks = folded.arrays()
        objects = [self._put(decl, zy, chunks[decl.name]) for decl in _write_order()]
        self._write_record(zy, sorted(zy.entries.values()), sorted(objects, key=lambda o: o.key))
        self.rebuilt.append(zy.name)


def _write_order() -> list[ArrayDecl]:
    """Every stretch array, the count last: a reader sees a complete zone-year only when all the rest is there."""
    return [d for d in STRETCH_ARRAYS if d is not STRETCH_STATS_COUNT] + [STRETCH_STATS_COUNT]


def stretch_records(store: Storage) -> Iterator[ObjectRecord]:
    """The stretch-statistics objects every zone-year record lists (for the manifest), streamed."""
    keys = (o.key for o in store.list(STRETCH_PREFIX + "/") if o.key.endswith(ENTRY_SUFFIX))
    return iter_records(store, keys)
