"""The arrays of a zone group, one declaration each: name, data type, dimension names, fill value, chunking and,
for coordinates, values and attributes. Shapes and chunks are functions of the zone (its grid, the time axis and
the shard/chunk settings). The metadata builder writes every declared array, the validator checks each against
its declaration, the writer and the mirror verifier take keys and the shard index layout from it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transcode.format.grid import ZoneGrid
from transcode.format.keys import chunk_key
from transcode.format.sentinels import NO_DATA
from transcode.format.shardindex import IndexLayout

BANDS = 128  # embedding dimensions
EMBEDDINGS_DTYPE = np.dtype("int8")
SCALES_DTYPE = np.dtype("<f4")
DEFAULT_SHARD = (4096, 4096)  # y, x pixels of a shard: 40.96 km on a side
DEFAULT_CHUNK = (32, 32)  # y, x pixels of an inner chunk
COORD_CHUNK = 65536  # values per chunk of a coordinate array
SPATIAL_DIMS = ("y", "x")  # the dimensions a shard and an inner chunk cut into sides


@dataclass(frozen=True)
class Zone:
    """What the arrays of one zone group are shaped by: its grid, the store's time axis, shard and chunk sides."""

    grid: ZoneGrid
    time: tuple[int, ...]
    shard: tuple[int, int] = DEFAULT_SHARD
    chunk: tuple[int, int] = DEFAULT_CHUNK

    def size(self, dim: str) -> int:
        """Length of dimension `dim` in this zone."""
        try:
            return DIMENSIONS[dim](self)
        except KeyError:
            raise ValueError(f"dimension {dim!r} is not declared") from None


# every dimension name an array may use, and its length in a zone
DIMENSIONS: dict[str, Callable[[Zone], int]] = {
    "time": lambda z: len(z.time),
    "band": lambda z: BANDS,
    "y": lambda z: z.grid.height,
    "x": lambda z: z.grid.width,
}


@dataclass(frozen=True)
class Sharded:
    """`sharding_indexed`: a shard holds one year, the zone's shard side in y/x and every other dimension whole;
    its inner chunks have the zone's chunk side, or `inner(zone, decl)`'s when the array has a rule of its own."""

    inner: Callable[[Zone, ArrayDecl], tuple[int, int]] | None = None
    checked = True  # the validator's tessera layout compares a store's chunking with it

    def shards(self, zone: Zone, decl: ArrayDecl) -> tuple[int, ...]:
        return _cut(zone, decl, zone.shard)

    def chunks(self, zone: Zone, decl: ArrayDecl) -> tuple[int, ...]:
        return _cut(zone, decl, self.inner(zone, decl) if self.inner else zone.chunk)


@dataclass(frozen=True)
class Plain:
    """Plain chunks (no sharding) of the shape `rule(zone, decl)` gives; `checked`: whether the validator's tessera
    layout holds a store to that chunking (readers take any chunking of a coordinate)."""

    rule: Callable[[Zone, ArrayDecl], tuple[int, ...]]
    checked: bool = True

    def shards(self, zone: Zone, decl: ArrayDecl) -> None:
        return None

    def chunks(self, zone: Zone, decl: ArrayDecl) -> tuple[int, ...]:
        return self.rule(zone, decl)


# one chunk per year, every other dimension whole (the stretch statistics' rule)
PER_YEAR = Plain(lambda z, d: tuple(1 if n == "time" else z.size(n) for n in d.dims))
# a 1-D coordinate in chunks of at most COORD_CHUNK values
COORDINATE = Plain(lambda z, d: (min(z.size(d.dims[0]), COORD_CHUNK),), checked=False)


def _cut(zone: Zone, decl: ArrayDecl, side: tuple[int, int]) -> tuple[int, ...]:
    sides = dict(zip(SPATIAL_DIMS, side))
    return tuple(1 if d == "time" else sides[d] if d in sides else zone.size(d) for d in decl.dims)


Chunking = Sharded | Plain


