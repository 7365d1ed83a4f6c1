"""Every zarr.json document and coordinate chunk of a store, built deterministically with zarr-python in memory from
the array declarations and the group attributes, for the writer to put through the storage interface."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from transcode.format.arrays import STRETCH_SAMPLE_SIZE, ArrayDecl, Zone, zone_arrays
from transcode.format.attributes import grid_attributes, root_attributes
from transcode.format.grid import ZoneGrid
from transcode.format.keys import zone_group


ROOT_KEY = "zarr.json"


def build_metadata(grids: Mapping[int, ZoneGrid], time: list[int], *, shard: tuple[int, int],
                   chunk: tuple[int, int], codecs: Mapping[str, Any], build_version: str,
                   model_version: str, landmask: bool = True, depths: Iterable[int] = (),
                   sample_size: int = STRETCH_SAMPLE_SIZE) -> dict[str, bytes]:
    """Every non-shard object of the store (zarr.json documents, coordinate chunks) keyed by object key, in key
    order: `iter_metadata` held whole (for tools and tests; `convert` streams it)."""
    return dict(sorted(iter_metadata(grids, time, shard=shard, chunk=chunk, codecs=codecs,
                                     build_version=build_version, model_version=model_version, landmask=landmask,
                                     depths=depths, sample_size=sample_size)))


def iter_metadata(grids: Mapping[int, ZoneGrid], time: list[int], *, shard: tuple[int, int],
                  chunk: tuple[int, int], codecs: Mapping[str, Any], build_version: str,
                  model_version: str, landmask: bool = True, depths: Iterable[int] = (),
                  sample_size: int = STRETCH_SAMPLE_SIZE) -> Iterator[tuple[str, bytes]]:
    """Every non-shard object of the store as (key, bytes): zone by zone, each zone built alone and in key order,
    then the root zarr.json with every node's metadata consolidated inline (`iter_zone_metadata`, flattened)."""
    for _, objects in iter_zone_metadata(grids, time, shard=shard, chunk=chunk, codecs=codecs,
                                         build_version=build_version, model_version=model_version,
                                         landmask=landmask, depths=depths, sample_size=sample_size):
        yield from objects


def iter_zone_metadata(grids: Mapping[int, ZoneGrid], time: list[int], *, shard: tuple[int, int],
                       chunk: tuple[int, int], codecs: Mapping[str, Any], build_version: str,
                       model_version: str, landmask: bool = True, depths: Iterable[int] = (),
                       sample_size: int = STRETCH_SAMPLE_SIZE) -> Iterator[tuple[int | None, list[tuple[str, bytes]]]]:
    """The store's non-shard objects as (zone, [(key, bytes), ...]) in ascending zone order, each zone built only
    when asked for and in key order, then (None, [root zarr.json]) with every node's metadata consolidated inline.
    Only one zone's objects (and the small zarr.json documents of the zones before it) are held at a time.
    `codecs` maps each declared codec setting (`ArrayDecl.codec`) to a CodecSpec; `model_version` is the source
    dataset's version; `landmask` False (datasets from v2 on) is recorded as `geoemb:landmask: false`; `depths`
    are the nested depths (checked by the caller), `sample_size` the stretch sample's K."""
    depths = sorted(set(depths))
    attributes = root_attributes(build_version, model_version, depths, landmask=landmask)
    nodes = _root_group(attributes).store._store_dict  # every node's zarr.json: what the root consolidates
    for zone, g in sorted(grids.items()):
        zone_store = _zone_store(attributes, zone, Zone(g, tuple(time), tuple(shard), tuple(chunk), sample_size),
                                 depths, codecs)
        objects = []
        for key, buf in sorted(zone_store._store_dict.items()):
            if key == ROOT_KEY:
                continue
            if key.endswith("/" + ROOT_KEY):
                nodes[key] = buf
            objects.append((key, buf.to_bytes()))
        del zone_store
        yield zone, objects
    yield None, [(ROOT_KEY, _consolidated_root(nodes))]


def _root_group(attributes: dict) -> Any:
    """The root group, in a new zarr MemoryStore."""
    import zarr
    from zarr.storage import MemoryStore

    return zarr.create_group(MemoryStore(), zarr_format=3, attributes=attributes)


def _zone_store(attributes: dict, zone: int, z: Zone, depths: list[int], codecs: Mapping[str, Any]) -> Any:
    """A zarr MemoryStore holding the root group and one zone's group, arrays and coordinate chunks."""
    root = _root_group(attributes)
    grp = root.create_group(zone_group(zone), attributes=grid_attributes(z.grid))
    for decl in zone_arrays(depths).values():
        _create(grp, decl, z, codecs)
    return root.store


def _consolidated_root(nodes: dict) -> bytes:
    """The root zarr.json with the metadata of every node consolidated inline, as `zarr.consolidate_metadata`
    writes it for the whole store (it reads nothing but the zarr.json documents)."""
    import zarr
    from zarr.storage import MemoryStore

    mem = MemoryStore(nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns that consolidated metadata is not yet in the v3 spec
        zarr.consolidate_metadata(mem)
    return mem._store_dict[ROOT_KEY].to_bytes()


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
