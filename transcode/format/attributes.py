"""The attributes of the store's groups, built through `transcode.conventions`: the root's geoemb: keys (exactly as
the incumbent writes them, `geoemb:depths` for a store with nested depths) and each zone group's proj: and spatial:
keys; and the zone grid and the nested depths read back from them."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

from transcode.conventions import zarrcm
from transcode.conventions.proj import build_proj_attributes
from transcode.conventions.spatial import build_spatial_attributes
from transcode.format.arrays import BANDS, EMBEDDINGS, SCALES, SCALES_DTYPE, SPATIAL_DIMS, depth_array_name
from transcode.format.grid import PIXEL_M, ZoneGrid, canonical_epsg
from transcode.format.sentinels import NO_DATA_TEXT

SPATIAL_LAYOUT = "utm_zones"
REGISTRATION = "pixel"
# root attributes every tessera store has whatever its versions, as JSON pointers below /attributes
ROOT_INVARIANTS = ("geoemb:type", "geoemb:spatial_layout", "geoemb:quantization/method")
DEPTHS_ATTR = "geoemb:depths"  # the nested depths of the store, full depth last; absent: a single-depth store
DEPTHS_MIN_VERSION = 2  # nested depths need dimensions ordered by importance (matryoshka): dataset v2 and later
LANDMASK_ATTR = "geoemb:landmask"  # false: every pixel of a present tile is data (v2 on); absent means true (masked)


def root_attributes(build_version: str, model_version: str, depths: Iterable[int] = (), *,
                    landmask: bool = True) -> dict:
    """The root group's attributes: geoemb: keys (with `geoemb:depths` when there are nested depths) and the geoemb
    zarr_conventions entry. `model_version` is the source dataset's version (never a constant: the store says which
    embeddings it holds); `landmask` False (from v2 on every pixel of a present tile is data) adds
    `geoemb:landmask: false`, as the incumbent writes it (absent means masked)."""
    from transcode.conventions.geoemb import build_geoemb_attributes

    attrs = build_geoemb_attributes(model_version=model_version, build_version=build_version, dimensions=BANDS,
                                    data_type=EMBEDDINGS.data_type, gsd=PIXEL_M, spatial_layout=SPATIAL_LAYOUT,
                                    scale_array=SCALES.name, scale_nodata=NO_DATA_TEXT,
                                    original_dtype=SCALES_DTYPE.name,
                                    extra=None if landmask else {LANDMASK_ATTR: False})
    depths = sorted(set(depths))
    if depths:
        attrs[DEPTHS_ATTR] = depths_attribute(depths)
    return attrs


def depths_attribute(depths: Iterable[int]) -> list[dict]:
    """`geoemb:depths`: one entry per nested depth, ascending, and the full depth (`embeddings`) last."""
    return [{"dimensions": int(d), "array": depth_array_name(int(d))} for d in (*sorted(set(depths)), BANDS)]


def depths_of(root_attrs: dict) -> tuple[int, ...]:
    """The nested depths (full depth excluded) a root's `geoemb:depths` declares; () for a single-depth store.
    ValueError when the attribute is not a list of {dimensions, array} entries."""
    entries = root_attrs.get(DEPTHS_ATTR)
    if entries is None:
        return ()
    try:
        depths = {int(e["dimensions"]) for e in entries}
    except (TypeError, KeyError, ValueError) as err:
        raise ValueError(f"{DEPTHS_ATTR} is not a list of {{dimensions, array}} entries ({err!r})") from None
    return tuple(sorted(d for d in depths if d < BANDS))


def check_depths(depths: Iterable[int], dataset_version: str | None) -> tuple[int, ...]:
    """The nested depths to write, sorted; ValueError saying why when they may not be: a depth outside
    1..BANDS-1 (the full depth is always there, as `embeddings`), or a dataset before v2 or of unknown version
    (the dimensions of v1/v1.1 are not ordered by importance: their first D bands are an arbitrary slice)."""
    raw = list(depths)
    if not raw:
        return ()
    bad = [d for d in raw if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d < BANDS]
    if bad:
        raise ValueError(f"nested depths are whole numbers 1..{BANDS - 1} (the full {BANDS} is always written, as "
                         f"{EMBEDDINGS.name!r}); got {', '.join(map(repr, bad))}")
    if len(set(raw)) != len(raw):
        raise ValueError(f"nested depths are listed once each; got {', '.join(map(str, raw))}")
    if dataset_version is None:
        raise ValueError(f"nested depths need a dataset of version {DEPTHS_MIN_VERSION} or later, and the source's "
                         "dataset version is not known")
    try:
        major = float(str(dataset_version).lstrip("v"))
    except ValueError:
        raise ValueError(f"nested depths need a dataset of version {DEPTHS_MIN_VERSION} or later; the source's "
                         f"version {dataset_version!r} is not a number") from None
    if major < DEPTHS_MIN_VERSION:
        raise ValueError(f"nested depths need a dataset of version {DEPTHS_MIN_VERSION} or later (matryoshka-ordered "
                         f"dimensions); dataset {dataset_version} is not: its first bands are an arbitrary slice")
    return tuple(sorted(raw))


def root_invariants() -> dict[str, Any]:
    """Pointer (below /attributes) -> value, for the root attributes that do not depend on versions."""
    attrs = root_attributes("0", "0")
    out = {}
    for path in ROOT_INVARIANTS:
        value: Any = attrs
        for part in path.split("/"):
            value = value[part]
        out[path] = value
    return out


def zone_crs(zone: int) -> str:
    """proj:code of zone `zone`: the northern UTM EPSG code for both hemispheres."""
    return f"EPSG:{canonical_epsg(zone)}"


def zone_attributes(zone: int, origin_x: float, origin_y: float, height: int, width: int) -> dict:
    """A zone group's attributes: proj:code, the spatial: keys of its 10 m grid, and both zarr_conventions entries."""
    try:
        number = operator.index(zone)  # int or numpy integer, not float
    except TypeError:
        number = None
    if isinstance(zone, bool) or number is None or not 1 <= number <= 60:
        raise ValueError(f"UTM zone must be an integer 1..60, got {zone!r}")
    if isinstance(height, bool) or isinstance(width, bool) or int(height) != height or int(width) != width:
        raise ValueError(f"height and width must be integers, got {height!r}, {width!r}")
    transform = [PIXEL_M, 0.0, float(origin_x), 0.0, -PIXEL_M, float(origin_y)]
    attrs = zarrcm.insert("proj", {}, build_proj_attributes(zone_crs(number)))
    return zarrcm.insert("spatial", attrs, build_spatial_attributes(transform, [height, width], dimensions=SPATIAL_DIMS,
                                                                     registration=REGISTRATION))


