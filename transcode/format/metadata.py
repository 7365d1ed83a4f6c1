"""Every zarr.json document and coordinate chunk of a store, built deterministically with zarr-python in memory from
the array declarations and the group attributes, for the writer to put through the storage interface."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from transcode.format.arrays import STRETCH_SAMPLE_SIZE, ArrayDecl, Zone, zone_arrays
from transcode.format.attributes import grid_attributes, root_attributes
from transcode.format.grid import ZoneGrid
from transcode.format.keys import zone_group


def build_metadata(grids: Mapping[int, ZoneGrid], time: list[int], *, shard: tuple[int, int],
                   chunk: tuple[int, int], codecs: Mapping[str, Any], build_version: str,
                   model_version: str, landmask: bool = True, depths: Iterable[int] = (),
                   sample_size: int = STRETCH_SAMPLE_SIZE) -> dict[str, bytes]:
    """Every non-shard object of the store (zarr.json documents, coordinate chunks) keyed by object key.
    `codecs` maps each declared codec setting (`ArrayDecl.codec`) to a CodecSpec; `model_version` is the source
    dataset's version; `landmask` False (datasets from v2 on) is recorded as `geoemb:landmask: false`; `depths`
    are the nested depths (checked by the caller), `sample_size` the stretch sample's K."""
    import zarr
    from zarr.storage import MemoryStore

    depths = sorted(set(depths))
    mem = MemoryStore()
    root = zarr.create_group(mem, zarr_format=3, attributes=root_attributes(build_version, model_version, depths,
                                                                                  landmask=landmask))
    for zone, g in sorted(grids.items()):
        grp = root.create_group(zone_group(zone), attributes=grid_attributes(g))
        z = Zone(g, tuple(time), tuple(shard), tuple(chunk), sample_size)
        for decl in zone_arrays(depths).values():
            _create(grp, decl, z, codecs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns that consolidated metadata is not yet in the v3 spec
        zarr.consolidate_metadata(mem)
    return {key: buf.to_bytes() for key, buf in sorted(mem._store_dict.items())}


def _create(grp, decl: ArrayDecl, zone: Zone, codecs: Mapping[str, Any]) -> None:
    """Create one declared array in a zone group (and write a coordinate's values)."""
    kw: dict[str, Any] = {}
    shards = decl.shards(zone)
    if shards is not None:
        kw["shards"] = {"shape": shards, "index_location": decl.index_layout(zone).location}
    if decl.codec is not None:
        kw["compressors"] = codecs[decl.codec].zarr_compressors(decl.dtype)
    elif decl.chain is not None:
        kw["compressors"] = [dict(c) for c in decl.chain]
    if decl.attributes:
        kw["attributes"] = decl.attributes
    arr = grp.create_array(decl.name, shape=decl.shape(zone), dtype=decl.dtype, chunks=decl.chunks(zone),
                           fill_value=decl.fill, dimension_names=list(decl.dims), **kw)
    if decl.values is not None:
        arr[:] = decl.values(zone)
