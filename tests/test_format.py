"""transcode.format is the one definition of a tessera store. For every declared array (the store's own, and arrays
added here by one declaration each, shaped like the stretch-statistics and nested-depth arrays to come) the
metadata builder writes exactly that array, the validator's tessera layout reports each of its facts changed in a
written store, its shards are paired at the structure level, and the mirror verifier's zarr level reads its shard
index with the declared layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from transcode.codecs.spec import parse_codec_options
from transcode.engine.shardwriter import ShardWriter
from transcode.format import arrays
from transcode.format.arrays import PER_YEAR, ZONE_ARRAYS, ArrayDecl, Zone, depth_arrays, sharded_arrays, zone_arrays
from transcode.format.attributes import grid_attributes, root_attributes
from transcode.format.grid import ZoneGrid
from transcode.format.keys import zone_group
from transcode.format import metadata
from transcode.format.metadata import build_metadata, iter_metadata
from transcode.format.shardindex import EMPTY, IndexLayout, ShardIndexError, present
from transcode.mirrors.zarrcheck import ZarrLayout
from transcode.storage import LocalStorage
from transcode.validate import ValidateOptions, validate

GRIDS = {30: ZoneGrid(30, 500000.0, 6000000.0, 512, 768), 31: ZoneGrid(31, 200000.0, -100000.0, 256, 256)}
TIME = [2023, 2024]
SHARD, CHUNK = (256, 256), (32, 32)
CHANGED_TYPE = {"int8": "int16", "int32": "int64", "int64": "int32", "uint8": "uint16", "float32": "float64",
                "float64": "float32"}


# one declaration per new array (and the size of its new dimension): nothing else is added anywhere. The nested
# depth 4 (declared by the format, but only in stores with nested depths) and an array of a new dimension.
EXTRA_DIMENSIONS = {"quarter": lambda z: 4}
EXTRA_ARRAYS = [
    *depth_arrays(4),
    ArrayDecl("extra_per_quarter", np.dtype("float64"), ("time", "quarter", "shard_row"), 0.0, PER_YEAR),
]


@pytest.fixture(params=["store arrays", "with added arrays"])
def declared(request, monkeypatch) -> list[ArrayDecl]:
    """The declarations in force: the store's own, or those plus the added ones."""
    if request.param == "with added arrays":
        for name, size in EXTRA_DIMENSIONS.items():
            monkeypatch.setitem(arrays.DIMENSIONS, name, size)
        for decl in EXTRA_ARRAYS:
            monkeypatch.setitem(ZONE_ARRAYS, decl.name, decl)
    return list(ZONE_ARRAYS.values())


def _zones() -> dict[str, Zone]:
    return {zone_group(z): Zone(g, tuple(TIME), SHARD, CHUNK) for z, g in GRIDS.items()}


def _docs() -> dict[str, bytes]:
    return build_metadata(GRIDS, TIME, shard=SHARD, chunk=CHUNK, codecs=parse_codec_options(None), build_version="1",
                          model_version="1.1")


def _write(path: Path) -> LocalStorage:
    store = LocalStorage(path)
    for key, data in _docs().items():
        store.put(key, data)
    return store


def _edit(store: Path, path: str, fn) -> None:
    """Change an array's zarr.json and its copy in the consolidated metadata alike."""
    node = store / path / "zarr.json"
    doc = json.loads(node.read_bytes())
    fn(doc)
    node.write_text(json.dumps(doc))
    root = json.loads((store / "zarr.json").read_bytes())
    root["consolidated_metadata"]["metadata"][path] = doc
    (store / "zarr.json").write_text(json.dumps(root))


def _problems(store: Path, level: str = "metadata") -> list:
    report = validate(str(store), ValidateOptions(level=level, profile="tessera"))
    assert not [f for f in report.findings if f.code == "internal"], [f.line() for f in report.findings]
    return [f for f in report.findings if f.severity in ("error", "warning") and f.code != "shard-empty"]


# ------------------------------------------------------------------------------------------ the builder

