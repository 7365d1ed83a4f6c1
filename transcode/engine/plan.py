"""Shards and the tile windows that fill them: pure and deterministic, by the placement rules of docs/format.md
("Placing tiles"). Every tile-year is placed from the inventory's columns (a few bytes each); the shard tasks,
with a Python object per placement, are made one (zone, year) pass at a time, so memory stays bounded by the
largest pass."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from transcode.format.arrays import BANDS, DEFAULT_CHUNK, DEFAULT_SHARD, EMBEDDINGS, SCALES, find_array
from transcode.format.grid import ZoneGrid, parse_tile_name
from transcode.format.keys import zone_group
from transcode.format.tilecolumns import footprints, offsets, zone_grid_of
from transcode.legacy.inventory import Inventory
from transcode.legacy.problems import ERROR, WARNING, Problem
from transcode.legacy.tiletable import cell_key, cell_lon_lat, hex_digest, names, tile_cells, tile_year_key, year_slices

__all__ = ["DEFAULT_CHUNK", "DEFAULT_SHARD", "Placement", "Plan", "ShardTask", "grid_cells", "make_plan"]
# bytes of one pixel in the legacy tiles: its embedding vector and its scale
PIXEL_BYTES = BANDS * EMBEDDINGS.dtype.itemsize + SCALES.dtype.itemsize
BLOCK = 65536  # tile-years placed at once


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
    """What a conversion will write: the time axis, zone grids, which tile-years of the inventory are placed (a
    mask over its table, one byte each), each cell's offset in its zone grid, and what was left out. Tile-years
    are grouped into (zone, year) passes and made into shard tasks one pass at a time."""

    time: list[int]
    shard: tuple[int, int]
    chunk: tuple[int, int]
    grids: dict[int, ZoneGrid]
    inventory: Inventory
    placed: np.ndarray  # bool per inventory table row
    cells: np.ndarray  # sorted cell keys, and each cell's top-left pixel in its zone grid
    cell_row: np.ndarray
    cell_col: np.ndarray
    pass_sizes: list[tuple[int, int, int]]  # (zone, year, tile-years) of each pass, in (zone, year) order
    year_rows: dict[int, tuple[int, int]]  # each year's range of table rows
    landmasks: bool = True  # apply the landmasks (v1/v1.1 datasets)
    skipped: list[Problem] = field(default_factory=list)
    clipped: list[Problem] = field(default_factory=list)
    outside_time: list[int] = field(default_factory=list)

    def passes(self) -> list[tuple[int, int]]:
        """(zone, year) of every pass, in order."""
        return [(z, y) for z, y, _ in self.pass_sizes]

    def _pass(self, zone: int, year: int) -> np.ndarray:
        """Table rows of the pass's tile-years, in canonical order."""
        a, b = self.year_rows.get(year, (0, 0))
        return a + np.flatnonzero(self.placed[a:b] & (self.inventory.table["zone"][a:b] == zone))

    def offsets(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Zone-grid (row, col) of the top-left pixel of these table rows."""
        t = self.inventory.table
        at = np.searchsorted(self.cells, cell_key(t["lon_i"][rows], t["lat_i"][rows]))
        return self.cell_row[at], self.cell_col[at]

    def placed_rows(self) -> np.ndarray:
        """Table rows of every placed tile-year, in canonical order."""
        return np.flatnonzero(self.placed)

    def _shards(self, zone: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shard row, shard col, table row) of every shard a tile touches, sorted by shard then canonical order."""
        g = self.grids[zone]
        t = self.inventory.table
        r, c = self.offsets(rows)
        sh, sw = self.shard
        r0, r1 = np.maximum(r, 0) // sh, (np.minimum(r + t["height"][rows], g.height) - 1) // sh
        c0, c1 = np.maximum(c, 0) // sw, (np.minimum(c + t["width"][rows], g.width) - 1) // sw
        nr, nc = r1 - r0 + 1, c1 - c0 + 1
        count = nr * nc
        pos = np.repeat(np.arange(len(rows)), count)
        k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        sr = np.repeat(r0, count) + k // np.repeat(nc, count)
        sc = np.repeat(c0, count) + k % np.repeat(nc, count)
        order = np.lexsort((pos, sc, sr))
        return sr[order], sc[order], rows[pos[order]]

    def pass_tasks(self, zone: int, year: int) -> list[ShardTask]:
        """The shard tasks of one (zone, year) pass, sorted by shard row and column."""
        sr, sc, at = self._shards(zone, self._pass(zone, year))
        placements = self._placements(np.unique(at))
        bounds = np.flatnonzero(np.diff(sr * (1 << 32) + sc)) + 1
        t = self.time.index(year)
        return [ShardTask(zone, year, t, int(sr[a]), int(sc[a]), tuple(placements[i] for i in at[a:b].tolist()))
                for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(sr)]) if b > a]

    def _placements(self, rows: np.ndarray) -> dict[int, Placement]:
        inv = self.inventory
        t = inv.table[rows]
        row, col = self.offsets(rows)
        hashed = "embeddings_sha256" in t.dtype.names
        out = {}
        for j, (i, name) in enumerate(zip(rows.tolist(), names(t["lon_i"], t["lat_i"]))):
            r = t[j]
            year = int(r["year"])
            ids = ["" if v < 0 else str(int(v)) for v in (r["embeddings_size"], r["scales_size"])]
            ids += [hex_digest(r["embeddings_sha256"]) or "", hex_digest(r["scales_sha256"]) or ""] if hashed else ["", ""]
            out[i] = Placement(year, name, int(r["lon_i"]), int(r["lat_i"]), inv.key(year, name),
                               inv.key(year, name, "_scales.npy"),
                               inv.landmask_key(name) if self.landmasks and r["landmask"] else None,
                               int(r["height"]), int(r["width"]), int(r["embeddings_offset"]),
                               int(r["scales_offset"]), int(row[j]), int(col[j]), ":".join(ids))
        return out

    def iter_tasks(self) -> Iterator[ShardTask]:
        """Every shard task in (zone, year, shard row, shard column) order, made one pass at a time."""
        for zone, year in self.passes():
            yield from self.pass_tasks(zone, year)

    @property
    def tasks(self) -> list[ShardTask]:
        """Every shard task at once (a Python object per placement: for small archives and tests)."""
        return list(self.iter_tasks())

    def shard_counts(self) -> dict[int, int]:
        """Shards per zone, counted without making tasks."""
        out: dict[int, int] = defaultdict(int)
        for zone, year in self.passes():
            sr, sc, _ = self._shards(zone, self._pass(zone, year))
            out[zone] += len(np.unique(sr * (1 << 32) + sc))
        return dict(out)

    def input_bytes(self) -> int:
        """Bytes of the tile-years the plan reads (each tile-year once)."""
        total = 0
        t = self.inventory.table
        for a, b in self.year_rows.values():
            rows = t[a:b][self.placed[a:b]]
            total += int((rows["height"].astype(np.int64) * rows["width"] * PIXEL_BYTES + rows["embeddings_offset"]
                          + rows["scales_offset"]).sum())
        return total

    def summary(self, units: bool = False) -> dict:
        """JSON-ready overview: zones, shards, tiles, input bytes (and every work unit with `units`)."""
        tile_years: dict[int, int] = defaultdict(int)
        for z, _, n in self.pass_sizes:
            tile_years[z] += n
        shards = self.shard_counts()
        per_zone: dict[str, dict] = {}
        for z, g in sorted(self.grids.items()):
            per_zone[zone_group(z)] = {
                "epsg": g.epsg, "origin_x": g.origin_x, "origin_y": g.origin_y, "height": g.height, "width": g.width,
                "shard_grid": [g.height // self.shard[0], g.width // self.shard[1]],
                "shards": shards.get(z, 0),
                "tile_years": tile_years.get(z, 0),
            }
        doc = {
            "time": self.time,
            "shard": list(self.shard),
            "chunk": list(self.chunk),
            "zones": per_zone,
            "shards": sum(shards.values()),
            "tile_years": int(self.placed.sum()),
            "input_bytes": self.input_bytes(),
            "skipped": [p.to_dict() for p in self.skipped],
            "clipped": [p.to_dict() for p in self.clipped],
            "years_outside_time_axis": self.outside_time,
        }
        if units:
            doc["units"] = [{"shard": t.name, "tiles": [p.tile for p in t.placements]} for t in self.iter_tasks()]
        return doc


def grid_cells(inv: Inventory) -> np.ndarray:
    """Sorted cell keys of the cells that define the zone grids: every landmask cell and every tile cell of any
    year."""
    return np.union1d(cell_key(inv.masks["lon_i"], inv.masks["lat_i"]), tile_cells(inv.table))


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
    """Place every usable tile-year in its zone grid (`grids` of an existing store win). Offsets are computed
    once per cell and handed to the tile-years year by year; nothing here is a Python object per tile-year."""
    if shard[0] % chunk[0] or shard[1] % chunk[1]:
        raise ValueError(f"shard shape {shard} is not a multiple of the chunk shape {chunk}")
    table = inv.table
    wanted_years = set(years) if years is not None else None
    wanted_zones = set(zones) if zones is not None else None
    slices = [(y, a, b) for y, a, b in year_slices(table) if wanted_years is None or y in wanted_years]
    if time is None:
        ys = sorted({y for y, a, b in slices if _zone_rows(table, a, b, wanted_zones).size} | (wanted_years or set()))
        time = list(range(ys[0], ys[-1] + 1)) if ys else []
    cells = grid_cells(inv)
    fp = footprints(*cell_lon_lat(cells))
    grids = dict(grids or {})
    for z in np.unique(fp.zone).tolist():
        if (wanted_zones is None or z in wanted_zones) and z not in grids:
            grids[z] = zone_grid_of(z, fp.take(np.flatnonzero(fp.zone == z)), shard)
    cell_row, cell_col = np.zeros(len(cells), np.int64), np.zeros(len(cells), np.int64)
    for z, g in grids.items():
        sel = np.flatnonzero(fp.zone == z)
        cell_row[sel], cell_col[sel] = offsets(g, fp.take(sel))
    size = np.zeros((61, 2), np.int64)  # grid height and width by zone
    for z, g in grids.items():
        size[z] = (g.height, g.width)

    bad = _bad_tile_years(inv)
    skipped: list[Problem] = []
    clipped: list[Problem] = []
    outside: set[int] = set()
    placed = np.zeros(len(table), bool)
    pass_sizes: dict[tuple[int, int], int] = defaultdict(int)
    for year, a, b in slices:
        for start in range(a, b, BLOCK):  # blocks of a year: the temporaries stay the same size at any scale
            end = min(b, start + BLOCK)
            rows = start + _zone_rows(table, start, end, wanted_zones)
            t = table[rows]
            keys = tile_year_key(t["year"], t["lon_i"], t["lat_i"])
            unusable = ~t["usable"] | (t["height"] < 0) | np.isin(keys, bad)
            skipped += _skipped(inv, rows[unusable])
            rows, t = rows[~unusable], t[~unusable]
            if year not in time:
                if len(rows):
                    outside.add(year)
                continue
            at = np.searchsorted(cells, cell_key(t["lon_i"], t["lat_i"]))
            row, col = cell_row[at], cell_col[at]
            inside, cut = _fit(row, col, t, size)
            clipped += _clipped(inv, t, row, col, size, np.flatnonzero(~inside | cut), inside)
            placed[rows[inside]] = True
            for z, n in zip(*(v.tolist() for v in np.unique(t["zone"][inside], return_counts=True))):
                pass_sizes[(z, year)] += n
    return Plan(time, shard, chunk, {z: g for z, g in sorted(grids.items())}, inv, placed, cells, cell_row, cell_col,
                sorted((z, y, n) for (z, y), n in pass_sizes.items()), {y: (a, b) for y, a, b in year_slices(table)},
                inv.dataset.needs_landmask, skipped, clipped, sorted(outside))


def _zone_rows(table: np.ndarray, a: int, b: int, zones: set[int] | None) -> np.ndarray:
    """Positions (from `a`) of the rows a..b in the wanted zones."""
    if zones is None:
        return np.arange(b - a)
    return np.flatnonzero(np.isin(table["zone"][a:b], list(zones)))


def _bad_tile_years(inv: Inventory) -> np.ndarray:
    """Tile-year keys of every tile-year an error was reported for."""
    keys = set()
    for p in inv.problems:
        if p.severity == ERROR and p.year is not None and p.tile is not None:
            try:
                tile = parse_tile_name(p.tile)
            except ValueError:
                continue
            keys.add(int(tile_year_key(p.year, tile.lon_i, tile.lat_i)))
    return np.array(sorted(keys), np.int64)


def _skipped(inv: Inventory, rows: np.ndarray) -> list[Problem]:
    """A warning for each of these (unusable) tile-years, with every reason the inventory gave."""
    if not len(rows):
        return []
    reasons: dict[tuple[int, str], set[str]] = defaultdict(set)
    for p in inv.problems:
        if p.year is not None and p.tile is not None:
            reasons[(p.year, p.tile)].add(f"{p.kind}: {p.message}")
    t = inv.table[rows]
    out = []
    for year, name in zip(t["year"].tolist(), names(t["lon_i"], t["lat_i"])):
        why = "; ".join(sorted(reasons.get((year, name), ()))) or "unusable"
        out.append(Problem(inv.key(year, name), "skipped-tile", why, WARNING, year, name))
    return out


def _fit(row: np.ndarray, col: np.ndarray, t: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside: at least partly in the zone grid, cut: inside but clipped) for each tile-year."""
    gh, gw = size[t["zone"], 0], size[t["zone"], 1]
    h, w = t["height"].astype(np.int64), t["width"].astype(np.int64)
    r0, r1 = np.maximum(row, 0), np.minimum(row + h, gh)
    c0, c1 = np.maximum(col, 0), np.minimum(col + w, gw)
    inside = (r0 < r1) & (c0 < c1)
    return inside, inside & ((r0 != row) | (r1 != row + h) | (c0 != col) | (c1 != col + w))


def _clipped(inv: Inventory, t: np.ndarray, row: np.ndarray, col: np.ndarray, size: np.ndarray, which: np.ndarray,
             inside: np.ndarray) -> list[Problem]:
    problems = []
    for i, name in zip(which.tolist(), names(t["lon_i"][which], t["lat_i"][which])):
        year, zone = int(t["year"][i]), int(t["zone"][i])
        if not inside[i]:
            problems.append(Problem(inv.key(year, name), "outside-grid", f"tile lies outside the {zone_group(zone)} grid",
                                    ERROR, year, name))
            continue
        h, w, (gh, gw) = int(t["height"][i]), int(t["width"][i]), size[zone].tolist()
        rows = (max(int(row[i]), 0), min(int(row[i]) + h, gh))
        cols = (max(int(col[i]), 0), min(int(col[i]) + w, gw))
        problems.append(Problem(inv.key(year, name), "clipped", f"tile extends past the {zone_group(zone)} grid and is "
                                f"clipped to rows {rows} cols {cols}", WARNING, year, name))
    return problems
