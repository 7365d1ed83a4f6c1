"""Shards and the tile windows that fill them: pure and deterministic, by the placement rules of docs/format.md
("Placing tiles")."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from transcode.format.arrays import BANDS, DEFAULT_CHUNK, DEFAULT_SHARD, EMBEDDINGS, SCALES, find_array
from transcode.format.grid import TileId, ZoneGrid, footprint, zone_grid
from transcode.format.keys import zone_group
from transcode.legacy.inventory import Inventory, TileRecord
from transcode.legacy.problems import Problem

__all__ = ["DEFAULT_CHUNK", "DEFAULT_SHARD", "Placement", "Plan", "ShardTask", "grid_tiles", "make_plan"]
# bytes of one pixel in the legacy tiles: its embedding vector and its scale
PIXEL_BYTES = BANDS * EMBEDDINGS.dtype.itemsize + SCALES.dtype.itemsize


@dataclass(frozen=True)
class Placement:
    """One tile-year placed in a zone grid: where its files are and where its top-left pixel lands."""

    year: int
    tile: str
    lon_i: int
    lat_i: int
    embeddings_key: str
    scales_key: str
    landmask_key: str | None
    height: int
    width: int
    embeddings_offset: int
    scales_offset: int
    row: int
    col: int
    source_id: str

    def rows_in(self, r0: int, r1: int) -> tuple[int, int] | None:
        """Zone-grid rows [a, b) of this tile within [r0, r1), or None."""
        a, b = max(self.row, r0), min(self.row + self.height, r1)
        return (a, b) if a < b else None

    def cols_in(self, c0: int, c1: int) -> tuple[int, int] | None:
        """Zone-grid columns [a, b) of this tile within [c0, c1), or None."""
        a, b = max(self.col, c0), min(self.col + self.width, c1)
        return (a, b) if a < b else None


@dataclass(frozen=True)
class ShardTask:
    """One shard (zone, year, shard row, shard column) and every tile that overlaps it, in overlap order."""

    zone: int
    year: int
    t: int
    shard_row: int
    shard_col: int
    placements: tuple[Placement, ...]

    @property
    def group(self) -> str:
        return zone_group(self.zone)

    def key(self, array: str) -> str:
        """Object key of this shard in the sharded array named `array` (nested depths included)."""
        decl = find_array(array)
        if decl is None or not decl.sharded:
            raise ValueError(f"{array!r} is not a sharded array of the store")
        return decl.shard_key(self.group, self.t, self.shard_row, self.shard_col)

    @property
    def name(self) -> str:
        return f"{self.group}/{self.year}/{self.shard_row}/{self.shard_col}"

    def work(self, shard: tuple[int, int]) -> int:
        """Tile pixels this shard receives (with overlaps counted twice): an estimate of its cost."""
        r0, c0 = self.shard_row * shard[0], self.shard_col * shard[1]
        total = 0
        for p in self.placements:
            rr, cc = p.rows_in(r0, r0 + shard[0]), p.cols_in(c0, c0 + shard[1])
            if rr and cc:
                total += (rr[1] - rr[0]) * (cc[1] - cc[0])
        return total

    def fingerprint(self, settings: dict) -> str:
        """SHA-256 of everything that decides this shard's bytes: its inputs and the encoding settings."""
        doc = {"settings": settings, "task": [self.zone, self.year, self.t, self.shard_row, self.shard_col],
               "placements": [asdict(p) for p in self.placements]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass
class Plan:
    """What a conversion will write."""

    time: list[int]
    shard: tuple[int, int]
    chunk: tuple[int, int]
    grids: dict[int, ZoneGrid]
    tasks: list[ShardTask]
    skipped: list[Problem] = field(default_factory=list)
    clipped: list[Problem] = field(default_factory=list)
    outside_time: list[int] = field(default_factory=list)

    def input_bytes(self) -> int:
        """Bytes of the tile-years the plan reads (each tile-year once)."""
        seen = {}
        for task in self.tasks:
            for p in task.placements:
                seen[(p.year, p.tile)] = p
        return sum(p.height * p.width * PIXEL_BYTES + p.embeddings_offset + p.scales_offset for p in seen.values())

    def summary(self) -> dict:
        """JSON-ready overview: zones, shards, tiles, input bytes and the work units."""
        per_zone: dict[str, dict] = {}
        for z, g in sorted(self.grids.items()):
            tasks = [t for t in self.tasks if t.zone == z]
            per_zone[zone_group(z)] = {
                "epsg": g.epsg, "origin_x": g.origin_x, "origin_y": g.origin_y, "height": g.height, "width": g.width,
                "shard_grid": [g.height // self.shard[0], g.width // self.shard[1]],
                "shards": len(tasks),
                "tile_years": len({(p.year, p.tile) for t in tasks for p in t.placements}),
            }
        return {
            "time": self.time,
            "shard": list(self.shard),
            "chunk": list(self.chunk),
            "zones": per_zone,
            "shards": len(self.tasks),
            "tile_years": len({(p.year, p.tile) for t in self.tasks for p in t.placements}),
            "input_bytes": self.input_bytes(),
            "skipped": [p.to_dict() for p in self.skipped],
            "clipped": [p.to_dict() for p in self.clipped],
            "years_outside_time_axis": self.outside_time,
            "units": [{"shard": t.name, "tiles": [f"{p.tile}" for p in t.placements]} for t in self.tasks],
        }


def _source_id(r: TileRecord) -> str:
    parts = [r.embeddings_size, r.scales_size, r.embeddings_sha256, r.scales_sha256]
    return ":".join("" if v is None else str(v) for v in parts)


def grid_tiles(inv: Inventory) -> dict[int, list[TileId]]:
    """Tile cells that define each zone's grid: every landmask cell and every tile cell of any year."""
    cells: set[TileId] = {TileId(m.lon_i, m.lat_i) for m in inv.landmasks}
    cells |= {TileId(t.lon_i, t.lat_i) for t in inv.tiles}
    zones: dict[int, list[TileId]] = defaultdict(list)
    for c in sorted(cells):
        zones[footprint(c).zone].append(c)
    return dict(zones)


def make_plan(
    inv: Inventory,
    *,
    years: Iterable[int] | None = None,
    zones: Iterable[int] | None = None,
    shard: tuple[int, int] = DEFAULT_SHARD,
    chunk: tuple[int, int] = DEFAULT_CHUNK,
    time: list[int] | None = None,
    grids: dict[int, ZoneGrid] | None = None,
) -> Plan:
    """Place every usable tile-year in its zone grid and group the windows by shard."""
    if shard[0] % chunk[0] or shard[1] % chunk[1]:
        raise ValueError(f"shard shape {shard} is not a multiple of the chunk shape {chunk}")
    wanted_years = set(years) if years is not None else None
    wanted_zones = set(zones) if zones is not None else None
    tiles = [t for t in inv.tiles if (wanted_years is None or t.year in wanted_years)
             and (wanted_zones is None or t.zone in wanted_zones)]
    if time is None:
        ys = sorted({t.year for t in tiles} | (wanted_years or set()))
        time = list(range(ys[0], ys[-1] + 1)) if ys else []
    t_index = {y: i for i, y in enumerate(time)}
    grids = dict(grids or {})
    for z, cells in grid_tiles(inv).items():
        if (wanted_zones is None or z in wanted_zones) and z not in grids:
            grids[z] = zone_grid(z, cells, shard)
    bad = {(p.year, p.tile) for p in inv.problems if p.severity == "error" and p.year is not None}
    skipped: list[Problem] = []
    clipped: list[Problem] = []
    outside: set[int] = set()
    by_shard: dict[tuple[int, int, int, int], list[Placement]] = defaultdict(list)
    for r in sorted(tiles, key=lambda r: (r.year, r.lat_i, r.lon_i)):
        if not r.usable or (r.year, r.tile) in bad or r.height is None:
            reasons = sorted({f"{p.kind}: {p.message}" for p in inv.problems if (p.year, p.tile) == (r.year, r.tile)})
            skipped.append(Problem(r.embeddings_key, "skipped-tile", "; ".join(reasons) or "unusable", "warning",
                                   r.year, r.tile))
            continue
        if r.year not in t_index:
            outside.add(r.year)
            continue
        fp = footprint(TileId(r.lon_i, r.lat_i))
        g = grids[fp.zone]
        row, col = g.offset(fp)
        p = Placement(r.year, r.tile, r.lon_i, r.lat_i, r.embeddings_key, r.scales_key, r.landmask_key,
                      r.height, r.width, r.embeddings_offset, r.scales_offset, row, col, _source_id(r))
        rows, cols = p.rows_in(0, g.height), p.cols_in(0, g.width)
        if rows is None or cols is None:
            clipped.append(Problem(r.embeddings_key, "outside-grid", f"tile lies outside the {zone_group(fp.zone)} grid",
                                   "error", r.year, r.tile))
            continue
        if rows != (row, row + r.height) or cols != (col, col + r.width):
            clipped.append(Problem(r.embeddings_key, "clipped", f"tile extends past the {zone_group(fp.zone)} grid and is "
                                   f"clipped to rows {rows} cols {cols}", "warning", r.year, r.tile))
        sh, sw = shard
        for sr in range(rows[0] // sh, (rows[1] - 1) // sh + 1):
            for sc in range(cols[0] // sw, (cols[1] - 1) // sw + 1):
                by_shard[(fp.zone, r.year, sr, sc)].append(p)
    tasks = [ShardTask(z, y, t_index[y], sr, sc, tuple(ps)) for (z, y, sr, sc), ps in sorted(by_shard.items())]
    return Plan(time, shard, chunk, {z: g for z, g in sorted(grids.items())}, tasks, skipped, clipped,
                sorted(outside))
