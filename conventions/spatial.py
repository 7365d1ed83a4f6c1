"""spatial: attributes: a 2-D affine description built and checked with zarr-cm; the geometry rules are ours."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from . import zarrcm
from .declarations import require_declared
from .issues import ERROR, INFO, WARNING, Issue, not_an_object, pointer
from .registry import SPATIAL

KEYS = ("spatial:dimensions", "spatial:transform", "spatial:shape", "spatial:bbox", "spatial:registration",
        "spatial:transform_type")  # the order we (and the incumbent) write them in
_FLOAT_RTOL = 1e-12  # below this a bbox difference is float noise, not a finding


def bbox_from_transform(transform: Sequence[float], shape: Sequence[int], registration: str = "pixel") -> list[float]:
    """[xmin, ymin, xmax, ymax] of the affine `transform` over `shape` [H, W].

    Pixel registration spans index corners 0..W and 0..H (outer pixel edges); node registration
    spans the outermost nodes 0..W-1 and 0..H-1 (spatial: README).
    """
    a, b, c, d, e, f = (float(v) for v in transform)
    height, width = shape
    last_row, last_col = (height, width) if registration != "node" else (height - 1, width - 1)
    corners = [(col, row) for col in (0, last_col) for row in (0, last_row)]
    xs = [a * col + b * row + c for col, row in corners]
    ys = [d * col + e * row + f for col, row in corners]
    return [min(xs), min(ys), max(xs), max(ys)]


def build_spatial_attributes(transform: Sequence[float], shape: Sequence[int],
                             dimensions: Sequence[str] = ("y", "x"), registration: str = "pixel") -> dict:
    """spatial: keys for a 2-D grid; the bbox is computed from transform and shape, so it agrees exactly."""
    transform = [float(v) for v in transform]
    shape = [int(v) for v in shape]
    if len(transform) != 6 or len(shape) != 2:
        raise ValueError(f"need 6 transform coefficients and a shape [H, W], got {transform}, {shape}")
    return zarrcm.create("spatial", KEYS, dimensions=list(dimensions), transform=transform, shape=shape,
                         bbox=bbox_from_transform(transform, shape, registration), registration=registration)


def validate_spatial(attrs: Any, *, dimension_names: Sequence[str] | None = None) -> list[Issue]:
    """Findings for a node's spatial: attributes: zarr-cm's v0.1 rules, the convention entry, geometry rules.

    `dimension_names` (an array's own) enables the check that spatial:dimensions name real dimensions.
    """
    if not isinstance(attrs, dict):
        return [not_an_object(attrs)]
    issues = spatial_key_issues(attrs)
    if "spatial:dimensions" not in attrs:  # the tessera layout and the older schemas require it on groups too
        issues.append(Issue(ERROR, "spatial:dimensions", "spatial:dimensions: required key 'spatial:dimensions' is "
                            "missing", pointer("spatial:dimensions")))
    issues += require_declared(attrs, SPATIAL)
    bad = {i.key for i in issues if i.severity == ERROR}
    issues += _finite(attrs, bad)
    issues += _dimensions(attrs, bad, dimension_names)
    issues += _geometry(attrs, bad | {i.key for i in issues if i.severity == ERROR})
    return issues


def spatial_key_issues(attrs: dict, where: tuple[str | int, ...] = ()) -> list[Issue]:
    """Errors for the spatial: keys of `attrs` that break zarr-cm's v0.1 rules, plus distinct, non-empty dimension
    names (which zarr-cm does not check); `where` is the path of `attrs` inside the node's attributes."""
    top = str(where[0]) if where else None
    out = []
    for key, message in zarrcm.problems("spatial", {k: attrs[k] for k in KEYS if k in attrs}, KEYS):
        path = (*where, key) if key else where
        out.append(Issue(ERROR, top or key or "", f"{'/'.join(map(str, path))}: {message}", pointer(*path)))
    dims = attrs.get("spatial:dimensions")
    if isinstance(dims, list) and all(isinstance(d, str) for d in dims) and (len(set(dims)) < len(dims) or "" in dims):
        path = (*where, "spatial:dimensions")
        out.append(Issue(ERROR, top or "spatial:dimensions", f"{'/'.join(map(str, path))}: {dims!r} must name "
                         "distinct, non-empty dimensions", pointer(*path)))
    return out


def _finite(attrs: dict, bad: set[str]) -> list[Issue]:
    """Errors for NaN or infinite numbers (Python dicts can hold them; JSON cannot)."""
    out = []
    for key in ("spatial:transform", "spatial:bbox"):
        values = attrs.get(key)
        if key in attrs and key not in bad and not all(math.isfinite(v) for v in values):
            out.append(Issue(ERROR, key, f"{key}: {values!r} holds a non-finite number", pointer(key)))
    return out


def _dimensions(attrs: dict, bad: set[str], dimension_names: Sequence[str] | None) -> list[Issue]:
    """Errors for spatial:dimensions that are not among the array's dimension_names."""
    key = "spatial:dimensions"
    if dimension_names is None or key not in attrs or key in bad:
        return []
    missing = [d for d in attrs[key] if d not in list(dimension_names)]
    if not missing:
        return []
    return [Issue(ERROR, key, f"{key}: {missing!r} not among the array's dimension_names "
                  f"{list(dimension_names)!r}", pointer(key))]


def _geometry(attrs: dict, bad: set[str]) -> list[Issue]:
    """Transform invertibility, bbox ordering, and bbox = transform x shape."""
    out: list[Issue] = []
    transform, shape, bbox = (attrs.get(k) if k not in bad else None
                              for k in ("spatial:transform", "spatial:shape", "spatial:bbox"))
    kind = attrs.get("spatial:transform_type", "affine")
    if transform is not None and kind != "affine":
        return [Issue(INFO, "spatial:transform_type", f"spatial:transform_type: {kind!r} is not 'affine'; "
                      "transform and bbox are not checked", pointer("spatial:transform_type"))]
    if transform is not None and transform[0] * transform[4] - transform[1] * transform[3] == 0:
        out.append(Issue(ERROR, "spatial:transform", f"spatial:transform: {transform!r} is degenerate "
                         "(a*e - b*d = 0)", pointer("spatial:transform")))
        transform = None
    if bbox is not None and (bbox[0] > bbox[2] or bbox[1] > bbox[3]):
        out.append(Issue(ERROR, "spatial:bbox", f"spatial:bbox: {bbox!r} is not [xmin, ymin, xmax, ymax]",
                         pointer("spatial:bbox")))
    elif None not in (transform, shape, bbox):
        out += _bbox_matches(transform, shape, bbox, attrs.get("spatial:registration", "pixel"))
    return out


def _bbox_matches(transform: list, shape: list, bbox: list, registration: str) -> list[Issue]:
    """Error when bbox is off transform x shape by half a pixel or more; warning when off at all."""
    expected = bbox_from_transform(transform, shape, registration)
    worst = max(abs(got - want) for got, want in zip(bbox, expected))
    noise = _FLOAT_RTOL * max(1.0, *(abs(v) for v in expected))
    if worst <= noise:
        return []
    pixel = min(math.hypot(transform[0], transform[3]), math.hypot(transform[1], transform[4]))
    severity = ERROR if worst >= pixel / 2 else WARNING
    return [Issue(severity, "spatial:bbox", f"spatial:bbox: {bbox!r} differs from transform x shape "
                  f"{expected!r} by up to {worst:g} ({worst / pixel:.3g} pixels)", pointer("spatial:bbox"))]