def test_the_builder_writes_exactly_the_declared_arrays(declared, tmp_path):
    docs = _docs()
    for group, zone in _zones().items():
        written = {k.split("/")[1] for k in docs if k.startswith(group + "/") and k.count("/") == 2
                   and k.endswith("/zarr.json")}
        assert written == {d.name for d in declared}
        for decl in declared:
            doc = json.loads(docs[f"{group}/{decl.name}/zarr.json"])
            assert doc["data_type"] == decl.data_type
            assert doc["dimension_names"] == list(decl.dims)
            assert doc["fill_value"] == decl.fill_json
            assert doc["shape"] == list(decl.shape(zone))
            assert doc["attributes"] == decl.attributes
            grid = doc["chunk_grid"]["configuration"]["chunk_shape"]
            if decl.sharded:
                layout = decl.index_layout(zone)
                (codec,) = doc["codecs"]
                assert codec["name"] == "sharding_indexed"
                assert grid == list(decl.shards(zone))
                assert codec["configuration"]["chunk_shape"] == list(decl.chunks(zone))
                assert codec["configuration"]["index_codecs"] == layout.zarr_index_codecs()
                assert codec["configuration"]["index_location"] == layout.location
                assert layout.n_chunks == np.prod(np.array(grid) // decl.chunks(zone))
            else:
                assert grid == list(decl.chunks(zone))
                assert "sharding_indexed" not in json.dumps(doc["codecs"])
    # coordinates hold their declared values; zarr-python reads the store as written
    _write(tmp_path / "s")
    root = zarr.open_group(str(tmp_path / "s"), mode="r")
    for group, zone in _zones().items():
        for decl in declared:
            if decl.values is not None:
                np.testing.assert_array_equal(root[f"{group}/{decl.name}"][:], decl.values(zone))


def test_the_store_arrays_are_the_documented_ones():
    """What docs/format.md and the incumbent's readers expect; the declarations may not drift from it."""
    zone = _zones()["utm30"]
    facts = {d.name: (d.data_type, d.dims, d.fill_json, d.shape(zone), d.shards(zone), d.chunks(zone))
             for d in ZONE_ARRAYS.values()}
    t, h, w = len(TIME), 512, 768
    assert facts == {
        "embeddings": ("int8", ("time", "band", "y", "x"), 0, (t, 128, h, w), (1, 128, 256, 256), (1, 128, 32, 32)),
        "scales": ("float32", ("time", "y", "x"), "Infinity", (t, h, w), (1, 256, 256), (1, 32, 32)),
        "time": ("int32", ("time",), 0, (t,), None, (t,)),
        "band": ("int32", ("band",), 0, (128,), None, (128,)),
        "x": ("float64", ("x",), 0, (w,), None, (w,)),
        "y": ("float64", ("y",), 0, (h,), None, (h,)),
        "stretch_stats_count": ("int64", ("time",), 0, (t,), None, (1,)),
        "stretch_stats_sum": ("float64", ("time", "band"), 0.0, (t, 128), None, (1, 128)),
        "stretch_stats_prod": ("float64", ("time", "band", "band2"), 0.0, (t, 128, 128), None, (1, 128, 128)),
        "stretch_sample": ("int8", ("time", "sample", "band"), 0, (t, 20000, 128), None, (1, 20000, 128)),
        "stretch_sample_scales": ("float32", ("time", "sample"), "Infinity", (t, 20000), None, (1, 20000)),
        "stretch_sample_count": ("int64", ("time",), 0, (t,), None, (1,)),
        "stretch_stats_shards": ("uint8", ("time", "shard_row", "shard_col"), 0, (t, 2, 3), None, (1, 2, 3)),
    }
    assert ZONE_ARRAYS["embeddings"].shard_key("utm30", 1, 2, 3) == "utm30/embeddings/c/1/0/2/3"
    assert ZONE_ARRAYS["scales"].shard_key("utm30", 1, 2, 3) == "utm30/scales/c/1/2/3"
    np.testing.assert_array_equal(ZONE_ARRAYS["x"].values(zone)[:2], [500005.0, 500015.0])
    np.testing.assert_array_equal(ZONE_ARRAYS["y"].values(zone)[:2], [5999995.0, 5999985.0])


# ------------------------------------------------------------------------------------------ the validator

def _facts(decl: ArrayDecl) -> list[tuple[str, str, object]]:
    """(fact, JSON pointer, how to change it in a document) for every checked fact of a declaration."""

    def dims(d):
        d["dimension_names"] = [*d["dimension_names"][:-1], d["dimension_names"][-1] + "_"]

    def fill(d):
        d["fill_value"] = "NaN" if decl.dtype.kind == "f" else 1

    def chunking(d):  # two years per chunk (or shard) instead of one
        d["chunk_grid"]["configuration"]["chunk_shape"][decl.dims.index("time")] = 2

    out = [("data_type", "/data_type", lambda d: d.update(data_type=CHANGED_TYPE[d["data_type"]])),
           ("dimension_names", "/dimension_names", dims)]
    if decl.fill_checked:
        out.append(("fill_value", "/fill_value", fill))
    if decl.chunking.checked:
        out.append(("chunking", "/chunk_grid/configuration/chunk_shape", chunking))
    return out


def test_a_written_store_validates_clean(declared, tmp_path):
    _write(tmp_path / "s")
    assert _problems(tmp_path / "s", "structure") == []


def test_each_changed_fact_of_each_array_is_reported_as_exactly_that(declared, tmp_path):
    clean = _docs()
    cases = [(decl, *fact) for decl in declared for fact in _facts(decl)]
    assert len(cases) >= 2 * len(declared)
    for decl, fact, pointer, change in cases:
        store = tmp_path / f"{decl.name}-{fact}"
        s = LocalStorage(store)
        for key, data in clean.items():
            s.put(key, data)
        path = f"utm30/{decl.name}"
        _edit(store, path, change)
        found = _problems(store)
        layout = [(f.code, f.key, f.pointer) for f in found if f.code == "layout"]
        assert layout == [("layout", f"{path}/zarr.json", pointer)], (decl.name, fact, [f.line() for f in found])
        # whatever else is said follows from the same change to the same array (a coordinate whose values no
        # longer decode, for instance)
        assert all(f.key.startswith(path + "/") or path in json.dumps(f.details) for f in found), \
            (decl.name, fact, [f.line() for f in found])


def _twice_as_wide(axis: int):
    def change(doc: dict) -> None:
        doc["chunk_grid"]["configuration"]["chunk_shape"][axis] *= 2
    return change


def test_sharded_arrays_must_pair_with_each_other(declared, tmp_path):
    ref, *others = sharded_arrays()
    assert ref.name == "embeddings" and others
    for decl in others:
        store = tmp_path / decl.name
        _write(store)
        path = f"utm30/{decl.name}"

        _edit(store, path, _twice_as_wide(decl.dims.index("x")))
        found = _problems(store)
        assert [(f.code, f.key) for f in found] == [("layout", f"{path}/zarr.json")], [f.line() for f in found]
        assert "must pair with the embeddings shards" in found[0].message


def test_every_sharded_array_has_a_shard_beside_the_others(declared, tmp_path):
    """A shard set is written together: the structure level names each declared array's missing shard."""
    store = _write(tmp_path / "s")
    zone = _zones()["utm30"]
    codecs = parse_codec_options(None)

    def put_shard(decl: ArrayDecl) -> None:
        n = decl.index_layout(zone).n_chunks
        sink = store.open_writer(decl.shard_key("utm30", 1, 0, 2))
        ShardWriter(sink, n, codecs[decl.codec].encoder(decl.dtype)).finish()
        sink.commit()

    decls = sharded_arrays()
    put_shard(decls[0])
    found = _problems(tmp_path / "s", "structure")
    missing = sorted(f.details["missing"] for f in found if f.code == "shard-pairing")
    assert missing == sorted(d.shard_key("utm30", 1, 0, 2) for d in decls[1:])
    assert all(f.key == decls[0].shard_key("utm30", 1, 0, 2) for f in found)
    for decl in decls[1:]:
        put_shard(decl)
    assert _problems(tmp_path / "s", "structure") == []


# ------------------------------------------------------------------------------------------ the mirror verifier

def test_the_mirror_verifier_reads_each_shard_index_as_declared(declared, tmp_path):
    store = _write(tmp_path / "s")
    reads = []

    def read(key: str) -> bytes | None:
        reads.append(key)
        return store.read(key) if store.exists(key) else None

    layout = ZarrLayout(read)
    for group, zone in _zones().items():
        for decl in declared:
            key = decl.shard_key(group, 0, 0, 0) if decl.sharded else f"{group}/{decl.name}/c/0"
            assert layout.shard(key) == (decl.index_layout(zone) if decl.sharded else None), (group, decl.name)
    assert reads == ["zarr.json"]  # everything came from the consolidated metadata


# ------------------------------------------------------------------------------------------ the shard index

def test_shard_index_encodes_and_decodes():
    layout = IndexLayout(4)
    assert layout.nbytes == 4 * 16 + 4 and layout.index_range(1000) == (1000 - 68, 68)
    assert layout.data_range(1000) == (0, 1000 - 68)
    index = layout.empty()
    assert not present(index).any() and (index == EMPTY).all()
    index[1] = (0, 10)
    index[3] = (10, 7)
    raw = layout.encode(index)
    np.testing.assert_array_equal(layout.decode(raw), index)
    assert present(layout.decode(raw)).tolist() == [False, True, False, True]
    with pytest.raises(ShardIndexError, match="CRC32C"):
        layout.decode(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ShardIndexError, match="bytes"):
        layout.decode(raw[:-1])
    start = IndexLayout(2, "big", False, "start")
    assert start.nbytes == 32 and start.index_range(100) == (0, 32) and start.data_range(100) == (32, 100)
    assert start.decode(start.encode(start.empty()))[0, 0] == EMPTY
    config = {"index_codecs": start.zarr_index_codecs(), "index_location": "start"}
    assert IndexLayout.from_sharding(2, config) == start
    with pytest.raises(ShardIndexError, match="not supported"):
        IndexLayout.from_sharding(2, {"index_codecs": [{"name": "bytes"}, {"name": "gzip"}]})


def test_format_is_the_ground_layer():
    """transcode.format imports nothing of the layers above it, so every one of them can read it."""
    import ast

    above = ("transcode.engine", "transcode.legacy", "transcode.validate", "transcode.mirrors", "transcode.cli",
             "transcode.codecs", "transcode.testing")
    package = Path(arrays.__file__).parent
    found = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [(path.name, n) for n in names if n.startswith(above)]
    assert found == []


def test_the_mirror_verifier_reads_the_format_without_heavy_imports():
    """Manifest, sidecar and shard index come from transcode.format without pyarrow, zarr or pyproj: they load
    only when a manifest is read, metadata built or a tile projected."""
    import subprocess
    import sys

    code = ("import sys, transcode.mirrors.run, transcode.format.manifest, transcode.format.arrays; "
            "print(sorted(m for m in ('pyarrow', 'zarr', 'pyproj') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_manifest_is_assembled_in_batches_from_a_generator_in_utf8_byte_order(monkeypatch):
    """manifest_bytes takes a generator (the journal streamed) batch by batch and sorts the rows by the keys'
    UTF-8 bytes across batches: a non-ASCII key sorts after every ASCII one, whatever batch it came in."""
    import io

    from transcode.format import manifest
    from transcode.format.manifest import ManifestReader, ObjectRecord, manifest_bytes

    monkeypatch.setattr(manifest, "MANIFEST_BATCH", 3)
    keys = ["z/0", "\u00e9/1", "a/2", "Z/3", "a/10", "b", "a/1"]
    made = []

    def records():
        for i, k in enumerate(keys):
            made.append(k)
            yield ObjectRecord(k, i, f"{i:032x}", f"{i:08x}", f'"{i:032x}"', 0)

    rows = list(ManifestReader(io.BytesIO(manifest_bytes(records()))).records())
    assert made == keys
    assert [r.key for r in rows] == sorted(keys, key=str.encode)
    assert {r.key: r.size for r in rows} == {k: i for i, k in enumerate(keys)}
    assert list(ManifestReader(io.BytesIO(manifest_bytes(iter(())))).records()) == []


# ------------------------------------------------------------------------------------------ the incumbent's additions

def test_stretch_arrays_and_nested_depths_are_declared_as_the_incumbent_writes_them():
    zone = Zone(ZoneGrid(31, 0.0, 0.0, 8192, 5000), (2023, 2024))
    decls = arrays.zone_arrays([16, 4])
    d4, d16 = decls["embeddings_d4"], decls["embeddings_d16"]
    assert (d4.shards(zone), d4.chunks(zone)) == ((1, 4, 4096, 4096), (1, 4, 128, 128))
    assert (d16.shards(zone), d16.chunks(zone)) == ((1, 16, 4096, 4096), (1, 16, 64, 64))
    assert d4.dims == ("time", "band_d4", "y", "x") and decls["band_d4"].values(zone).tolist() == [0, 1, 2, 3]
    assert [d.name for d in arrays.sharded_arrays([16, 4])] == ["embeddings", "scales", "embeddings_d4",
                                                                "embeddings_d16"]
    assert arrays.find_array("embeddings_d16") == d16 and arrays.find_array("band_d16") == decls["band_d16"]
    assert arrays.find_array("embeddings_d128") is None and arrays.find_array("other") is None
    assert decls["stretch_stats_shards"].shape(zone) == (2, 2, 2)  # a partial last shard column counts
    docs = build_metadata({31: zone.grid}, [2023, 2024], shard=(4096, 4096), chunk=(32, 32),
                          codecs=parse_codec_options(None), build_version="1", model_version="2.0", depths=[16, 4],
                          sample_size=500)
    assert json.loads(docs["zarr.json"])["attributes"]["geoemb:depths"] == [
        {"dimensions": 4, "array": "embeddings_d4"}, {"dimensions": 16, "array": "embeddings_d16"},
        {"dimensions": 128, "array": "embeddings"}]
    assert json.loads(docs["utm31/stretch_sample/zarr.json"])["shape"] == [2, 500, 128]
    # the incumbent: zarr-python's BloscCodec(cname="zstd", clevel=3) on plain arrays of one chunk per year
    from zarr.codecs import BloscCodec
    from zarr.storage import MemoryStore

    mem = MemoryStore()
    grp = zarr.create_group(mem, zarr_format=3)
    for decl in arrays.STRETCH_ARRAYS:
        z = decl.shape(zone)
        grp.create_array(decl.name, shape=z, chunks=decl.chunks(zone), dtype=decl.dtype, fill_value=decl.fill,
                         compressors=BloscCodec(cname="zstd", clevel=3), dimension_names=list(decl.dims))
        theirs = json.loads(mem._store_dict[f"{decl.name}/zarr.json"].to_bytes())
        ours = json.loads(build_metadata({31: zone.grid}, [2023, 2024], shard=(4096, 4096), chunk=(32, 32),
                                         codecs=parse_codec_options(None), build_version="1", model_version="2.0")
                          [f"utm31/{decl.name}/zarr.json"])
        assert ours == theirs, decl.name


def test_nested_depths_are_checked():
    from transcode.format.attributes import check_depths, depths_of

    assert check_depths([16, 4], "2.0") == (4, 16)
    assert check_depths([], None) == ()
    for depths, version, said in [([4], "1.1", "arbitrary slice"), ([4], None, "not known"),
                                  ([0], "2.0", "1..127"), ([128], "2.0", "1..127"), ([4, 4], "2.0", "once each"),
                                  ([4], "v1", "arbitrary slice")]:
        with pytest.raises(ValueError, match=said):
            check_depths(depths, version)
    assert depths_of({"geoemb:depths": [{"dimensions": 128, "array": "embeddings"},
                                        {"dimensions": 4, "array": "embeddings_d4"}]}) == (4,)
    assert depths_of({}) == ()


def _whole_store_metadata(grids, time, *, shard, chunk, codecs, build_version, model_version, landmask=True,
                          depths=(), sample_size=arrays.STRETCH_SAMPLE_SIZE) -> dict[str, bytes]:
    """The builder as it was before it streamed: every zone in one MemoryStore, consolidated by zarr-python."""
    import warnings

    from zarr.storage import MemoryStore

    depths = sorted(set(depths))
    mem = MemoryStore()
    root = zarr.create_group(mem, zarr_format=3, attributes=root_attributes(build_version, model_version, depths,
                                                                                  landmask=landmask))
    for zone, g in sorted(grids.items()):
        grp = root.create_group(zone_group(zone), attributes=grid_attributes(g))
        z = Zone(g, tuple(time), tuple(shard), tuple(chunk), sample_size)
        for decl in zone_arrays(depths).values():
            metadata._create(grp, decl, z, codecs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(mem)
    return {key: buf.to_bytes() for key, buf in sorted(mem._store_dict.items())}


@pytest.mark.parametrize("depths, landmask", [((), True), ((16, 4), False)])
def test_metadata_streamed_zone_by_zone_is_byte_identical_to_the_whole_store(depths, landmask, monkeypatch):
    grids = {**GRIDS, 1: ZoneGrid(1, 300000.0, 9000000.0, 512, 256)}  # three zones, in both hemispheres
    kw = dict(shard=SHARD, chunk=CHUNK, codecs=parse_codec_options(None), build_version="1",
              model_version="2.0", landmask=landmask, depths=depths, sample_size=7)
    want = _whole_store_metadata(grids, TIME, **kw)
    built = []
    real = metadata._zone_store
    monkeypatch.setattr(metadata, "_zone_store", lambda *a: built.append(a[1]) or real(*a))
    stream = iter_metadata(grids, TIME, **kw)
    first_key, _ = next(stream)
    assert first_key.startswith("utm01/") and built == [1]  # the next zone is built only when reached
    got = [(first_key, _), *stream]
    assert built == [1, 30, 31]
    assert [k for k, _ in got] == sorted(want) and got[-1][0] == "zarr.json"  # the root last, with everything
    assert got[-1][1] == want["zarr.json"]  # consolidated exactly as zarr.consolidate_metadata does for all
    assert dict(got) == want
    built.clear()
    assert list(build_metadata(grids, TIME, **kw).items()) == list(want.items())
    root = json.loads(want["zarr.json"])["consolidated_metadata"]["metadata"]
    assert set(root) == {k.removesuffix("/zarr.json") for k in want if k.endswith("/zarr.json")}
