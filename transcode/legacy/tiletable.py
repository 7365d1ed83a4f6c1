"""Tile-years and landmasks as columns: one numpy structured array row per tile-year (37 bytes, 64 more with
hashes) instead of a Python object, so millions of them fit in memory. Keys, EPSG codes and footprints are not
stored: they follow from the year, the tile, the zone and the archive's roots. Header sides above 32767 (never a
tile: reported as bad-shape) are kept as 32767. Helpers here keep transient copies small:
tables grow in place, are permuted field by field, and cells are gathered year by year."""

from __future__ import annotations

import numpy as np

from transcode.format.grid import tile_name

_TILE_FIELDS = [
    ("year", "<i2"), ("lon_i", "<i2"), ("lat_i", "<i2"), ("zone", "i1"),
    ("height", "<i2"), ("width", "<i2"),  # -1: no readable 2-D header
    ("embeddings_size", "<i8"), ("scales_size", "<i8"),  # -1: file missing
    ("embeddings_offset", "<i4"), ("scales_offset", "<i4"),  # -1: header unreadable
    ("usable", "?"), ("landmask", "?"),
]
_HASH_FIELDS = [("embeddings_sha256", "u1", (32,)), ("scales_sha256", "u1", (32,))]  # all zero: not hashed
TILE_DTYPE = np.dtype(_TILE_FIELDS)
MAX_SIDE = 32767
TILE_DTYPE_HASHED = np.dtype(_TILE_FIELDS + _HASH_FIELDS)
LANDMASK_DTYPE = np.dtype([("lon_i", "<i2"), ("lat_i", "<i2"), ("size", "<i8")])
LANDMASK_DTYPE_HASHED = np.dtype(LANDMASK_DTYPE.descr + [("sha256", "u1", (32,))])


def tile_dtype(hashed: bool) -> np.dtype:
    return TILE_DTYPE_HASHED if hashed else TILE_DTYPE


def landmask_dtype(hashed: bool) -> np.dtype:
    return LANDMASK_DTYPE_HASHED if hashed else LANDMASK_DTYPE


def cell_key(lon_i: np.ndarray, lat_i: np.ndarray) -> np.ndarray:
    """One int64 per 0.1° cell that sorts as (lat_i, lon_i)."""
    return (np.asarray(lat_i, np.int64) + 9000) * 65536 + (np.asarray(lon_i, np.int64) + 18000)


def tile_year_key(year: np.ndarray, lon_i: np.ndarray, lat_i: np.ndarray) -> np.ndarray:
    """One int64 per tile-year that sorts in the canonical order (year, lat_i, lon_i)."""
    return np.asarray(year, np.int64) * (1 << 32) + cell_key(lon_i, lat_i)


def epsg_of(zone: np.ndarray, lat_i: np.ndarray) -> np.ndarray:
    """Each tile's own CRS: 326zz north of the equator, 327zz south."""
    return np.where(np.asarray(lat_i) >= 0, 32600, 32700) + np.asarray(zone, np.int32)


class RowBuffer:
    """Rows appended in batches to one array that grows in place (numpy's resize reallocates, so the old and
    the new array are never both held)."""

    def __init__(self, dtype: np.dtype, capacity: int = 4096) -> None:
        self.rows = np.zeros(capacity, dtype)
        self.n = 0

    def extend(self, rows: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self.rows):  # grow by a quarter: the spare capacity stays small
            self.rows.resize(max(need, len(self.rows) + len(self.rows) // 4), refcheck=False)
        self.rows[self.n:need] = rows
        self.n = need

    def finish(self) -> np.ndarray:
        """The rows appended, as one array (the buffer is not used afterwards)."""
        self.rows.resize(self.n, refcheck=False)
        return self.rows


def sort_rows(table: np.ndarray, keys: np.ndarray) -> None:
    """Sort the table by `keys` in place, one field at a time (transient memory: the order and one field)."""
    order = np.argsort(keys, kind="stable")
    del keys
    for name in table.dtype.names:
        table[name] = table[name][order]


def canonical_sort(tiles: np.ndarray) -> None:
    """Sort tile rows in place into the canonical order (year, lat_i, lon_i); rows already in year order (as
    listed) are sorted one year at a time, so the transient memory is a year's."""
    years = tiles["year"]
    if len(years) > 1 and (years[1:] < years[:-1]).any():
        sort_rows(tiles, tile_year_key(years, tiles["lon_i"], tiles["lat_i"]))
        return
    for _, a, b in year_slices(tiles):
        part = tiles[a:b]
        keys = tile_year_key(part["year"], part["lon_i"], part["lat_i"])
        if len(keys) > 1 and (keys[1:] < keys[:-1]).any():
            sort_rows(part, keys)


def year_slices(tiles: np.ndarray) -> list[tuple[int, int, int]]:
    """(year, start, end) of each year's rows in a table in canonical order."""
    years = tiles["year"]
    found = np.unique(years)
    starts = np.searchsorted(years, found, "left")
    ends = np.searchsorted(years, found, "right")
    return list(zip(found.tolist(), starts.tolist(), ends.tolist()))


def tile_cells(tiles: np.ndarray) -> np.ndarray:
    """Sorted cell keys of every cell with a tile in any year (a table in canonical order), gathered year by year."""
    cells = np.zeros(0, np.int64)
    for _, a, b in year_slices(tiles):
        cells = np.union1d(cells, cell_key(tiles["lon_i"][a:b], tiles["lat_i"][a:b]))
    return cells


def cell_lon_lat(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `cell_key`."""
    return cells % 65536 - 18000, cells // 65536 - 9000


def names(lon_i: np.ndarray, lat_i: np.ndarray) -> list[str]:
    """`grid_X_Y` of each cell."""
    return [tile_name(lo / 100.0, la / 100.0) for lo, la in zip(np.asarray(lon_i).tolist(), np.asarray(lat_i).tolist())]


def hex_digest(raw: np.ndarray) -> str | None:
    """A stored digest as hex, None when the file was not hashed."""
    return raw.tobytes().hex() if raw.any() else None


def digest_bytes(hexdigest: str | None) -> bytes:
    """A hex digest as the 32 bytes a table stores (zeros for none)."""
    return bytes.fromhex(hexdigest) if hexdigest else bytes(32)


def none_if_negative(value: int) -> int | None:
    return None if value < 0 else int(value)
