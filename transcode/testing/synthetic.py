"""A realistic, deterministic synthetic legacy archive (docs/format.md, "The legacy archive") for tests, benchmarks and demos.

`make_legacy_archive(root, ...)` writes per-tile ``.npy`` embeddings and scales exactly where the
reader looks for them (both the "local" and the "object" layout), landmask GeoTIFFs on each tile's
own UTM grid, every registry and manifest kind the real archive carries (hashes and sizes computed
from the files as written), and optionally injects named faults afterwards so that the registries
disagree with the damaged files.

Same arguments => byte-identical files: every random stream is seeded by
``(seed, year, lon_i, lat_i, stream)``, all arithmetic is element-wise float32/float64 (no BLAS,
so results do not depend on threading or CPU kernels), and every file, registry and directory gets a
fixed mtime. Landmasks are "geography": a fixed, seed-independent coastline defined in lon/lat, so
overlapping neighbour tiles (also across UTM zones) agree about land and water.

The generators for one tile (`tile_embeddings`, `tile_scales`, `tile_landmask`) are public so that
tests can compute the expected content of a tile without reading it back.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from transcode.format.arrays import BANDS
from transcode.format.grid import PIXEL_M, Footprint, TileId, footprint, parse_tile_name, tile_name
from transcode.legacy.dataset import DEFAULT_VARIANT, METADATA_FILE, normalize_version, parse_dataset_name

__all__ = [
    "FAULTS",
    "PRESETS",
    "LAYOUTS",
    "LANDMASK_MODES",
    "REGISTRY_PATHS",
    "LANDMASK_REGISTRIES",
    "write_dataset_metadata",
    "InjectedFault",
    "ArchiveReport",
    "make_legacy_archive",
    "year_root",
    "landmask_root",
    "tile_embeddings",
    "tile_scales",
    "tile_landmask",
    "sha256_file",
]

LAYOUTS = ("local", "object")
LANDMASK_MODES = ("coastline", "ones", "none")
REGISTRY_PATHS = ("relative", "foreign", "s3")
LANDMASK_REGISTRIES = ("parquet", "keyless")
FOREIGN_MOUNT = "/mnt/scanner-host/tessera"  # another machine's mount, as its scanner recorded it
FOREIGN_BUCKET = "tessera-embeddings"
MEDIAN_SCALE = 0.064

FAULTS: dict[str, str] = {
    "truncated": "embeddings .npy cut short (header intact, data shorter than H*W*128 bytes)",
    "missing-scales": "the scales .npy is deleted",
    "missing-embeddings": "the embeddings .npy is deleted",
    "shape-mismatch": "scales have one row fewer than the embeddings (H-1, W)",
    "footprint-mismatch": "embeddings and scales consistently (H+3, W) instead of the footprint's H x W",
    "fortran-order": "embeddings rewritten with fortran_order True (same size, same values)",
    "wrong-dtype": "scales written as float64 instead of float32",
    "bad-magic": "first bytes of the embeddings overwritten: not an .npy any more (same size)",
    "bad-bands": "embeddings have 64 bands instead of 128 (H, W, 64)",
    "corrupt-bytes": (
        "one byte flipped in the middle of the embeddings data (same size, loads fine; only a hash catches it)"
    ),
    "corrupt-landmask": "landmask GeoTIFF replaced by garbage bytes of the same size and name",
}

# Which file a fault damages: "emb", "scales" or "landmask".
_FAULT_TARGET = {
    "truncated": "emb",
    "missing-scales": "scales",
    "missing-embeddings": "emb",
    "shape-mismatch": "scales",
    "footprint-mismatch": "emb",
    "fortran-order": "emb",
    "wrong-dtype": "scales",
    "bad-magic": "emb",
    "bad-bands": "emb",
    "corrupt-bytes": "emb",
    "corrupt-landmask": "landmask",
}


def _names(pairs: Iterable[tuple[float, float]]) -> list[str]:
    return [tile_name(lon, lat) for lon, lat in pairs]


PRESETS: dict[str, list[str]] = {
    # One north pair across the zone 30/31 boundary + one south tile (~88 MB a year).
    "tiny": _names([(-0.05, 83.95), (0.05, 83.95), (-0.05, -79.95)]),
    # 7 tiles (~213 MB a year): a 2x2 block across the 30/31 boundary near 84N (east-west and
    # north-south neighbours) and an L of three south of the equator near 80S (an east-west pair
    # across the boundary and a north-south pair).
    "small": _names(
        [
            (-0.05, 83.95), (0.05, 83.95), (-0.05, 83.85), (0.05, 83.85),
            (-0.05, -79.95), (0.05, -79.95), (0.05, -79.85),
        ]
    ),
    # 4 rows x 6 columns (~610 MB a year) straddling the 30/31 boundary near 84N, for benchmarks.
    "medium": _names(
        [(lon_i / 100, lat_i / 100) for lat_i in (8395, 8385, 8375, 8365) for lon_i in (-25, -15, -5, 5, 15, 25)]
    ),
}


@dataclass
class InjectedFault:
    """A fault injected into the archive. `path` is the damaged file, relative to the root (POSIX).

    Landmask faults are not tied to a year; their `year` is 0.
    """

    fault: str
    tile: str
    year: int
    path: str


@dataclass
class ArchiveReport:
    """What `make_legacy_archive` wrote. `files`/`bytes` count everything under `root` at the end."""

    root: str
    layout: str
    years: list[int]
    tiles: list[str]
    files: int
    bytes: int
    faults: list[InjectedFault] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Paths


def year_root(root: str | os.PathLike, layout: str = "local", dataset: str = "v1") -> Path:
    """The directory that holds the `<year>/` directories."""
    _check_layout(layout)
    root = Path(root)
    return root / "global_0.1_degree_representation" if layout == "local" else root / "npy" / dataset


def landmask_root(root: str | os.PathLike, layout: str = "local", landmask_version: str = "v1") -> Path:
    """The directory that holds the `grid_X_Y.tiff` landmasks."""
    _check_layout(layout)
    root = Path(root)
    return root / "global_0.1_degree_tiff_all" if layout == "local" else root / "landmasks" / landmask_version


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")


def _rel_emb(year: int, name: str) -> str:
    return f"{year}/{name}/{name}.npy"


def _rel_scales(year: int, name: str) -> str:
    return f"{year}/{name}/{name}_scales.npy"


# --------------------------------------------------------------------------------------------
# Deterministic randomness and smooth fields

_S_EMB_BASE, _S_EMB_YEAR, _S_EMB_NOISE, _S_SCALES, _S_INVALID, _S_FAULT = range(6)


def _rng(seed: int, year: int, tile: TileId, stream: int) -> np.random.Generator:
    # SeedSequence entropy must be non-negative: offset the signed tile keys.
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), int(year), tile.lon_i + 18000, tile.lat_i + 9000, stream])
    )


def _lerp_index(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i0 = np.floor(coords).astype(np.intp)
    return i0, (coords - i0).astype(np.float32)


def _lerp_axis0(grid: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Linear interpolation of `grid` along axis 0 at fractional positions `coords`."""
    i0, f = _lerp_index(coords)
    f = f.reshape((-1,) + (1,) * (grid.ndim - 1))
    a = grid[i0]
    return a + (grid[i0 + 1] - a) * f


