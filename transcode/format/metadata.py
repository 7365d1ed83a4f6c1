"""The target layout (FORMATS.md §2): every zarr.json document and coordinate chunk of a store, built
deterministically with zarr-python in memory and then written through the storage interface."""

from __future__ import annotations

import warnings

import numpy as np

from transcode.engine.shardbuild import EncodeSettings
from transcode.format.grid import PIXEL_M, ZoneGrid
from transcode.legacy.npyheader import BANDS, EMBEDDINGS_DTYPE, SCALES_DTYPE

SIDECAR = ".tessera"
SETTINGS_KEY = f"{SIDECAR}/convert.json"
COORD_CHUNK = 65536


def zone_group(zone: int) -> str:
    return f"utm{zone:02d}"


def build_metadata(grids: dict[int, ZoneGrid], time: list[int], settings: EncodeSettings,
                   build_version: str, model_version: str, landmask: bool = True) -> dict[str, bytes]:
    """Every non-shard object of the store (zarr.json documents, coordinate chunks) keyed by object key.
    `model_version` is the source dataset's version; `landmask` False (v2 on) is recorded as the incumbent
    does, `geoemb:landmask: false` (absent means masked)."""
    import zarr
    from zarr.storage import MemoryStore

    from transcode.conventions.geoemb import build_geoemb_attributes
    from transcode.conventions.zone import build_zone_attributes

    mem = MemoryStore()
    root = zarr.create_group(mem, zarr_format=3, attributes=build_geoemb_attributes(
        model_version=model_version, build_version=build_version,
        extra=None if landmask else {"geoemb:landmask": False}))
    sh, sw = settings.shard
    ch, cw = settings.chunk
    t = len(time)
    for zone, g in sorted(grids.items()):
        grp = root.create_group(zone_group(zone), attributes=build_zone_attributes(
            zone, g.origin_x, g.origin_y, g.height, g.width))
        grp.create_array("embeddings", shape=(t, BANDS, g.height, g.width), dtype=EMBEDDINGS_DTYPE,
                         chunks=(1, BANDS, ch, cw), shards=(1, BANDS, sh, sw), fill_value=0,
                         compressors=settings.codecs["embeddings"].zarr_compressors(EMBEDDINGS_DTYPE),
                         dimension_names=["time", "band", "y", "x"])
        grp.create_array("scales", shape=(t, g.height, g.width), dtype=SCALES_DTYPE,
                         chunks=(1, ch, cw), shards=(1, sh, sw), fill_value=float("inf"),
                         compressors=settings.codecs["scales"].zarr_compressors(SCALES_DTYPE),
                         dimension_names=["time", "y", "x"])
        _coord(grp, "time", np.asarray(time, dtype="int32"), {"long_name": "year", "units": "year"})
        _coord(grp, "band", np.arange(BANDS, dtype="int32"), {"long_name": "embedding dimension"})
        _coord(grp, "x", g.origin_x + (np.arange(g.width, dtype="float64") + 0.5) * PIXEL_M,
               {"standard_name": "projection_x_coordinate", "units": "m"})
        _coord(grp, "y", g.origin_y - (np.arange(g.height, dtype="float64") + 0.5) * PIXEL_M,
               {"standard_name": "projection_y_coordinate", "units": "m"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns that consolidated metadata is not yet in the v3 spec
        zarr.consolidate_metadata(mem)
    return {key: buf.to_bytes() for key, buf in sorted(mem._store_dict.items())}


def _coord(grp, name: str, values: np.ndarray, attrs: dict) -> None:
    arr = grp.create_array(name, shape=values.shape, dtype=values.dtype, chunks=(min(len(values), COORD_CHUNK),),
                           dimension_names=[name], attributes=attrs, fill_value=0)
    arr[:] = values
