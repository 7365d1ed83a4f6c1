"""Convention metadata (geoemb:, proj:, spatial:, multiscales): build and validate; no I/O, no transcode imports.

proj:, spatial: and multiscales go through zarr-cm (`zarrcm`); geoemb: and the `zarr_conventions` entries are ours.
"""

from .declarations import require_declared, validate_zarr_conventions
from .geoemb import build_geoemb_attributes, validate_geoemb
from .issues import Issue
from .multiscales import build_multiscales_attributes, validate_multiscales
from .proj import build_proj_attributes, validate_proj
from .registry import CONVENTIONS, Convention, conventions_entry, identify
from .spatial import bbox_from_transform, build_spatial_attributes, validate_spatial
from .zone import validate_zone

__all__ = [
    "CONVENTIONS", "Convention", "Issue", "bbox_from_transform", "build_geoemb_attributes",
    "build_multiscales_attributes", "build_proj_attributes", "build_spatial_attributes",
    "conventions_entry", "identify", "require_declared", "validate_geoemb", "validate_multiscales", "validate_proj",
    "validate_spatial", "validate_zarr_conventions", "validate_zone",
]