def _lerp_axis1(grid: np.ndarray, coords: np.ndarray) -> np.ndarray:
    i0, f = _lerp_index(coords)
    f = f.reshape((1, -1) + (1,) * (grid.ndim - 2))
    a = grid[:, i0]
    b = grid[:, i0 + 1]
    b -= a
    b *= f
    a += b
    return a


def _grid_size(n: int, cell: float) -> int:
    """Nodes needed so that positions (i + 0.5) / cell for i < n have a right neighbour."""
    return int(math.floor((n - 0.5) / cell)) + 2


def _two_scale_grid(
    rng_a: np.random.Generator,
    rng_b: np.random.Generator | None,
    shape: tuple[int, int],
    channels: int,
    coarse: int,
    fine: int,
    a_coarse: float,
    a_fine: float,
    w_a: float = 1.0,
    w_b: float = 0.0,
) -> np.ndarray:
    """A random field on the `fine`-pixel node grid: a `coarse` field interpolated onto it plus fine detail.

    The coarse and fine node values are a weighted mix of two streams (`rng_a`, `rng_b`) so that
    e.g. a per-tile base and a per-year perturbation share structure.
    """
    h, w = shape
    gh, gw = _grid_size(h, fine), _grid_size(w, fine)
    ratio = fine / coarse
    ch, cw = int(math.floor((gh - 1) * ratio)) + 2, int(math.floor((gw - 1) * ratio)) + 2

    def draw(n_shape: tuple[int, ...]) -> np.ndarray:
        v = rng_a.standard_normal(n_shape, dtype=np.float32) * np.float32(w_a)
        if rng_b is not None:
            v += rng_b.standard_normal(n_shape, dtype=np.float32) * np.float32(w_b)
        return v

    c = draw((ch, cw, channels))
    c = _lerp_axis1(_lerp_axis0(c, np.arange(gh) * ratio), np.arange(gw) * ratio)
    c *= np.float32(a_coarse)
    c += draw((gh, gw, channels)) * np.float32(a_fine)
    return c


