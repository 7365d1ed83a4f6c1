"""The inventory as one Parquet file (a row per tile-year, per landmask and per problem), written and read
in batches of rows so that neither side holds a Python object per tile-year."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transcode.errors import ArchiveError
from transcode.format.arrays import BANDS
from transcode.format.tilecolumns import footprints
from transcode.legacy.dataset import Dataset
from transcode.legacy.inventorydata import INVENTORY_FORMAT, Inventory
from transcode.legacy.npyheader import MAX_TILE_SIDE
from transcode.legacy.problems import ERROR, INFO, WARNING, Problem
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

_MIN_DATA_OFFSET = 10  # magic, version and header length of the shortest .npy header
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
    """Load an inventory written by `write_inventory`, so later steps need not list the archive again; ArchiveError
    naming the file (and the row) when it is not one: its metadata, columns and every row are checked, a row
    group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = str(path)
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (OSError, ValueError, pa.ArrowException) as e:  # ArrowNotImplementedError for some damaged files
        raise ArchiveError(where, f"cannot read inventory: {e}") from e
    meta, dataset = _metadata(where, schema.metadata)
    if schema.remove_metadata() != _schema():
        raise ArchiveError(where, f"not an inventory of format {INVENTORY_FORMAT}: its columns differ from "
                           f"{', '.join(_schema().names)} or have other types")
    hashed = meta["verified_hashes"]
    tdt, mdt = tile_dtype(hashed), landmask_dtype(hashed)
    # room for every row of the file in each: pages of zeros are mapped only once written, so the unused room
    # costs no memory, and the tables never grow (growing one rewrites its spare quarter in zeros)
    rows = pf.metadata.num_rows
    tiles, masks, problems = RowBuffer(tdt, rows), RowBuffer(mdt, rows), []
    hashes = ["embeddings_sha256", "scales_sha256"] if hashed else []
    wanted = {"tile": [*_TILE_INTS, "usable", "landmask_key", *hashes],
              "landmask": ["lon_i", "lat_i", "landmask_size", *(["landmask_sha256"] if hashed else [])],
              "problem": _PROBLEM_COLS}
    first = 0  # the row number of the row group's first row
    for group in range(pf.num_row_groups):  # each row group holds one kind of record (see write_inventory)
        try:
            kinds = pf.read_row_group(group, columns=["record"], use_threads=False).column("record")
            if not len(kinds):
                continue
            kind = kinds[0].as_py()
            if kind not in wanted:
                raise _BadRow(0, f"unknown record kind {kind!r}")
            _require(_equal(kinds, kind), lambda i, kinds=kinds, kind=kind: f"a {kinds[i].as_py()!r} record in a row "
                     f"group of {kind!r} records (write_inventory writes one kind per row group)")
            part = pf.read_row_group(group, columns=wanted[kind], use_threads=False)
            if kind == "tile":
                tiles.extend(_tile_rows(part, tdt, hashes))
            elif kind == "landmask":
                masks.extend(_landmask_rows(part, mdt, hashed))
            else:
                problems += _problems(part)
        except _BadRow as e:
            raise ArchiveError(where, f"row {first + e.row}: {e.reason}") from None
        except (OSError, ValueError, pa.ArrowException) as e:  # a row group damaged past the footer; not UTF-8
            raise ArchiveError(where, f"row group {group} (from row {first}): unreadable values: {e}") from e
        first += len(kinds)
        del part
    pa.default_memory_pool().release_unused()  # what the row groups needed goes back before the caller's work
    table, cells = tiles.finish(), masks.finish()
    canonical_sort(table)
    sort_rows(cells, cell_key(cells["lon_i"], cells["lat_i"]))
    return Inventory(meta["source"], meta["layout"], meta["year_root"], meta["landmask_root"], table, cells,
                     problems, hashed, meta["registries"], dataset)


_META_TYPES = {"source": str, "layout": str, "year_root": str, "landmask_root": (str, type(None)),
               "verified_hashes": bool, "registries": list}


