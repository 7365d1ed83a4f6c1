"""The inventory as one Parquet file (a row per tile-year, per landmask and per problem), written and read
in batches of rows so that neither side holds a Python object per tile-year."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from transcode.errors import ArchiveError
from transcode.legacy.dataset import Dataset
from transcode.legacy.inventorydata import INVENTORY_FORMAT, Inventory
from transcode.legacy.problems import Problem
from transcode.legacy.tiletable import (
    RowBuffer,
    canonical_sort,
    cell_key,
    epsg_of,
    landmask_dtype,
    names,
    sort_rows,
    tile_dtype,
)

BATCH = 65536
META_KEY = b"tessera-inventory"
_TILE_INTS = ["year", "lon_i", "lat_i", "zone", "height", "width", "footprint_height", "footprint_width",
              "embeddings_size", "scales_size", "embeddings_offset", "scales_offset"]
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

    n = len(t)
    tile = names(t["lon_i"], t["lat_i"])
    years = t["year"].tolist()
    cols = {"record": pa.array(["tile"] * n), "tile": pa.array(tile), "usable": pa.array(t["usable"]),
            "embeddings_key": pa.array([inv.key(y, name) for y, name in zip(years, tile)]),
            "scales_key": pa.array([inv.key(y, name, "_scales.npy") for y, name in zip(years, tile)]),
            "landmask_key": pa.array([inv.landmask_key(name) if has else None
                                      for name, has in zip(tile, t["landmask"].tolist())], pa.string())}
    for name in _TILE_INTS:
        values = t[name].astype(np.int64)
        cols[name] = pa.array(values, schema.field(name).type, mask=(values < 0) if name in _NULLABLE else None)
    cols["epsg"] = pa.array(epsg_of(t["zone"], t["lat_i"]), pa.int32())
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
    with pq.ParquetWriter(tmp, schema) as w:
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
    import pyarrow.compute as pc
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
    columns = ["record", *_TILE_INTS, "tile", "landmask_key", "usable", "embeddings_sha256", "scales_sha256",
               "landmask_size", "landmask_sha256", *_PROBLEM_COLS[2:]]
    for batch in pf.iter_batches(batch_size=BATCH, columns=columns):
        record = batch.column("record").to_numpy(zero_copy_only=False)
        for kind, sel in (("tile", record == "tile"), ("landmask", record == "landmask"),
                          ("problem", record == "problem")):
            if not sel.any():
                continue
            part = batch.filter(sel)
            col = {name: part.column(name) for name in part.schema.names}

            def ints(name: str) -> np.ndarray:
                return pc.fill_null(col[name], -1).to_numpy(zero_copy_only=False)  # noqa: B023

            if kind == "tile":
                t = np.zeros(len(part), tdt)
                for name in _TILE_INTS:
                    t[name] = ints(name)
                t["usable"] = col["usable"].to_numpy(zero_copy_only=False)
                t["landmask"] = pc.is_valid(col["landmask_key"]).to_numpy(zero_copy_only=False)
                if hashed:
                    t["embeddings_sha256"] = _digest_column(col["embeddings_sha256"])
                    t["scales_sha256"] = _digest_column(col["scales_sha256"])
                tiles.extend(t)
            elif kind == "landmask":
                m = np.zeros(len(part), mdt)
                m["lon_i"], m["lat_i"], m["size"] = ints("lon_i"), ints("lat_i"), ints("landmask_size")
                if hashed:
                    m["sha256"] = _digest_column(col["landmask_sha256"])
                masks.extend(m)
            else:
                problems += [Problem(r["problem_path"], r["problem_kind"], r["problem_message"], r["problem_severity"],
                                     r["year"], r["tile"]) for r in part.select(_PROBLEM_COLS).to_pylist()]
    table, cells = tiles.finish(), masks.finish()
    canonical_sort(table)
    sort_rows(cells, cell_key(cells["lon_i"], cells["lat_i"]))
    return Inventory(meta["source"], meta["layout"], meta["year_root"], meta["landmask_root"], table, cells,
                     problems, hashed, meta["registries"], Dataset.from_dict(meta.get("dataset")))


def _digest_column(col) -> np.ndarray:
    return np.frombuffer(b"".join(bytes.fromhex(v) if v else bytes(32) for v in col.to_pylist()),
                         np.uint8).reshape(-1, 32)