def _pixel_coords(n: int, cell: float) -> np.ndarray:
    return (np.arange(n, dtype=np.float64) + 0.5) / cell


# --------------------------------------------------------------------------------------------
# Tile content


def _as_tile(tile: TileId | str) -> TileId:
    return parse_tile_name(tile) if isinstance(tile, str) else tile


def _shape_of(tile: TileId, shape: tuple[int, int] | None) -> tuple[int, int]:
    if shape is not None:
        return int(shape[0]), int(shape[1])
    fp = footprint(tile)
    return fp.height, fp.width


def tile_embeddings(
    tile: TileId | str, year: int, *, seed: int = 0, shape: tuple[int, int] | None = None, bands: int = BANDS
) -> np.ndarray:
    """Spatially correlated int8 embeddings (H, W, bands), C order, for one tile and year.

    A per-tile base field mixed with a per-year perturbation (so years differ but resemble each
    other), on a 32-px coarse + 8-px fine node grid, bilinearly upsampled, plus noise in [-4, 3].
    Values span most of the int8 range, [-127, 127], with a standard deviation of about 40.
    """
    tile = _as_tile(tile)
    h, w = _shape_of(tile, shape)
    fine = 8
    nodes = _two_scale_grid(
        _rng(seed, 0, tile, _S_EMB_BASE),
        _rng(seed, year, tile, _S_EMB_YEAR),
        (h, w),
        bands,
        coarse=32,
        fine=fine,
        a_coarse=55.0,
        a_fine=23.0,
        w_a=0.8,
        w_b=0.6,
    )
    rows = _lerp_axis0(nodes, _pixel_coords(h, fine))  # (h, gw, bands): small
    xs = _pixel_coords(w, fine)
    out = np.empty((h, w, bands), dtype=np.int8)
    noise_rng = _rng(seed, year, tile, _S_EMB_NOISE)
    block = max(1, (1 << 21) // max(1, w * bands))  # ~8 MB of float32 per block
    for r in range(0, h, block):
        f = _lerp_axis1(rows[r : r + block], xs)
        np.clip(f, -123.0, 124.0, out=f)  # + noise in [-4, 3] => [-127, 127]
        np.rint(f, out=f)
        q = f.astype(np.int8)
        n = np.frombuffer(noise_rng.bytes(q.size), dtype=np.uint8).reshape(q.shape) & np.uint8(7)
        q += n.view(np.int8)
        q -= np.int8(4)
        out[r : r + block] = q
    return out


def tile_scales(
    tile: TileId | str, year: int, *, seed: int = 0, shape: tuple[int, int] | None = None, invalid: bool = True
) -> np.ndarray:
    """float32 (H, W) scales: smooth lognormal field with median ≈ 0.064, all valid values in (0, 1).

    With `invalid`, a handful of deterministic pixels are not valid data: NaN (a 2x2 patch and
    singles), +inf, negative, huge finite (3.4e38 and 1e30) and exactly 0.
    """
    tile = _as_tile(tile)
    h, w = _shape_of(tile, shape)
    fine = 16
    nodes = _two_scale_grid(
        _rng(seed, year, tile, _S_SCALES), None, (h, w), 1, coarse=64, fine=fine, a_coarse=0.30, a_fine=0.10
    )
    logs = _lerp_axis1(_lerp_axis0(nodes, _pixel_coords(h, fine)), _pixel_coords(w, fine))[:, :, 0]
    s = np.exp(logs.astype(np.float64) + math.log(MEDIAN_SCALE))
    np.clip(s, 0.004, 0.9, out=s)
    s = np.ascontiguousarray(s, dtype=np.float32)
    if invalid:
        _inject_invalid_scales(s, _rng(seed, year, tile, _S_INVALID))
    return s


_INVALID_VALUES = (
    [np.nan] * 4
    + [np.inf]
    + [-0.064, -1.0, -1e-6]
    + [3.4e38, 3.4e38, 1e30, 1e30]
    + [0.0, 0.0, 0.0]
)


def _inject_invalid_scales(s: np.ndarray, rng: np.random.Generator) -> None:
    h, w = s.shape
    n = len(_INVALID_VALUES)
    if h * w < n + 4:
        return
    picks = rng.choice(h * w, size=n, replace=False)
    for idx, v in zip(picks, _INVALID_VALUES):
        s[divmod(int(idx), w)] = np.float32(v)
    if h >= 2 and w >= 2:  # a small NaN patch, as a cloud gap would leave
        r, c = int(rng.integers(0, h - 1)), int(rng.integers(0, w - 1))
        s[r : r + 2, c : c + 2] = np.nan


# Geography: a fixed coastline, independent of seed. Land where F(lon, lat) > threshold, with F a
# sum of plane waves in local kilometres, so neighbouring (and overlapping) tiles agree.
_WAVES = (
    # wavelength km, amplitude, direction (deg), phase
    (41.0, 1.00, 12.0, 2.0),
    (23.0, 0.70, 71.0, 0.5),
    (13.0, 0.50, 133.0, 4.1),
    (6.7, 0.35, 27.0, 2.6),
    (3.1, 0.22, 101.0, 0.8),
    (1.4, 0.12, 158.0, 5.2),
    (0.55, 0.06, 49.0, 3.3),
)
_LAND_THRESHOLD = -0.6


def _land_field(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lat_r = np.radians(lat)
    x = lon * (111.32 * np.cos(lat_r))
    y = lat * 110.57
    f = np.zeros(np.broadcast(lon, lat).shape, dtype=np.float64)
    for lam, amp, deg, ph in _WAVES:
        t = math.radians(deg)
        f += amp * np.sin((2 * math.pi / lam) * (math.cos(t) * x + math.sin(t) * y) + ph)
    return f


def tile_landmask(tile: TileId | str, *, mode: str = "coastline") -> np.ndarray:
    """uint8 (H, W) landmask on the tile's own grid: 1 = land, 0 = water."""
    tile = _as_tile(tile)
    fp = footprint(tile)
    h, w = fp.height, fp.width
    if mode == "ones":
        return np.ones((h, w), dtype=np.uint8)
    if mode != "coastline":
        raise ValueError(f"unknown landmask mode {mode!r}; valid: coastline, ones")
    from pyproj import Transformer

    # Exact inverse projection on an 8-px node grid, bilinearly interpolated to every pixel centre.
    step = 8
    gh, gw = _grid_size(h, step), _grid_size(w, step)
    # Node k sits at pixel position k*step - 0.5 (see _pixel_coords), i.e. x = origin_x + k*step*PIXEL_M.
    nx = fp.origin_x + np.arange(gw) * step * PIXEL_M
    ny = fp.origin_y - np.arange(gh) * step * PIXEL_M
    xx, yy = np.meshgrid(nx, ny)
    inv = Transformer.from_crs(fp.epsg, 4326, always_xy=True)
    lon, lat = inv.transform(xx, yy)
    ll = np.stack([np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)], axis=-1)
    ll = _lerp_axis1(_lerp_axis0(ll, _pixel_coords(h, step)), _pixel_coords(w, step))
    # _lerp_index casts the weights to float32; that is ~1 m of error on an 80-m node grid: fine.
    return (_land_field(ll[..., 0], ll[..., 1]) > _LAND_THRESHOLD).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# File writing


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _save_npy(path: Path, arr: np.ndarray) -> None:
    """numpy's own writer, format 1.0 (128-byte headers for these shapes), like the real archive."""
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=(1, 0), allow_pickle=False)


