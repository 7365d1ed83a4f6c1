"""Tile-years and landmasks as columns: one numpy structured array row per tile-year (about 45 bytes, 64 more
with hashes) instead of a Python object, so millions of them fit in memory. Keys are not stored: they follow
from the year, the tile and the archive's roots."""

from __future__ import annotations

import numpy as np

from transcode.format.grid import tile_name

_TILE_FIELDS = [
    ("year", "<i2"), ("lon_i", "<i2"), ("lat_i", "<i2"), ("zone", "i1"), ("epsg", "<i4"),
    ("height", "<i4"), ("width", "<i4"),  # -1: no readable 2-D header
    ("footprint_height", "<i2"), ("footprint_width", "<i2"),
    ("embeddings_size", "<i8"), ("scales_size", "<i8"),  # -1: file missing
    ("embeddings_offset", "<i4"), ("scales_offset", "<i4"),  # -1: header unreadable
    ("usable", "?"), ("landmask", "?"),
]
_HASH_FIELDS = [("embeddings_sha256", "u1", (32,)), ("scales_sha256", "u1", (32,))]  # all zero: not hashed
TILE_DTYPE = np.dtype(_TILE_FIELDS)
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


def canonical_order(tiles: np.ndarray) -> np.ndarray:
    """The rows sorted by (year, lat_i, lon_i)."""
    return tiles[np.argsort(tile_year_key(tiles["year"], tiles["lon_i"], tiles["lat_i"]), kind="stable")]


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
