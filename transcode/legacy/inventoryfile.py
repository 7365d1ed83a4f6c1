"""The inventory as one Parquet file (a row per tile-year, per landmask and per problem), written and read
in batches of rows so that neither side holds a Python object per tile-year."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from transcode.errors import ArchiveError
from transcode.format.tilecolumns import footprints
from transcode.legacy.dataset import Dataset
from transcode.legacy.inventorydata import INVENTORY_FORMAT, Inventory
from transcode.legacy.problems import Problem
from transcode.legacy.tiletable import (
    MAX_SIDE,
    RowBuffer,
    canonical_sort,
    cell_key,
    landmask_dtype,
    names,
    sort_rows,
    tile_dtype,
)

BATCH = 16384  # rows per row group: what a reader or writer holds at once
META_KEY = b"tessera-inventory"
_TILE_INTS = ["year", "lon_i", "lat_i", "zone", "height", "width", "embeddings_size", "scales_size",
              "embeddings_offset", "scales_offset"]
_NULLABLE = {"height", "width", "embeddings_size", "scales_size", "embeddings_offset", "scales_offset"}  # -1: null
_PROBLEM_COLS = ["year", "tile", "problem_path", "problem_kind", "problem_message", "problem_severity"]


def _schema():
    import pyarrow as pa

    i32, i64, s = pa.int32(), pa.int64(), pa.string()
    fields = [("record", s), ("year", i32), ("tile", s), ("lon_i", i32), ("lat_i", i32), ("zone", i32),
              ("epsg", i32), ("embeddings_key", s), ("embeddings_size", i64), ("scales_key", s), ("scales_size", i64),
              ("height", i32), ("width", i32), ("footprint_height", i32), ("footprint_width", i32),
              ("embeddings_offset", i32), ("scales_offset", i32), ("landmask_key", s), ("usable", pa.bool_()),
              ("embeddings_sha256", s), ("scales_sha256", s), ("landmask_size", i64), ("landmask_sha256", s),
              ("problem_path", s), ("problem_kind", s), ("problem_message", s), ("problem_severity", s)]
    return pa.schema(fields)


def _hex_column(digests: np.ndarray) -> list[str | None]:
    return [d.tobytes().hex() if d.any() else None for d in digests]


def _table(schema, n: int, columns: dict):
    import pyarrow as pa

    return pa.table({f.name: columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema},
                    schema=schema)


def _tile_batch(inv: Inventory, t: np.ndarray, schema):
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(t)
    tile = pa.array(names(t["lon_i"], t["lat_i"]), pa.string())  # keys are joined by Arrow, not as Python strings
    directory = pc.binary_join_element_wise(inv.year_root, pc.cast(pa.array(t["year"]), pa.string()), tile, "/")
    landmask_root = inv.landmask_key("")[: -len(".tiff")]
    stem = pc.binary_join_element_wise(directory, tile, "/")
    cols = {"record": pa.array(["tile"] * n), "tile": tile, "usable": pa.array(t["usable"]),
            "embeddings_key": pc.binary_join_element_wise(stem, ".npy", ""),
            "scales_key": pc.binary_join_element_wise(stem, "_scales.npy", ""),
            "landmask_key": pc.if_else(pa.array(t["landmask"]),
                                       pc.binary_join_element_wise(landmask_root, tile, ".tiff", ""),
                                       pa.scalar(None, pa.string()))}
    for name in _TILE_INTS:
        values = t[name].astype(np.int64)
        cols[name] = pa.array(values, schema.field(name).type, mask=(values < 0) if name in _NULLABLE else None)
    fp = footprints(t["lon_i"], t["lat_i"])
    cols["epsg"] = pa.array(fp.epsg, pa.int32())
    cols["footprint_height"], cols["footprint_width"] = pa.array(fp.height, pa.int32()), pa.array(fp.width, pa.int32())
    if "embeddings_sha256" in t.dtype.names:
        cols["embeddings_sha256"] = pa.array(_hex_column(t["embeddings_sha256"]), pa.string())
        cols["scales_sha256"] = pa.array(_hex_column(t["scales_sha256"]), pa.string())
    return _table(schema, n, cols)


def _landmask_batch(inv: Inventory, m: np.ndarray, schema):
    import pyarrow as pa

    n = len(m)
    tile = names(m["lon_i"], m["lat_i"])
    cols = {"record": pa.array(["landmask"] * n), "tile": pa.array(tile, pa.string()),
            "lon_i": pa.array(m["lon_i"].astype(np.int32)), "lat_i": pa.array(m["lat_i"].astype(np.int32)),
            "landmask_key": pa.array([inv.landmask_key(name) for name in tile], pa.string()),
            "landmask_size": pa.array(m["size"].astype(np.int64))}
    if "sha256" in m.dtype.names:
        cols["landmask_sha256"] = pa.array(_hex_column(m["sha256"]), pa.string())
    return _table(schema, n, cols)


def _problem_batch(problems: list[Problem], schema):
    import pyarrow as pa

    n = len(problems)
    cols = {"record": pa.array(["problem"] * n), "year": pa.array([p.year for p in problems], pa.int32()),
            "tile": pa.array([p.tile for p in problems], pa.string()),
            "problem_path": pa.array([p.path for p in problems], pa.string()),
            "problem_kind": pa.array([p.kind for p in problems], pa.string()),
            "problem_message": pa.array([p.message for p in problems], pa.string()),
            "problem_severity": pa.array([p.severity for p in problems], pa.string())}
    return _table(schema, n, cols)


def write_inventory(inv: Inventory, path: str | Path) -> None:
    """Write the inventory as one Parquet file, batch by batch; it appears whole (temporary file + rename)."""
    import pyarrow.parquet as pq

    meta = {"format": INVENTORY_FORMAT, "source": inv.source, "layout": inv.layout, "year_root": inv.year_root,
            "landmask_root": inv.landmask_root, "verified_hashes": inv.verified_hashes,
            "registries": inv.registries, "dataset": inv.dataset.to_dict()}
    schema = _schema().with_metadata({META_KEY: json.dumps(meta).encode()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with pq.ParquetWriter(tmp, schema) as w:  # one write per batch: a row group holds one kind of record
        for start in range(0, len(inv.table), BATCH):
            w.write_table(_tile_batch(inv, inv.table[start:start + BATCH], schema))
        for start in range(0, len(inv.masks), BATCH):
            w.write_table(_landmask_batch(inv, inv.masks[start:start + BATCH], schema))
        problems = sorted(inv.problems)
        for start in range(0, len(problems), BATCH):
            w.write_table(_problem_batch(problems[start:start + BATCH], schema))
    tmp.replace(path)


def read_inventory(path: str | Path) -> Inventory:
    """Load an inventory written by `write_inventory`, so later steps need not list the archive again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, ValueError) as e:
        raise ArchiveError(str(path), f"cannot read inventory: {e}") from e
    raw = (pf.schema_arrow.metadata or {}).get(META_KEY)
    if raw is None:
        raise ArchiveError(str(path), "not a tessera-transcode inventory (no tessera-inventory metadata)")
    meta = json.loads(raw)
    if meta.get("format") != INVENTORY_FORMAT:
        raise ArchiveError(str(path), f"inventory format {meta.get('format')} not supported (need {INVENTORY_FORMAT})")
    hashed = bool(meta["verified_hashes"])
    tdt, mdt = tile_dtype(hashed), landmask_dtype(hashed)
    tiles, masks, problems = RowBuffer(tdt), RowBuffer(mdt), []
    hashes = ["embeddings_sha256", "scales_sha256"] if hashed else []
    wanted = {"tile": [*_TILE_INTS, "usable", "landmask_key", *hashes],
              "landmask": ["lon_i", "lat_i", "landmask_size", *(["landmask_sha256"] if hashed else [])],
              "problem": _PROBLEM_COLS}
    for group in range(pf.num_row_groups):  # each row group holds one kind of record (see write_inventory)
        kinds = pf.read_row_group(group, columns=["record"], use_threads=False).column("record").unique().to_pylist()
        if len(kinds) != 1 or kinds[0] not in wanted:
            raise ArchiveError(str(path), f"row group {group} mixes or lacks record kinds: {kinds}")
        part = pf.read_row_group(group, columns=wanted[kinds[0]], use_threads=False)
        if kinds[0] == "tile":
            tiles.extend(_tile_rows(part, tdt, hashes))
        elif kinds[0] == "landmask":
            masks.extend(_landmask_rows(part, mdt, hashed))
        else:
            problems += [Problem(r["problem_path"], r["problem_kind"], r["problem_message"], r["problem_severity"],
                                 r["year"], r["tile"]) for r in part.to_pylist()]
        del part
    pa.default_memory_pool().release_unused()  # what the row groups needed goes back before the caller's work
    table, cells = tiles.finish(), masks.finish()
    canonical_sort(table)
    sort_rows(cells, cell_key(cells["lon_i"], cells["lat_i"]))
    return Inventory(meta["source"], meta["layout"], meta["year_root"], meta["landmask_root"], table, cells,
                     problems, hashed, meta["registries"], Dataset.from_dict(meta.get("dataset")))