def _write_geotiff(path: Path, mask: np.ndarray, fp: Footprint) -> None:
    import rasterio
    from rasterio.transform import Affine

    h, w = mask.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="uint8",
        crs=f"EPSG:{fp.epsg}",
        transform=Affine(*fp.transform),
        compress="deflate",
    ) as dst:
        dst.write(mask, 1)


def _mtime(year: int, month: int = 3, day: int = 1) -> int:
    return calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0))


def _npy_mtime(year: int) -> int:
    return _mtime(year + 1, 3, 1)


_LANDMASK_MTIME = _mtime(2024, 1, 15)


def _set_mtime(path: Path, t: int) -> None:
    os.utime(path, (t, t))


def _write_text(path: Path, lines: Iterable[str], t: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    _set_mtime(path, t)


def _write_parquet(path: Path, columns: dict[str, tuple[list, object]], t: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: pa.array(values, type=typ) for name, (values, typ) in columns.items()})
    pq.write_table(table, path)
    _set_mtime(path, t)


# --------------------------------------------------------------------------------------------
# Faults


def _parse_faults(
    faults: Sequence, tiles: list[TileId], years: list[int], landmasks: str
) -> list[tuple[str, TileId, int]]:
    valid = ", ".join(FAULTS)
    specs: list[tuple[str, TileId | None, int | None]] = []
    for item in faults:
        if isinstance(item, str):
            name, tname, year = item, None, None
        elif isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
            name = item[0]
            tname = item[1] if len(item) > 1 else None
            year = item[2] if len(item) > 2 else None
        else:
            raise ValueError(f"fault must be a name or (name, tile[, year]), got {item!r}")
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; valid faults: {valid}")
        tile = None
        if tname is not None:
            tile = _as_tile(tname)
            if tile not in tiles:
                raise ValueError(f"fault {name!r}: tile {tile.name} is not in the archive")
        if year is not None and _FAULT_TARGET[name] != "landmask":
            year = int(year)
            if year not in years:
                raise ValueError(f"fault {name!r}: year {year} is not in the archive")
        if _FAULT_TARGET[name] == "landmask":
            if landmasks == "none":
                raise ValueError(f"fault {name!r} needs landmasks, but landmasks='none'")
            year = 0
        specs.append((name, tile, year))

    # Slots: (tile, year) for .npy faults, (tile, 0) for landmask faults. Explicit ones first.
    used: dict[tuple[TileId, int], str] = {}
    per_tile: dict[TileId, int] = {t: 0 for t in tiles}
    out: list[tuple[str, TileId, int] | None] = [None] * len(specs)

    def take(i: int, name: str, tile: TileId, year: int) -> None:
        key = (tile, year)
        if key in used:
            what = f"tile {tile.name}" + ("" if year == 0 else f" year {year}")
            raise ValueError(f"faults {used[key]!r} and {name!r} both target {what}")
        used[key] = name
        per_tile[tile] += 1
        out[i] = (name, tile, year)

    for i, (name, tile, year) in enumerate(specs):
        if tile is not None:
            if year is None:
                year = next((y for y in years if (tile, y) not in used), years[0])
            take(i, name, tile, year)
    for i, (name, tile, year) in enumerate(specs):
        if tile is not None:
            continue
        cand_years = [0] if _FAULT_TARGET[name] == "landmask" else ([year] if year is not None else years)
        best = None
        for t in sorted(tiles, key=lambda t: (per_tile[t], t.lat_i, t.lon_i)):
            y = next((y for y in cand_years if (t, y) not in used), None)
            if y is not None:
                best = (t, y)
                break
        if best is None:
            raise ValueError(
                f"no free tile/year left for fault {name!r}: {len(specs)} faults on "
                f"{len(tiles)} tiles x {len(years)} years; add tiles or years"
            )
        take(i, name, *best)
    return [o for o in out if o is not None]


