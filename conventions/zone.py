"""Checks of one UTM zone group's attributes: proj: and spatial: keys with both zarr_conventions entries, and no
geoemb: keys (the store's own zone attributes are built by `transcode.format.attributes`)."""

from __future__ import annotations

from .declarations import validate_zarr_conventions
from .issues import ERROR, Issue, pointer
from .proj import validate_proj
from .spatial import validate_spatial


def validate_zone(attrs: dict) -> list[Issue]:
    """Findings for a zone group's attributes: zarr_conventions, proj:, spatial:, and no geoemb: keys."""
    issues = validate_zarr_conventions(attrs) + validate_proj(attrs) + validate_spatial(attrs)
    if isinstance(attrs, dict):
        issues += [Issue(ERROR, key, f"{key}: zone groups carry no geoemb: keys (they belong on the root)",
                         pointer(key)) for key in attrs if key.startswith("geoemb:")]
    return issues
