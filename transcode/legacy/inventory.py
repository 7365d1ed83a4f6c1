"""The inventory verb: what a legacy archive holds and everything wrong with it, without reading tile bodies."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from transcode.errors import ArchiveError, StorageError, TransientStorageError
from transcode.format.grid import footprint, parse_tile_name, utm_zone
from transcode.format.keys import zone_group
from transcode.legacy.archive import LegacyArchive, TileFiles
from transcode.legacy.integrity import check_hashes, check_sizes, hash_files
from transcode.legacy.npyheader import MAX_TILE_SIDE, NpyHeader, check_embeddings_header, check_scales_header
from transcode.legacy.problems import ERROR, WARNING, Problem
from transcode.legacy.registries import load_expectations
from transcode.legacy.tiles import read_npy_header
from transcode.storage import ObjectInfo

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
INVENTORY_FORMAT = 1


@dataclass
class TileRecord:
    """One tile-year as the inventory found it; `usable` is False when an error makes it unreadable."""

    year: int
    tile: str
    lon_i: int
    lat_i: int
    zone: int
    epsg: int
    embeddings_key: str
    embeddings_size: int | None
    scales_key: str
    scales_size: int | None
    height: int | None
    width: int | None
    footprint_height: int
    footprint_width: int
    embeddings_offset: int | None
    scales_offset: int | None
    landmask_key: str | None
    usable: bool = True
    embeddings_sha256: str | None = None
    scales_sha256: str | None = None


@dataclass
class LandmaskRecord:
    """One landmask file."""

    tile: str
    lon_i: int
    lat_i: int
    key: str
    size: int
    sha256: str | None = None


@dataclass
class Inventory:
    """The result of `inventory`: tiles, landmasks and problems of one archive."""

    source: str
    layout: str
    year_root: str
    landmask_root: str | None
    tiles: list[TileRecord]
    landmasks: list[LandmaskRecord]
    problems: list[Problem] = field(default_factory=list)
    verified_hashes: bool = False
    registries: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not any(p.severity in (ERROR, WARNING) for p in self.problems)

    def summary(self) -> dict:
        """Counts per year and zone, bytes, landmask coverage and problem counts, JSON-ready."""
        per_year: dict[int, dict] = defaultdict(lambda: {"tiles": 0, "usable": 0, "bytes": 0})
        per_zone: dict[str, Counter] = defaultdict(Counter)
        for t in self.tiles:
            y = per_year[t.year]
            y["tiles"] += 1
            y["usable"] += int(t.usable)
            y["bytes"] += (t.embeddings_size or 0) + (t.scales_size or 0)
            per_zone[zone_group(t.zone)][str(t.year)] += 1
        cells = {(t.lon_i, t.lat_i) for t in self.tiles}
        masks = {(m.lon_i, m.lat_i) for m in self.landmasks}
        return {
            "source": self.source,
            "layout": self.layout,
            "years": sorted(per_year),
            "tiles": len(self.tiles),
            "usable_tiles": sum(t.usable for t in self.tiles),
            "tile_cells": len(cells),
            "bytes": sum(v["bytes"] for v in per_year.values()),
            "per_year": {str(k): v for k, v in sorted(per_year.items())},
            "per_zone": {z: dict(sorted(c.items())) for z, c in sorted(per_zone.items())},
            "landmasks": {
                "files": len(self.landmasks),
                "bytes": sum(m.size for m in self.landmasks),
                "tile_cells_covered": len(cells & masks),
                "tile_cells_without": len(cells - masks),
                "coverage": (len(cells & masks) / len(cells)) if cells else None,
                "without_tiles": len(masks - cells),
            },
            "registries": self.registries,
            "verified_hashes": self.verified_hashes,
            "problems": dict(sorted(Counter(p.kind for p in self.problems).items())),
            "clean": self.clean,
        }

    def to_json(self) -> dict:
        """Summary plus every problem."""
        return {"summary": self.summary(), "problems": [p.to_dict() for p in sorted(self.problems)]}


def build_inventory(
    archive: LegacyArchive, *, verify_hashes: bool = False, workers: int = 8, progress: bool = False
) -> Inventory:
    """Inspect every tile's headers and sizes, every landmask's magic bytes, and every registry."""
    storage = archive.storage
    problems = list(archive.problems)
    landmask_key = {tile: obj.key for tile, obj in archive.landmasks.items()}

    for t in archive.tiles:  # pyproj is not thread-safe: footprints are computed (and cached) here, not in workers
        footprint(t.tile)

    def inspect(t: TileFiles) -> tuple[TileRecord, list[Problem]]:
        return _inspect_tile(archive, t, landmask_key.get(t.tile))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        records = []
        for rec, probs in tqdm(pool.map(inspect, archive.tiles), total=len(archive.tiles), desc="tiles",
                               unit="tile", disable=not progress):
            records.append(rec)
            problems += probs
        landmasks = [LandmaskRecord(tile.name, tile.lon_i, tile.lat_i, obj.key, obj.size)
                     for tile, obj in sorted(archive.landmasks.items())]
        for probs in pool.map(lambda m: _inspect_landmask(archive, m), landmasks):
            problems += probs

    expectations, reg_problems = load_expectations(archive)
    problems += reg_problems
    listed: dict[str, ObjectInfo] = {}
    for t in archive.tiles:
        for obj in (t.embeddings, t.scales):
            if obj is not None:
                listed[obj.key] = obj
    listed.update({obj.key: obj for obj in archive.landmasks.values()})
    problems += check_sizes(listed, expectations)

    if verify_hashes:
        objects = sorted(listed.values(), key=lambda o: o.key)
        digests, hash_problems = hash_files(storage, objects, workers=workers, progress=progress)
        problems += hash_problems + check_hashes(digests, expectations)
        for r in records:
            r.embeddings_sha256 = digests.get(r.embeddings_key)
            r.scales_sha256 = digests.get(r.scales_key)
        for m in landmasks:
            m.sha256 = digests.get(m.key)

    bad_keys = {p.path for p in problems if p.severity == ERROR}
    for r in records:
        if r.embeddings_key in bad_keys or r.scales_key in bad_keys:
            r.usable = False
    registries = sorted([o.key for o in archive.text_registries] + list(archive.parquet_manifests)
                        + ([archive.top_hash_file.key] if archive.top_hash_file else [])
                        + (["per-directory SHA256"] if archive.dir_hash_files else []))
    owners: dict[str, tuple[int | None, str]] = {m.key: (None, m.tile) for m in landmasks}
    for r in records:
        owners[r.embeddings_key] = owners[r.scales_key] = (r.year, r.tile)
    return Inventory(storage.describe(), archive.layout, archive.year_root, archive.landmask_root, records,
                     landmasks, _attribute(problems, owners), verify_hashes, registries)


def _attribute(problems: list[Problem], owners: dict[str, tuple[int | None, str]]) -> list[Problem]:
    """Name the tile (and year) of problems found by key only, and drop duplicates."""
    out = set()
    for p in problems:
        if p.tile is None and p.path in owners:
            year, tile = owners[p.path]
            p = replace(p, year=year, tile=tile)
        out.add(p)
    return sorted(out)


def _inspect_tile(archive: LegacyArchive, t: TileFiles, landmask: str | None) -> tuple[TileRecord, list[Problem]]:
    fp = footprint(t.tile)
    problems: list[Problem] = []

    def problem(key: str, kind: str, msg: str, severity: str = ERROR) -> None:
        problems.append(Problem(key, kind, msg, severity, t.year, t.name))

    headers: dict[str, NpyHeader | None] = {"embeddings": None, "scales": None}
    for role, obj, key, check in (("embeddings", t.embeddings, t.embeddings_key, check_embeddings_header),
                                  ("scales", t.scales, t.scales_key, check_scales_header)):
        if obj is None:
            problem(key, f"missing-{role}", f"the {role} file of this tile is missing")
            continue
        try:
            h = read_npy_header(archive.storage, key)
        except ArchiveError as e:
            problem(key, "bad-header", e.reason)
            continue
        except TransientStorageError:
            raise  # says nothing about the file: never recorded as a problem of the archive
        except StorageError as e:
            problem(key, "unreadable", e.reason)
            continue
        for kind, msg in check(h):
            problem(key, kind, msg)
        if obj.size < h.expected_size:
            problem(key, "truncated", f"{obj.size} bytes, header and shape {h.shape} need {h.expected_size}")
        elif obj.size > h.expected_size:
            problem(key, "oversized", f"{obj.size} bytes, {obj.size - h.expected_size} more than header and shape need")
        headers[role] = h
    emb, sc = headers["embeddings"], headers["scales"]
    if emb is not None and sc is not None and emb.shape[:2] != sc.shape[:2]:
        problem(t.scales_key, "shape-mismatch", f"scales {sc.shape[:2]} but embeddings {emb.shape[:2]}")
    hw = (emb or sc).shape[:2] if (emb or sc) is not None else None
    if hw is not None and len(hw) == 2 and tuple(hw) != (fp.height, fp.width):
        problem(t.embeddings_key if emb is not None else t.scales_key, "footprint-mismatch",
                f"shape {hw[0]}x{hw[1]} differs from the {fp.height}x{fp.width} footprint of the 0.1° cell "
                f"(placed at its offset with its real shape)", WARNING)
    record = TileRecord(
        year=t.year, tile=t.name, lon_i=t.tile.lon_i, lat_i=t.tile.lat_i, zone=fp.zone, epsg=fp.epsg,
        embeddings_key=t.embeddings_key, embeddings_size=t.embeddings.size if t.embeddings else None,
        scales_key=t.scales_key, scales_size=t.scales.size if t.scales else None,
        height=hw[0] if hw is not None and len(hw) == 2 else None,
        width=hw[1] if hw is not None and len(hw) == 2 else None,
        footprint_height=fp.height, footprint_width=fp.width,
        embeddings_offset=emb.data_offset if emb else None, scales_offset=sc.data_offset if sc else None,
        landmask_key=landmask,
    )
    record.usable = not any(p.severity == ERROR for p in problems)
    return record, problems


def _inspect_landmask(archive: LegacyArchive, m: LandmaskRecord) -> list[Problem]:
    try:
        head = archive.storage.read_range(m.key, 0, 4)
    except TransientStorageError:
        raise
    except StorageError as e:
        return [Problem(m.key, "unreadable", e.reason, tile=m.tile)]
    if head not in TIFF_MAGICS:
        return [Problem(m.key, "bad-landmask", f"not a TIFF file (starts with {head!r})", tile=m.tile)]
    return []


def write_inventory(inv: Inventory, path: str | Path) -> None:
    """Write the inventory as one Parquet file: a row per tile-year, per landmask and per problem."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"record": "tile", **asdict(t)} for t in inv.tiles]
    rows += [{"record": "landmask", "tile": m.tile, "lon_i": m.lon_i, "lat_i": m.lat_i, "landmask_key": m.key,
              "landmask_size": m.size, "landmask_sha256": m.sha256} for m in inv.landmasks]
    rows += [{"record": "problem", "year": p.year, "tile": p.tile, "problem_path": p.path, "problem_kind": p.kind,
              "problem_message": p.message, "problem_severity": p.severity} for p in inv.problems]
    meta = {
        "format": INVENTORY_FORMAT,
        "source": inv.source,
        "layout": inv.layout,
        "year_root": inv.year_root,
        "landmask_root": inv.landmask_root,
        "verified_hashes": inv.verified_hashes,
        "registries": inv.registries,
    }
    table = pa.Table.from_pylist(rows, schema=_schema()).replace_schema_metadata(
        {b"tessera-inventory": json.dumps(meta).encode()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_inventory(path: str | Path) -> Inventory:
    """Load an inventory written by `write_inventory`, so later steps need not list the archive again; ArchiveError
    naming the file (and row) when it is not one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as e:  # ArrowNotImplementedError for some damaged files
        raise ArchiveError(str(path), f"cannot read inventory: {e}") from e
    raw = (table.schema.metadata or {}).get(b"tessera-inventory")
    if raw is None:
        raise ArchiveError(str(path), "not a tessera-transcode inventory (no tessera-inventory metadata)")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise ArchiveError(str(path), f"unreadable tessera-inventory metadata: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != INVENTORY_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ArchiveError(str(path), f"inventory format {found} not supported (need {INVENTORY_FORMAT})")
    meta_types = {"source": str, "layout": str, "year_root": str, "landmask_root": (str, type(None)),
                  "verified_hashes": bool, "registries": list}
    wrong = [k for k, t in meta_types.items() if k not in meta or not isinstance(meta[k], t)]
    if wrong:
        raise ArchiveError(str(path), f"tessera-inventory metadata lacks or mistypes {', '.join(wrong)}")
    schema = _schema()
    if table.schema.remove_metadata() != schema:
        raise ArchiveError(str(path), f"not an inventory of format {INVENTORY_FORMAT}: its columns differ from "
                           f"{', '.join(schema.names)} or have other types")
    tiles, masks, problems = [], [], []
    tile_fields = list(TileRecord.__dataclass_fields__)
    try:
        rows = table.to_pylist()
    except ValueError as e:  # strings that are not UTF-8
        raise ArchiveError(str(path), f"unreadable values: {e}") from e
    for i, row in enumerate(rows):
        kind = row["record"]
        try:
            if kind == "tile":
                tiles.append(_checked_tile(TileRecord(**{k: row[k] for k in tile_fields})))
            elif kind == "landmask":
                masks.append(_checked_landmask(LandmaskRecord(row["tile"], row["lon_i"], row["lat_i"],
                                                              row["landmask_key"], row["landmask_size"],
                                                              row["landmask_sha256"])))
            elif kind == "problem":
                problem = Problem(row["problem_path"], row["problem_kind"], row["problem_message"],
                                  row["problem_severity"], row["year"], row["tile"])
                if None in (problem.path, problem.kind, problem.message, problem.severity):
                    raise ValueError("a problem needs its path, kind, message and severity")
                problems.append(problem)
            else:
                raise ValueError(f"unknown record kind {kind!r}")
        except ValueError as e:
            raise ArchiveError(str(path), f"row {i}: {e}") from e
    return Inventory(meta["source"], meta["layout"], meta["year_root"], meta["landmask_root"], tiles, masks,
                     problems, meta["verified_hashes"], meta["registries"])


def _checked_cell(tile: str | None, lon_i: int | None, lat_i: int | None) -> None:
    """The tile name is a valid 0.1° cell and agrees with (lon_i, lat_i)."""
    cell = parse_tile_name(tile or "")
    if (cell.lon_i, cell.lat_i) != (lon_i, lat_i):
        raise ValueError(f"tile {tile} does not lie at lon_i={lon_i}, lat_i={lat_i}")


def _checked_tile(t: TileRecord) -> TileRecord:
    """A tile record whose values a plan can use: ValueError naming the first that is not."""
    _checked_cell(t.tile, t.lon_i, t.lat_i)
    if t.year is None or not 0 <= t.year <= 9999:
        raise ValueError(f"tile {t.tile}: year {t.year} is not a four-digit year")
    if t.zone != utm_zone(t.lon_i / 100) or t.embeddings_key is None or t.scales_key is None or t.usable is None:
        raise ValueError(f"tile {t.tile}: zone, file keys or usable flag missing or wrong")
    if t.usable:
        if t.height is None or t.width is None or not (1 <= t.height <= MAX_TILE_SIDE and 1 <= t.width <= MAX_TILE_SIDE):
            raise ValueError(f"tile {t.tile}: impossible shape {t.height}x{t.width}")
        if t.embeddings_offset is None or t.scales_offset is None or t.embeddings_offset < 10 or t.scales_offset < 10:
            raise ValueError(f"tile {t.tile}: data offsets {t.embeddings_offset}, {t.scales_offset} are not .npy "
                             "header lengths")
    return t


def _checked_landmask(m: LandmaskRecord) -> LandmaskRecord:
    _checked_cell(m.tile, m.lon_i, m.lat_i)
    if m.key is None or m.size is None or m.size < 0:
        raise ValueError(f"landmask {m.tile}: key or size missing")
    return m


def _schema():
    import pyarrow as pa

    i32, i64, s = pa.int32(), pa.int64(), pa.string()
    types = {"year": i32, "tile": s, "lon_i": i32, "lat_i": i32, "zone": i32, "epsg": i32, "embeddings_key": s,
             "embeddings_size": i64, "scales_key": s, "scales_size": i64, "height": i32, "width": i32,
             "footprint_height": i32, "footprint_width": i32, "embeddings_offset": i32, "scales_offset": i32,
             "landmask_key": s, "usable": pa.bool_(), "embeddings_sha256": s, "scales_sha256": s}
    fields = [("record", s)] + [(name, types[name]) for name in TileRecord.__dataclass_fields__]
    fields += [("landmask_size", i64), ("landmask_sha256", s), ("problem_path", s), ("problem_kind", s),
               ("problem_message", s), ("problem_severity", s)]
    return pa.schema(fields)