def grid_attributes(grid: ZoneGrid) -> dict:
    """zone_attributes of a zone grid."""
    return zone_attributes(grid.zone, grid.origin_x, grid.origin_y, grid.height, grid.width)


def transform_problem(transform: list) -> str | None:
    """Why a 6-number spatial:transform is not a zone grid's (north-up, PIXEL_M pixels), or None."""
    a, b, _, d, e, _ = transform
    if [a, b, d, e] != [PIXEL_M, 0, 0, -PIXEL_M]:
        return (f"spatial:transform {transform} is not a north-up {PIXEL_M:g} m grid "
                f"[{PIXEL_M:g}, 0, x, 0, -{PIXEL_M:g}, y]")
    return None


def grid_of(zone: int, attrs: dict) -> ZoneGrid:
    """The zone grid a zone group's spatial: attributes describe; ValueError when they describe none."""
    try:
        transform = list(attrs["spatial:transform"])
        _, _, c, _, _, f = transform
        h, w = attrs["spatial:shape"]
        origin_x, origin_y, height, width = float(c), float(f), int(h), int(w)
    except (KeyError, ValueError, TypeError, OverflowError) as err:  # OverflowError: an infinite shape
        raise ValueError(f"no usable spatial:transform/spatial:shape ({err!r})") from None
    problem = transform_problem(transform)
    if problem:
        raise ValueError(problem)
    return ZoneGrid(zone, origin_x, origin_y, height, width)