def _ints(part, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.fill_null(part.column(name), -1).to_numpy(zero_copy_only=False)


def _tile_rows(part, dtype: np.dtype, hashes: list[str]) -> np.ndarray:
    import pyarrow.compute as pc

    t = np.zeros(len(part), dtype)
    for name in _TILE_INTS:
        values = _ints(part, name)
        t[name] = np.minimum(values, MAX_SIDE) if name in ("height", "width") else values
    t["usable"] = part.column("usable").to_numpy(zero_copy_only=False)
    t["landmask"] = pc.is_valid(part.column("landmask_key")).to_numpy(zero_copy_only=False)
    for name in hashes:
        t[name] = _digest_column(part.column(name))
    return t


def _landmask_rows(part, dtype: np.dtype, hashed: bool) -> np.ndarray:
    m = np.zeros(len(part), dtype)
    m["lon_i"], m["lat_i"], m["size"] = _ints(part, "lon_i"), _ints(part, "lat_i"), _ints(part, "landmask_size")
    if hashed:
        m["sha256"] = _digest_column(part.column("landmask_sha256"))
    return m


def _digest_column(col) -> np.ndarray:
    return np.frombuffer(b"".join(bytes.fromhex(v) if v else bytes(32) for v in col.to_pylist()),
                         np.uint8).reshape(-1, 32)