def _metadata(where: str, raw_meta: dict | None) -> tuple[dict, Dataset]:
    """The file's tessera-inventory metadata, checked key by key, and its dataset."""
    raw = (raw_meta or {}).get(META_KEY)
    if raw is None:
        raise ArchiveError(where, "not a tessera-transcode inventory (no tessera-inventory metadata)")
    try:
        meta = json.loads(raw)
    except ValueError as e:  # not JSON, or not UTF-8
        raise ArchiveError(where, f"unreadable tessera-inventory metadata: {e}") from e
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != INVENTORY_FORMAT or isinstance(found, bool):
        raise ArchiveError(where, f"inventory format {found!r:.40} not supported (need {INVENTORY_FORMAT})")
    wrong = [k for k, t in _META_TYPES.items() if k not in meta or not isinstance(meta[k], t)]
    if meta.get("layout") not in ("local", "object"):
        wrong.append("layout")
    if isinstance(meta.get("registries"), list) and not all(isinstance(r, str) for r in meta["registries"]):
        wrong.append("registries")
    if wrong:
        raise ArchiveError(where, f"tessera-inventory metadata lacks or mistypes {', '.join(dict.fromkeys(wrong))}")
    try:
        return meta, Dataset.from_dict(meta.get("dataset"))
    except ValueError as e:
        raise ArchiveError(where, f"tessera-inventory metadata: {e}") from None


class _BadRow(Exception):
    """A row of a row group that no inventory holds (its index in the row group, and why)."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(row, reason)
        self.row, self.reason = row, reason


def _require(ok: np.ndarray, why: Callable[[int], str]) -> None:
    """_BadRow at the first row where `ok` is False; `why(row)` says what is wrong with it."""
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise _BadRow(int(bad[0]), why(int(bad[0])))


def _equal(col, other) -> np.ndarray:
    """Where the column equals the other (a value or a column; False where null)."""
    import pyarrow.compute as pc

    return pc.fill_null(pc.equal(col, other), False).to_numpy(zero_copy_only=False)


def _column(part, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An integer or boolean column as int64 values (-1 where null) and its validity."""
    import pyarrow.compute as pc

    col = part.column(name)
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
    return pc.fill_null(pc.cast(col, "int64"), -1).to_numpy(zero_copy_only=False), valid


def _shown(column: tuple[np.ndarray, np.ndarray], i: int) -> str:
    """Row i of a `_column` as a message shows it."""
    values, valid = column
    return str(values[i]) if valid[i] else "null"


def _cells(part) -> tuple[np.ndarray, np.ndarray]:
    """lon_i and lat_i of each row, checked: a 0.1° tile centre (an odd multiple of 0.05°) on the globe. (Names
    and keys are derived from them: the stored ones are not read.)"""
    lon_c, lat_c = _column(part, "lon_i"), _column(part, "lat_i")
    (lon, has_lon), (lat, has_lat) = lon_c, lat_c
    _require(has_lon & has_lat & (lon % 10 == 5) & (lat % 10 == 5) & (np.abs(lon) < 18000) & (np.abs(lat) < 9000),
             lambda i: f"lon_i={_shown(lon_c, i)}, lat_i={_shown(lat_c, i)} is not a 0.1° tile centre")
    return lon, lat


