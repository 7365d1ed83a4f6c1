"""The arrays of a zone group, one declaration each: name, data type, dimension names, fill value, chunking and,
for coordinates, values and attributes. Shapes and chunks are functions of the zone (its grid, the time axis, the
shard/chunk settings and the stretch sample size). The metadata builder writes every declared array, the validator
checks each against its declaration, the writer and the mirror verifier take keys and the shard index layout from
it. A store with nested depths (`geoemb:depths`) has one `embeddings_d{D}` array and one `band_d{D}` coordinate
per depth beside them: `zone_arrays(depths)` declares them."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
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
STRETCH_SAMPLE_SIZE = 20_000  # K: sampled pixels per (zone, year) in the stretch statistics
# the largest K accepted: a worker keeps up to 2K candidates of 140 bytes (vector, key, scale) while it reduces, and
# each year's sample is one chunk of K x 128 bytes that readers load whole (10^6: 128 MB)
MAX_STRETCH_SAMPLE_SIZE = 1_000_000
DEPTH_BAND_PREFIX = "band_d"  # the band dimension (and coordinate) of the nested depth D is band_d{D}
DEPTH_ARRAY_PREFIX = "embeddings_d"  # the array holding the first D bands of every embedding
_DEPTH_NAME = re.compile(r"^(embeddings|band)_d([1-9][0-9]*)$")


@dataclass(frozen=True)
class Zone:
    """What the arrays of one zone group are shaped by: its grid, the store's time axis, shard and chunk sides."""

    grid: ZoneGrid
    time: tuple[int, ...]
    shard: tuple[int, int] = DEFAULT_SHARD
    chunk: tuple[int, int] = DEFAULT_CHUNK
    sample: int = STRETCH_SAMPLE_SIZE

    def size(self, dim: str) -> int:
        """Length of dimension `dim` in this zone (`band_d{D}` is D long)."""
        if dim in DIMENSIONS:
            return DIMENSIONS[dim](self)
        depth = depth_of(dim)
        if depth is None or not dim.startswith(DEPTH_BAND_PREFIX):
            raise ValueError(f"dimension {dim!r} is not declared")
        return depth

    @property
    def shard_grid(self) -> tuple[int, int]:
        """Shard rows and columns of the zone grid (a partial last shard counts)."""
        return -(-self.grid.height // self.shard[0]), -(-self.grid.width // self.shard[1])


# every dimension name an array may use, and its length in a zone
DIMENSIONS: dict[str, Callable[[Zone], int]] = {
    "time": lambda z: len(z.time),
    "band": lambda z: BANDS,
    "y": lambda z: z.grid.height,
    "x": lambda z: z.grid.width,
    "band2": lambda z: BANDS,  # the second band axis of the stretch statistics' sum of products
    "sample": lambda z: z.sample,
    "shard_row": lambda z: z.shard_grid[0],
    "shard_col": lambda z: z.shard_grid[1],
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
    codec: str | None = None  # the `--codec` setting its chunks are encoded with; None: `chain`, else zarr's default
    chain: tuple[dict, ...] | None = field(default=None, hash=False)  # a compressor chain fixed by the format
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


def blosc_zstd3(dtype: np.dtype) -> tuple[dict, ...]:
    """The incumbent's compressor for its plain arrays (Blosc zstd level 3, zarr-python's shuffle for the type)."""
    dtype = np.dtype(dtype)
    return ({"name": "blosc", "configuration": {"typesize": dtype.itemsize, "cname": "zstd", "clevel": 3,
                                                "shuffle": "bitshuffle" if dtype.itemsize == 1 else "shuffle",
                                                "blocksize": 0}},)


def _per_year(name: str, dtype: str, dims: tuple[str, ...], fill: int | float) -> ArrayDecl:
    """A stretch-statistics array: one plain chunk per year, Blosc zstd 3, no attributes (as the incumbent)."""
    return ArrayDecl(name, np.dtype(dtype), dims, fill, PER_YEAR, chain=blosc_zstd3(np.dtype(dtype)))


EMBEDDINGS = ArrayDecl("embeddings", EMBEDDINGS_DTYPE, ("time", "band", "y", "x"), 0, Sharded(), codec="embeddings")
SCALES = ArrayDecl("scales", SCALES_DTYPE, ("time", "y", "x"), NO_DATA, Sharded(), codec="scales")
TIME = _coordinate("time", "int32", lambda z: np.asarray(z.time, dtype="int32"),
                   {"long_name": "year", "units": "year"})
BAND_ATTRIBUTES = {"long_name": "embedding dimension"}
BAND = _coordinate("band", "int32", lambda z: np.arange(BANDS, dtype="int32"), BAND_ATTRIBUTES)
X = _coordinate("x", "float64", lambda z: z.grid.x_centre(np.arange(z.grid.width, dtype="float64")),
                {"standard_name": "projection_x_coordinate", "units": "m"})
Y = _coordinate("y", "float64", lambda z: z.grid.y_centre(np.arange(z.grid.height, dtype="float64")),
                {"standard_name": "projection_y_coordinate", "units": "m"})

# the stretch statistics (docs/format.md, "Stretch statistics"): per (zone, year) N, S = sum x, M = sum x x^T over
# the valid pixels, a K-pixel sample, and the coverage mask of the shards folded in
STRETCH_STATS_COUNT = _per_year("stretch_stats_count", "int64", ("time",), 0)
STRETCH_STATS_SUM = _per_year("stretch_stats_sum", "float64", ("time", "band"), 0.0)
STRETCH_STATS_PROD = _per_year("stretch_stats_prod", "float64", ("time", "band", "band2"), 0.0)
STRETCH_SAMPLE = _per_year("stretch_sample", "int8", ("time", "sample", "band"), 0)
STRETCH_SAMPLE_SCALES = _per_year("stretch_sample_scales", "float32", ("time", "sample"), NO_DATA)
STRETCH_SAMPLE_COUNT = _per_year("stretch_sample_count", "int64", ("time",), 0)
STRETCH_STATS_SHARDS = _per_year("stretch_stats_shards", "uint8", ("time", "shard_row", "shard_col"), 0)
STRETCH_ARRAYS = (STRETCH_STATS_COUNT, STRETCH_STATS_SUM, STRETCH_STATS_PROD, STRETCH_SAMPLE, STRETCH_SAMPLE_SCALES,
                  STRETCH_SAMPLE_COUNT, STRETCH_STATS_SHARDS)

# every array of a zone group of a single-depth store, in the order the metadata builder creates them
ZONE_ARRAYS: dict[str, ArrayDecl] = {d.name: d for d in (EMBEDDINGS, SCALES, TIME, BAND, X, Y, *STRETCH_ARRAYS)}


# ------------------------------------------------------------------------------------------ nested depths

def depth_of(name: str) -> int | None:
    """D of a nested depth's array (`embeddings_d{D}`) or band dimension/coordinate (`band_d{D}`), else None."""
    m = _DEPTH_NAME.match(name)
    return int(m.group(2)) if m else None


def depth_array_name(depth: int) -> str:
    """The array holding the first `depth` bands of every embedding (`embeddings` itself at full depth)."""
    return EMBEDDINGS.name if depth >= BANDS else f"{DEPTH_ARRAY_PREFIX}{depth}"


def depth_band_dim(depth: int) -> str:
    """The band dimension of the depth-`depth` array: its own name per depth (xarray refuses one `band` dimension
    with two sizes), `band` at full depth."""
    return BAND.name if depth >= BANDS else f"{DEPTH_BAND_PREFIX}{depth}"


def depth_inner(zone: Zone, decl: ArrayDecl) -> tuple[int, int]:
    """Inner chunk sides of a nested-depth array: the zone's chunk sides times the largest power of two f with
    D * (f * chunk)^2 bytes within the full-depth inner chunk's bytes and f * chunk dividing the shard
    (D=16 -> 64, D=4 -> 128 for 32 x 32 chunks of 128 bands: the incumbent's rule)."""
    depth = zone.size(decl.dims[1])
    (ch, cw), (sh, sw) = zone.chunk, zone.shard
    budget = BANDS * ch * cw * EMBEDDINGS_DTYPE.itemsize
    f = 1
    while depth * (2 * f * ch) * (2 * f * cw) <= budget and sh % (2 * f * ch) == 0 and sw % (2 * f * cw) == 0:
        f *= 2
    return f * ch, f * cw


@functools.cache
def depth_arrays(depth: int) -> tuple[ArrayDecl, ArrayDecl]:
    """The array of nested depth `depth` (1 <= depth < BANDS) and the coordinate of its band dimension (one
    declaration per depth, the same objects at every call)."""
    if not 1 <= depth < BANDS:
        raise ValueError(f"a nested depth is 1..{BANDS - 1}, got {depth}")
    band = depth_band_dim(depth)
    arr = ArrayDecl(depth_array_name(depth), EMBEDDINGS_DTYPE, ("time", band, "y", "x"), 0, Sharded(depth_inner),
                    codec=EMBEDDINGS.codec)
    coord = _coordinate(band, "int32", lambda z: np.arange(depth, dtype="int32"), BAND_ATTRIBUTES)
    return arr, coord


def zone_arrays(depths: Iterable[int] = ()) -> dict[str, ArrayDecl]:
    """Every array of a zone group of a store with these nested depths (`embeddings` first)."""
    out = dict(ZONE_ARRAYS)
    for depth in sorted(set(depths)):
        for decl in depth_arrays(depth):
            out[decl.name] = decl
    return out


def find_array(name: str) -> ArrayDecl | None:
    """The declaration of a zone group member named `name`, nested depths included; None when undeclared."""
    if name in ZONE_ARRAYS:
        return ZONE_ARRAYS[name]
    depth = depth_of(name)
    if depth is None or not 1 <= depth < BANDS:
        return None
    arr, coord = depth_arrays(depth)
    return arr if name == arr.name else coord


def sharded_arrays(depths: Iterable[int] = ()) -> list[ArrayDecl]:
    """The sharded arrays (`embeddings` first): a shard of one is written with a shard of each of the others at
    the same place."""
    return [d for d in zone_arrays(depths).values() if d.sharded]


def codec_arrays() -> tuple[str, ...]:
    """The names `--codec` chooses a codec for."""
    return tuple(dict.fromkeys(d.codec for d in ZONE_ARRAYS.values() if d.codec))