def _apply_fault(name: str, tile: TileId, year: int, yroot: Path, lroot: Path, root: Path, seed: int) -> InjectedFault:
    tn = tile.name
    emb = yroot / _rel_emb(year, tn) if year else None
    sc = yroot / _rel_scales(year, tn) if year else None
    t = _npy_mtime(year) if year else _LANDMASK_MTIME
    fp = footprint(tile)
    target: Path
    if name == "truncated":
        target = emb
        size = emb.stat().st_size
        os.truncate(emb, size - (fp.width * BANDS * 3 + 1000))
    elif name == "missing-scales":
        target = sc
        sc.unlink()
    elif name == "missing-embeddings":
        target = emb
        emb.unlink()
    elif name == "shape-mismatch":
        target = sc
        _save_npy(sc, np.ascontiguousarray(np.load(sc)[:-1]))
    elif name == "footprint-mismatch":
        target = emb
        shape = (fp.height + 3, fp.width)
        _save_npy(emb, tile_embeddings(tile, year, seed=seed, shape=shape))
        _save_npy(sc, tile_scales(tile, year, seed=seed, shape=shape))
        _set_mtime(sc, t)
    elif name == "fortran-order":
        target = emb
        _save_npy(emb, np.asfortranarray(np.load(emb)))
    elif name == "wrong-dtype":
        target = sc
        _save_npy(sc, np.load(sc).astype(np.float64))
    elif name == "bad-magic":
        target = emb
        with open(emb, "r+b") as f:
            f.write(b"GARBAGE!")
    elif name == "bad-bands":
        target = emb
        _save_npy(emb, np.ascontiguousarray(np.load(emb)[:, :, :64]))
    elif name == "corrupt-bytes":
        target = emb
        size = emb.stat().st_size
        with open(emb, "r+b") as f:
            header = _npy_header_len(f)
            pos = header + (size - header) // 2
            f.seek(pos)
            b = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([b ^ 0x5A]))
    elif name == "corrupt-landmask":
        target = lroot / f"{tn}.tiff"
        size = target.stat().st_size
        rng = _rng(seed, 0, tile, _S_FAULT)
        junk = b"GARBAGE, NOT A TIFF\n" + rng.bytes(max(0, size - 20))
        target.write_bytes(junk[:size] if size >= 20 else junk)
    else:  # pragma: no cover - guarded by _parse_faults
        raise ValueError(name)
    if target.exists():
        _set_mtime(target, t)
    return InjectedFault(name, tn, year, target.relative_to(root).as_posix())


