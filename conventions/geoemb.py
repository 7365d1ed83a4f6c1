"""geoemb: root-group attributes: build ours exactly as the incumbent writes them; validate any."""

from __future__ import annotations

import operator
from typing import Any

from .declarations import require_declared
from .issues import WARNING, Issue, errors, pointer
from .registry import GEOEMB, conventions_entry
from .schemas import apply_schema

MODEL_URL = "https://geotessera.org/model/{version}"
# ESA's Sentinel mission pages: what the incumbent (geotessera) and the upstream TESSERA
# example write, so stores from either tool carry identical provenance.
SOURCE_DATA = (
    "https://sentinel.esa.int/web/sentinel/missions/sentinel-1",
    "https://sentinel.esa.int/web/sentinel/missions/sentinel-2",
)
_DEGREE_LIKE_GSD = 0.01  # metres; smaller values are almost surely degrees (10 m ~ 9e-5 deg)


def build_geoemb_attributes(*, model_version: str, build_version: str, dimensions: int, data_type: str,
                            gsd: float, spatial_layout: str, scale_array: str, scale_nodata: str,
                            original_dtype: str, extra: dict | None = None) -> dict:
    """geoemb: attributes of a pixel-embedding group quantized with a per-pixel scale array, in the incumbent's
    key order, with the geoemb zarr_conventions entry (the store's values come from `transcode.format`)."""
    if not isinstance(model_version, str) or not model_version.strip():
        raise ValueError("model_version must be a non-empty string")
    if not isinstance(build_version, str) or not build_version.strip():
        raise ValueError("build_version must be a non-empty string")
    attrs: dict[str, Any] = {
        "zarr_conventions": [conventions_entry("geoemb")],
        "geoemb:type": "pixel",
        "geoemb:dimensions": dimensions if isinstance(dimensions, bool) else operator.index(dimensions),
        "geoemb:model": MODEL_URL.format(version=model_version.strip()),
        "geoemb:source_data": list(SOURCE_DATA),
        "geoemb:data_type": data_type,
        "geoemb:gsd": float(gsd),
        "geoemb:spatial_layout": spatial_layout,
        "geoemb:build_version": build_version,
        "geoemb:quantization": {
            "method": "per_pixel_scale",
            "original_dtype": original_dtype,
            "quantized_dtype": data_type,
            "scale": {"type": "array", "array_name": scale_array, "nodata": scale_nodata},
        },
    }
    for key, value in (extra or {}).items():
        if key in attrs and attrs[key] != value:
            raise ValueError(f"extra attribute {key!r} conflicts with the built value {attrs[key]!r}")
        attrs[key] = value
    problems = errors(validate_geoemb(attrs))
    if problems:
        raise ValueError("built geoemb attributes are invalid: " + "; ".join(i.message for i in problems))
    return attrs


def validate_geoemb(attrs: Any) -> list[Issue]:
    """Findings for a group's geoemb: attributes: our schema, the convention entry, semantic checks."""
    issues = apply_schema("geoemb", attrs)
    if not isinstance(attrs, dict):
        return issues
    issues += require_declared(attrs, GEOEMB)
    issues += _gsd_units(attrs.get("geoemb:gsd"))
    issues += _nodata(attrs.get("geoemb:quantization"))
    return issues


def _gsd_units(gsd: Any) -> list[Issue]:
    """A warning when geoemb:gsd (metres) looks like a value in degrees."""
    if isinstance(gsd, (int, float)) and not isinstance(gsd, bool) and 0 < gsd < _DEGREE_LIKE_GSD:
        return [Issue(WARNING, "geoemb:gsd", f"geoemb:gsd: {gsd!r} is in metres by the convention; "
                      "this looks like degrees", pointer("geoemb:gsd"))]
    return []


def _nodata(quantization: Any) -> list[Issue]:
    """An error when an array scale's string nodata is not a number ("+inf", "nan", "-1.5")."""
    scale = quantization.get("scale") if isinstance(quantization, dict) else None
    nodata = scale.get("nodata") if isinstance(scale, dict) else None
    if not isinstance(nodata, str):
        return []
    try:
        float(nodata)
    except ValueError:
        where = pointer("geoemb:quantization", "scale", "nodata")
        return [Issue(WARNING, "geoemb:quantization", f"geoemb:quantization/scale/nodata: {nodata!r} is not a "
                      "number (write e.g. '+inf' or 'nan')", where)]
    return []
