"""What a scale value means: finite 0 < s < 1 is a valid pixel, NaN is water or an invalid source scale, +inf is
land with no data yet (the fill value of `scales`). Nothing else may appear in a store."""

from __future__ import annotations

import math

import numpy as np

NO_DATA = math.inf  # land with no data yet: the fill value of `scales`
WATER = math.nan  # water (landmask 0) or a source scale that is not valid
NO_DATA_TEXT = "+inf"  # how geoemb:quantization/scale/nodata spells NO_DATA


def valid_scales(scales: np.ndarray) -> np.ndarray:
    """Where a scale is a valid pixel's: finite and 0 < s < 1 (source tiles carry huge finite sentinels)."""
    with np.errstate(invalid="ignore"):
        return (scales > 0) & (scales < 1)  # NaN compares False, so NaN and ±inf are not valid


def stray_scales(scales: np.ndarray) -> np.ndarray:
    """Where a stored scale is none of the three meanings (valid, NaN, +inf): a corrupted or foreign value."""
    return ~(valid_scales(scales) | np.isnan(scales) | np.isposinf(scales))


def sanitize_scales(scales: np.ndarray, landmask: np.ndarray | None) -> np.ndarray:
    """Source scales as the store holds them: NaN where not valid and where the landmask is 0 (water); in place."""
    scales[~valid_scales(scales)] = WATER
    if landmask is not None:
        h, w = min(landmask.shape[0], scales.shape[0]), min(landmask.shape[1], scales.shape[1])
        water = landmask[:h, :w] == 0
        scales[:h, :w][water] = WATER
    return scales
