"""Attributes of one UTM zone group: proj: and spatial: keys with both zarr_conventions entries."""

from __future__ import annotations

import operator

from . import zarrcm
from .declarations import validate_zarr_conventions
from .issues import ERROR, Issue, pointer
from .proj import build_proj_attributes, validate_proj
from .spatial import build_spatial_attributes, validate_spatial

PIXEL_M = 10.0


def zone_epsg(zone: int) -> int:
    """The store's canonical EPSG code of UTM zone `zone` (326NN for both hemispheres, FORMATS.md §1.4)."""
    try:
        number = operator.index(zone)  # int or numpy integer, not float
    except TypeError:
        number = None
    if isinstance(zone, bool) or number is None or not 1 <= number <= 60:
        raise ValueError(f"UTM zone must be an integer 1..60, got {zone!r}")
    return 32600 + number


def build_zone_attributes(zone: int, origin_x: float, origin_y: float, height: int, width: int,
                          pixel: float = PIXEL_M) -> dict:
    """The zone group's attributes (FORMATS.md §2): proj:code, spatial: keys, and their entries."""
    if not pixel > 0:
        raise ValueError(f"pixel size must be positive, got {pixel!r}")
    if isinstance(height, bool) or isinstance(width, bool) or int(height) != height or int(width) != width:
        raise ValueError(f"height and width must be integers, got {height!r}, {width!r}")
    transform = [float(pixel), 0.0, float(origin_x), 0.0, -float(pixel), float(origin_y)]
    attrs = zarrcm.insert("proj", {}, build_proj_attributes(f"EPSG:{zone_epsg(zone)}"))
    return zarrcm.insert("spatial", attrs, build_spatial_attributes(transform, [height, width]))


def validate_zone(attrs: dict) -> list[Issue]:
    """Findings for a zone group's attributes: zarr_conventions, proj:, spatial:, and no geoemb: keys."""
    issues = validate_zarr_conventions(attrs) + validate_proj(attrs) + validate_spatial(attrs)
    if isinstance(attrs, dict):
        issues += [Issue(ERROR, key, f"{key}: zone groups carry no geoemb: keys (they belong on the root)",
                         pointer(key)) for key in attrs if key.startswith("geoemb:")]
    return issues
