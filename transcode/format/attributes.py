"""The attributes of the store's groups, built through `transcode.conventions`: the root's geoemb: keys (exactly as
the incumbent writes them) and each zone group's proj: and spatial: keys; and the zone grid read back from them."""

from __future__ import annotations

import operator
from typing import Any

from transcode.conventions import zarrcm
from transcode.conventions.proj import build_proj_attributes
from transcode.conventions.spatial import build_spatial_attributes
from transcode.format.arrays import BANDS, EMBEDDINGS, SCALES, SCALES_DTYPE, SPATIAL_DIMS
from transcode.format.grid import PIXEL_M, ZoneGrid, canonical_epsg
from transcode.format.sentinels import NO_DATA_TEXT

SPATIAL_LAYOUT = "utm_zones"
REGISTRATION = "pixel"
# root attributes every tessera store has whatever its versions, as JSON pointers below /attributes
ROOT_INVARIANTS = ("geoemb:type", "geoemb:spatial_layout", "geoemb:quantization/method")


def root_attributes(build_version: str, model_version: str, landmask: bool = True) -> dict:
    """The root group's attributes: geoemb: keys and the geoemb zarr_conventions entry. `model_version` is the
    source dataset's version (never a constant: the store says which embeddings it holds); `landmask` False
    (from v2 on every pixel of a present tile is data) adds `geoemb:landmask: false`, as the incumbent writes it
    (absent means masked)."""
    from transcode.conventions.geoemb import build_geoemb_attributes

    return build_geoemb_attributes(model_version=model_version, build_version=build_version, dimensions=BANDS,
                                   data_type=EMBEDDINGS.data_type, gsd=PIXEL_M, spatial_layout=SPATIAL_LAYOUT,
                                   scale_array=SCALES.name, scale_nodata=NO_DATA_TEXT,
                                   original_dtype=SCALES_DTYPE.name,
                                   extra=None if landmask else {"geoemb:landmask": False})


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