def _npy_header_len(f: io.BufferedIOBase) -> int:
    f.seek(0)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        np.lib.format.read_array_header_1_0(f)  # advances to the data
    else:
        np.lib.format.read_array_header_2_0(f)
    return f.tell()


# --------------------------------------------------------------------------------------------
# The archive


def _tile_list(tiles: Iterable[TileId | str] | None, preset: str) -> list[TileId]:
    if tiles is None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        tiles = PRESETS[preset]
    out = sorted({_as_tile(t) for t in tiles}, key=lambda t: (t.lat_i, t.lon_i))
    if not out:
        raise ValueError("no tiles")
    return out


def make_legacy_archive(
    root: str | os.PathLike,
    *,
    years: Iterable[int] = (2024,),
    tiles: Iterable[TileId | str] | None = None,
    preset: str = "small",
    layout: str = "local",
    dataset: str | None = None,
    dataset_version: str | None = None,
    dataset_variant: str = DEFAULT_VARIANT,
    metadata: bool = True,
    landmask_version: str = "v1",
    landmasks: str | None = None,
    registries: bool = True,
    registry_paths: str = "relative",
    landmask_registry: str = "parquet",
    faults: Sequence = (),
    seed: int = 0,
    progress: bool = False,
) -> ArchiveReport:
    """Write a synthetic legacy archive under `root` (which must be missing or empty).

    `tiles` (names or TileIds) overrides `preset`. `faults` holds fault names or
    ``(fault, tile)`` / ``(fault, tile, year)`` tuples; faults without a tile go to distinct tiles
    (then distinct tile-years) chosen deterministically, and are injected after the registries are
    written, so the registries describe the intact files.

    The dataset (FORMATS.md §1.5) is `dataset_version` ('1.0', '1.1', '2.0', ...) and `dataset_variant`;
    the object layout's `npy/<dataset>` directory defaults to its name (`v1`, `v1.1`, `v2-<variant>` for a
    variant other than vultr); given alone, `dataset` names the version. `metadata` writes the local
    layout's `tessera_metadata.json`. Landmasks default to a coastline before v2 and to none from v2 on.
    `registry_paths` is how manifest.parquet and landmasks.parquet name files: 'relative' (to the year or
    landmask root), 'foreign' (absolute paths of another machine's mount) or 's3' (s3://bucket/key URLs, as the
    incumbent's scanner writes them); `landmask_registry` 'parquet' (lon, lat, file_size, mtime, key, lon_i,
    lat_i) or 'keyless' (the incumbent's local form: lat, lon, hash, file_size).
    """
    _check_layout(layout)
    version, variant, dataset = _dataset(dataset, dataset_version, dataset_variant)
    if landmasks is None:
        landmasks = "coastline" if int(version.split(".")[0]) < 2 else "none"
    if landmasks not in LANDMASK_MODES:
        raise ValueError(f"unknown landmasks mode {landmasks!r}; valid: {', '.join(LANDMASK_MODES)}")
    if registry_paths not in REGISTRY_PATHS:
        raise ValueError(f"unknown registry_paths {registry_paths!r}; valid: {', '.join(REGISTRY_PATHS)}")
    if landmask_registry not in LANDMASK_REGISTRIES:
        raise ValueError(f"unknown landmask_registry {landmask_registry!r}; valid: {', '.join(LANDMASK_REGISTRIES)}")
    seed = int(seed)
    if seed < 0:
        raise ValueError("seed must be >= 0")
    years_l = sorted({int(y) for y in years})
    if not years_l or any(y <= 0 for y in years_l):
        raise ValueError(f"years must be positive, got {years_l}")
    tile_l = _tile_list(tiles, preset)
    fault_plan = _parse_faults(faults, tile_l, years_l, landmasks)

    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: not empty; the synthetic archive needs a new or empty directory")
    root.mkdir(parents=True, exist_ok=True)
    yroot = year_root(root, layout, dataset)
    lroot = landmask_root(root, layout, landmask_version)

    from tqdm import tqdm

    n_lm = len(tile_l) if landmasks != "none" else 0
    bar = tqdm(total=len(tile_l) * len(years_l) + n_lm, unit="file", disable=not progress, desc="synthetic")

    # Landmasks: one per tile cell.
    lm_rows = []
    if landmasks != "none":
        lroot.mkdir(parents=True, exist_ok=True)
        for tile in tile_l:
            p = lroot / f"{tile.name}.tiff"
            _write_geotiff(p, tile_landmask(tile, mode=landmasks), footprint(tile))
            _set_mtime(p, _LANDMASK_MTIME)
            lm_rows.append((tile, p.stat().st_size, sha256_file(p) if registries else None))
            bar.update(1)

    # Tiles.
    rows = []  # (year, tile, emb_sha, emb_size, sc_sha, sc_size)
    for year in years_l:
        t = _npy_mtime(year)
        for tile in tile_l:
            d = yroot / str(year) / tile.name
            d.mkdir(parents=True, exist_ok=True)
            emb, sc = yroot / _rel_emb(year, tile.name), yroot / _rel_scales(year, tile.name)
            _save_npy(emb, tile_embeddings(tile, year, seed=seed))
            _save_npy(sc, tile_scales(tile, year, seed=seed))
            _set_mtime(emb, t)
            _set_mtime(sc, t)
            if registries:
                e_sha, s_sha = sha256_file(emb), sha256_file(sc)
                _write_text(d / "SHA256", [f"{e_sha}  {emb.name}", f"{s_sha}  {sc.name}"], t)
                rows.append((year, tile, e_sha, emb.stat().st_size, s_sha, sc.stat().st_size))
            bar.update(1)
    bar.close()

    if metadata and layout == "local":
        write_dataset_metadata(root, version, variant, _mtime(max(years_l) + 1, 3, 15))
    if registries:
        paths = RegistryPaths(registry_paths, root, yroot, lroot)
        _write_registries(root, yroot, lroot, rows, lm_rows, (version, variant), years_l, paths, landmask_registry)

    injected = [_apply_fault(n, t, y, yroot, lroot, root, seed) for n, t, y in fault_plan]

    # Fixed directory mtimes too (bottom-up), so `ls -l` and tar are reproducible.
    dir_t = _mtime(max(years_l) + 1, 4, 1)
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda e: -len(e[0])):
        _set_mtime(Path(dirpath), dir_t)

    n_files = n_bytes = 0
    for dirpath, _dirs, files in os.walk(root):
        for fname in files:
            n_files += 1
            n_bytes += os.path.getsize(os.path.join(dirpath, fname))
    return ArchiveReport(
        root=str(root),
        layout=layout,
        years=years_l,
        tiles=[t.name for t in tile_l],
        files=n_files,
        bytes=n_bytes,
        faults=injected,
    )