def _tile_rows(part, dtype: np.dtype, hashes: list[str]) -> np.ndarray:
    """Tile rows of one row group as table rows, each checked: cell, year, zone, usable flag; sizes,
    shapes and offsets absent or not negative, and for a usable tile present, its shape a tile's, its offsets
    past a .npy header and its files long enough for both."""
    import pyarrow.compute as pc

    t = np.zeros(len(part), dtype)
    lon, lat = _cells(part)
    t["lon_i"], t["lat_i"] = lon, lat
    cols = {name: _column(part, name) for name in ("year", "zone", *_NULLABLE)}
    year, has_year = cols["year"]
    _require(has_year & (year >= 0) & (year <= 9999), lambda i: f"year {_shown(cols['year'], i)} is not a year")
    zone, has_zone = cols["zone"]
    want = np.clip(np.floor((lon / 100 + 180.0) / 6.0).astype(np.int64) + 1, 1, 60)  # grid.utm_zone
    _require(has_zone & (zone == want),
             lambda i: f"zone {_shown(cols['zone'], i)}, but lon_i={lon[i]} lies in zone {want[i]}")
    usable, has_usable = _column(part, "usable")
    _require(has_usable, lambda i: "no usable flag")
    for name in _NULLABLE:  # null (-1) means absent; no value is negative
        values, valid = cols[name]
        _require(~valid | (values >= 0), lambda i, name=name, values=values: f"{name} {values[i]} is negative")
    h, w = cols["height"][0], cols["width"][0]
    use = usable == 1
    _require(~use | ((h >= 1) & (h <= MAX_TILE_SIDE) & (w >= 1) & (w <= MAX_TILE_SIDE)),
             lambda i: f"a usable tile of impossible shape {_shown(cols['height'], i)}x{_shown(cols['width'], i)} "
                       f"(sides 1..{MAX_TILE_SIDE})")
    for role, itemsize in (("embeddings", BANDS), ("scales", 4)):
        size, offset = f"{role}_size", f"{role}_offset"
        _require(~use | (cols[offset][0] >= _MIN_DATA_OFFSET), lambda i, offset=offset:
                 f"{offset} {_shown(cols[offset], i)} of a usable tile is not a .npy header's length")
        _require(~use | (cols[size][0] >= cols[offset][0] + h * w * itemsize), lambda i, size=size:
                 f"{size} {_shown(cols[size], i)} of a usable tile is less than its header and shape need")
    for name in ("year", "zone", *_NULLABLE):
        values = cols[name][0]
        t[name] = np.minimum(values, MAX_SIDE) if name in ("height", "width") else values
    t["usable"] = use
    t["landmask"] = pc.is_valid(part.column("landmask_key")).to_numpy(zero_copy_only=False)
    for name in hashes:
        t[name] = _digest_column(part.column(name), name)
    return t


def _landmask_rows(part, dtype: np.dtype, hashed: bool) -> np.ndarray:
    """Landmask rows of one row group, each checked: cell and size."""
    m = np.zeros(len(part), dtype)
    m["lon_i"], m["lat_i"] = _cells(part)
    size, has_size = _column(part, "landmask_size")
    _require(has_size & (size >= 0), lambda i: f"landmask_size {_shown((size, has_size), i)} is missing or negative")
    m["size"] = size
    if hashed:
        m["sha256"] = _digest_column(part.column("landmask_sha256"), "landmask_sha256")
    return m


def _problems(part) -> list[Problem]:
    """Problem rows of one row group (a few: one Python object each), each with its path, kind, message and a
    known severity."""
    out = []
    for i, r in enumerate(part.to_pylist()):  # UnicodeDecodeError (a ValueError) for strings that are not UTF-8
        if None in (r["problem_path"], r["problem_kind"], r["problem_message"]) or r["problem_severity"] not in (
                ERROR, WARNING, INFO):
            raise _BadRow(i, "a problem needs its path, kind, message and a severity (error, warning or info)")
        out.append(Problem(r["problem_path"], r["problem_kind"], r["problem_message"], r["problem_severity"],
                           r["year"], r["tile"]))
    return out


_HEX = np.full(256, 255, np.uint8)  # ASCII hex digit -> its value; 255: not a digit
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def _digest_column(col, name: str) -> np.ndarray:
    """SHA-256 hex strings (null: not hashed) as 32 bytes each (zeros for none), decoded as one array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = pc.fill_null(col, "0" * 64).combine_chunks().cast(pa.binary())  # no copy, no UTF-8 decoding
    n = len(raw)

    def why(i: int) -> str:
        return f"{name} {raw[i].as_py()!r:.80} is not a SHA-256 hex digest"

    _require(pc.binary_length(raw).to_numpy(zero_copy_only=False) == 64, why)
    if not n:
        return np.zeros((0, 32), np.uint8)
    offsets = np.frombuffer(raw.buffers()[1], np.int32)[raw.offset:raw.offset + n + 1]
    digits = _HEX[np.frombuffer(raw.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]].reshape(n, 32, 2)
    _require(~(digits == 255).any(axis=(1, 2)), why)
    return digits[:, :, 0] << 4 | digits[:, :, 1]