@dataclass(frozen=True)
class ArrayDecl:
    """One array of every zone group."""

    name: str
    dtype: np.dtype
    dims: tuple[str, ...]
    fill: int | float
    chunking: Chunking
    codec: str | None = None  # the `--codec` setting its chunks are encoded with; None: zarr-python's default
    attributes: dict[str, Any] = field(default_factory=dict, hash=False)
    values: Callable[[Zone], np.ndarray] | None = None  # a coordinate's values, written with the metadata
    fill_checked: bool = True  # False: every value is written, so the fill value carries no meaning

    @property
    def data_type(self) -> str:
        """The Zarr v3 data type name."""
        return self.dtype.name

    @property
    def fill_json(self) -> int | float | str:
        """The fill value as zarr.json writes it (non-finite floats as "NaN", "Infinity", "-Infinity")."""
        if self.dtype.kind != "f":
            return int(self.fill)
        if math.isnan(self.fill):
            return "NaN"
        if math.isinf(self.fill):
            return "Infinity" if self.fill > 0 else "-Infinity"
        return float(self.fill)

    @property
    def sharded(self) -> bool:
        return isinstance(self.chunking, Sharded)

    def shape(self, zone: Zone) -> tuple[int, ...]:
        return tuple(zone.size(d) for d in self.dims)

    def chunks(self, zone: Zone) -> tuple[int, ...]:
        """The chunk a reader decodes: the inner chunk of a sharded array."""
        return self.chunking.chunks(zone, self)

    def shards(self, zone: Zone) -> tuple[int, ...] | None:
        """The shard shape (the chunk grid's chunk shape), or None when the array is not sharded."""
        return self.chunking.shards(zone, self)

    def index_layout(self, zone: Zone) -> IndexLayout:
        """The index of each of its shards (the store's layout: little endian, CRC32C, at the end)."""
        shards = self.shards(zone)
        if shards is None:
            raise ValueError(f"array {self.name!r} is not sharded")
        return IndexLayout(math.prod(s // c for s, c in zip(shards, self.chunks(zone))))

    def spatial(self, per_dim: Sequence[int]) -> tuple[int, ...]:
        """The y and x entries of a per-dimension sequence of this array (a shape, chunk shape, chunk position)."""
        return tuple(per_dim[self.dims.index(d)] for d in SPATIAL_DIMS)

    def shard_key(self, group: str, t: int, shard_row: int, shard_col: int) -> str:
        """Object key of the shard of year index `t` at (shard_row, shard_col) of the zone's shard grid."""
        at = {"time": t, "y": shard_row, "x": shard_col}
        return chunk_key(f"{group}/{self.name}", (at.get(d, 0) for d in self.dims))


def _coordinate(name: str, dtype: str, values: Callable[[Zone], np.ndarray], attributes: dict) -> ArrayDecl:
    return ArrayDecl(name, np.dtype(dtype), (name,), 0, COORDINATE, attributes=attributes, values=values,
                     fill_checked=False)


EMBEDDINGS = ArrayDecl("embeddings", EMBEDDINGS_DTYPE, ("time", "band", "y", "x"), 0, Sharded(), codec="embeddings")
SCALES = ArrayDecl("scales", SCALES_DTYPE, ("time", "y", "x"), NO_DATA, Sharded(), codec="scales")
TIME = _coordinate("time", "int32", lambda z: np.asarray(z.time, dtype="int32"),
                   {"long_name": "year", "units": "year"})
BAND = _coordinate("band", "int32", lambda z: np.arange(BANDS, dtype="int32"), {"long_name": "embedding dimension"})
X = _coordinate("x", "float64", lambda z: z.grid.x_centre(np.arange(z.grid.width, dtype="float64")),
                {"standard_name": "projection_x_coordinate", "units": "m"})
Y = _coordinate("y", "float64", lambda z: z.grid.y_centre(np.arange(z.grid.height, dtype="float64")),
                {"standard_name": "projection_y_coordinate", "units": "m"})

# every array of a zone group, in the order the metadata builder creates them
ZONE_ARRAYS: dict[str, ArrayDecl] = {d.name: d for d in (EMBEDDINGS, SCALES, TIME, BAND, X, Y)}


def sharded_arrays() -> list[ArrayDecl]:
    """The sharded arrays: a shard of one is written with a shard of each of the others at the same place."""
    return [d for d in ZONE_ARRAYS.values() if d.sharded]


def codec_arrays() -> tuple[str, ...]:
    """The names `--codec` chooses a codec for."""
    return tuple(dict.fromkeys(d.codec for d in ZONE_ARRAYS.values() if d.codec))