def _dataset(dataset: str | None, version: str | None, variant: str) -> tuple[str, str, str]:
    """(version, variant, npy/<dataset> directory name) from what the caller gave."""
    if version is None:
        version, variant = parse_dataset_name(dataset) if dataset else ("1.0", variant)
    else:
        version = normalize_version(version)
    major, minor = version.split(".")
    name = f"v{major}" if minor == "0" else f"v{version}"
    return version, variant, dataset or (name if variant == DEFAULT_VARIANT else f"{name}-{variant}")


def write_dataset_metadata(root: str | os.PathLike, version: str, variant: str = DEFAULT_VARIANT,
                           mtime: int | None = None) -> Path:
    """A local tree's `tessera_metadata.json` (dataset_version, dataset_variant, dataset_version_path,
    embeddings_subdir), as the incumbent writes beside downloaded tiles."""
    major, minor = version.split(".")
    doc = {"dataset_version": version, "dataset_variant": variant,
           "dataset_version_path": f"v{major}" if minor == "0" else f"v{version}",
           "embeddings_subdir": "global_0.1_degree_representation"}
    path = Path(root) / METADATA_FILE
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if mtime is not None:
        _set_mtime(path, mtime)
    return path


@dataclass(frozen=True)
class RegistryPaths:
    """How registry rows name files: relative to their root, another machine's absolute paths, or s3:// URLs."""

    form: str
    root: Path
    yroot: Path
    lroot: Path

    def _prefix(self, directory: Path) -> str:
        rel = directory.relative_to(self.root).as_posix()
        if self.form == "foreign":
            return f"{FOREIGN_MOUNT}/{rel}/"
        if self.form == "s3":
            return f"s3://{FOREIGN_BUCKET}/{rel}/"
        return ""

    def tile(self, rel: str) -> str:
        """A path relative to the year root, as the registry writes it."""
        return self._prefix(self.yroot) + rel

    def landmask(self, name: str) -> str:
        return self._prefix(self.lroot) + name


def _write_registries(root: Path, yroot: Path, lroot: Path, rows, lm_rows, dataset: tuple[str, str], years: list[int],
                      paths: RegistryPaths, landmask_registry: str) -> None:
    import pyarrow as pa

    t_reg = _mtime(max(years) + 1, 3, 15)
    rows = sorted(rows, key=lambda r: (r[0], r[1].lat_i, r[1].lon_i))
    reg = root / "registry"
    for year in years:
        lines = []
        for y, tile, e_sha, _es, s_sha, _ss in rows:
            if y == year:
                lines.append(f"{_rel_emb(y, tile.name)} {e_sha}")
                lines.append(f"{_rel_scales(y, tile.name)} {s_sha}")
        _write_text(reg / f"embeddings_{year}.txt", lines, t_reg)
    sums = []
    for y, tile, e_sha, _es, s_sha, _ss in rows:
        sums.append(f"{e_sha}  {_rel_emb(y, tile.name)}")
        sums.append(f"{s_sha}  {_rel_scales(y, tile.name)}")
    _write_text(yroot / "SHA256SUMS", sums, t_reg)

    lon = [r[1].lon for r in rows]
    lat = [r[1].lat for r in rows]
    yr = [r[0] for r in rows]
    mt = [float(_npy_mtime(r[0])) for r in rows]
    lon_i = [r[1].lon_i for r in rows]
    lat_i = [r[1].lat_i for r in rows]
    f64, i32, i64, s = pa.float64(), pa.int32(), pa.int64(), pa.string()
    _write_parquet(
        root / "registry.parquet",
        {
            "lat": (lat, f64),
            "lon": (lon, f64),
            "year": (yr, i32),
            "hash": ([r[2] for r in rows], s),
            "scales_hash": ([r[4] for r in rows], s),
            "mtime": (mt, f64),
            "file_size": ([r[3] for r in rows], i64),
            "scales_size": ([r[5] for r in rows], i64),
            "lon_i": (lon_i, i32),
            "lat_i": (lat_i, i32),
        },
        t_reg,
    )
    _write_parquet(
        root / "manifest.parquet",
        {
            "version": ([dataset[0]] * len(rows), s),
            "variant": ([dataset[1]] * len(rows), s),
            "year": (yr, i32),
            "lon": (lon, f64),
            "lat": (lat, f64),
            "directory": ([paths.tile(f"{r[0]}/{r[1].name}") for r in rows], s),
            "grid_path": ([paths.tile(_rel_emb(r[0], r[1].name)) for r in rows], s),
            "scales_path": ([paths.tile(_rel_scales(r[0], r[1].name)) for r in rows], s),
            "grid_mtime": (mt, f64),
            "scales_mtime": (mt, f64),
            "grid_size": ([r[3] for r in rows], i64),
            "scales_size": ([r[5] for r in rows], i64),
            "lon_i": (lon_i, i32),
            "lat_i": (lat_i, i32),
        },
        t_reg,
    )
    if lm_rows:
        lm_rows = sorted(lm_rows, key=lambda r: (r[0].lat_i, r[0].lon_i))
        _write_text(reg / "landmasks.txt", [f"{t.name}.tiff {sha}" for t, _size, sha in lm_rows], t_reg)
        _write_text(lroot / "SHA256SUM", [f"{sha}  {t.name}.tiff" for t, _size, sha in lm_rows], t_reg)
        if landmask_registry == "keyless":
            columns = {
                "lat": ([t.lat for t, _, _ in lm_rows], f64),
                "lon": ([t.lon for t, _, _ in lm_rows], f64),
                "hash": ([sha for _, _, sha in lm_rows], s),
                "file_size": ([size for _, size, _ in lm_rows], i64),
            }
        else:
            columns = {
                "lon": ([t.lon for t, _, _ in lm_rows], f64),
                "lat": ([t.lat for t, _, _ in lm_rows], f64),
                "file_size": ([size for _, size, _ in lm_rows], i64),
                "mtime": ([float(_LANDMASK_MTIME)] * len(lm_rows), f64),
                "key": ([paths.landmask(f"{t.name}.tiff") for t, _, _ in lm_rows], s),
                "lon_i": ([t.lon_i for t, _, _ in lm_rows], i32),
                "lat_i": ([t.lat_i for t, _, _ in lm_rows], i32),
            }
        _write_parquet(root / "landmasks.parquet", columns, t_reg)
    _set_mtime(reg, t_reg)
