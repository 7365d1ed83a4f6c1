"""The validator on stores written by `convert`: a clean store passes every level; each corruption a test can inflict
is reported at the right level with the right key; validation never crashes; metadata and structure read only
zarr.json objects, coordinate chunks and shard index tails."""

from __future__ import annotations

import json
from pathlib import Path

import numcodecs
import numpy as np
import pytest
from jsonschema import Draft202012Validator
from validate_helpers import (
    COORD_KEY,
    SHARD,
    SHARD_KEY,
    STRETCH_KEY,
    RecordingStorage,
    by_code,
    clone,
    edit_json,
    errors,
    index_nbytes,
    make_store,
    no_internal,
    rewrite,
    shard_index,
    shard_keys,
    written_chunks,
)

from transcode import schemas
from transcode.cli import main
from transcode.errors import StoreError
from transcode.format.shardindex import IndexLayout
from transcode.storage import LocalStorage
from transcode.validate import ValidateOptions, validate
from transcode.validate.structure import check_index
from transcode.validate.zarrspec import ShardLayout

FULL = "fidelity"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    base = tmp_path_factory.mktemp("validate")
    return make_store(base)


@pytest.fixture()
def copy(converted, tmp_path):
    _, store = converted
    return clone(store, tmp_path / "store")


def _run(store, archive, level=FULL, **kw):
    report = validate(str(store), ValidateOptions(level=level, source=str(archive), **kw))
    no_internal(report)
    return report


def _schema_ok(doc: dict) -> None:
    Draft202012Validator(schemas.load("validate-report.schema.json")).validate(doc)


# ------------------------------------------------------------------------------------------ a clean store

def test_clean_store_passes_every_level(converted):
    archive, store = converted
    report = _run(store, archive)
    assert report.levels_run == ["metadata", "structure", "content", "fidelity"]
    assert report.findings == [], [f.line() for f in report.findings]
    assert report.exit_code == 0
    f = report.fidelity
    assert f["mismatched"] == 0 and f["exact"] > 0 and f["water_masked"] > 0 and f["overlap"] > 0
    assert f["compared"] == f["exact"] + f["water_masked"] + f["invalid_scale"] + f["empty"]
    # statistics per zone and year agree with the fidelity counts
    stats = {(s["group"], s["year"]): s for s in report.statistics}
    assert set(stats) == {(g, y) for g in ("utm30", "utm31") for y in (2023, 2024)}
    assert sum(s["valid_pixels"] for s in stats.values()) == f["exact"]
    assert sum(s["nan_pixels"] for s in stats.values()) == f["water_masked"] + f["invalid_scale"]
    assert all(0 < s["scale_min"] <= s["scale_max"] < 1 for s in stats.values())
    # coverage: every shard of utm31, a few of the tall utm30 grid, per year
    cov = {(c["array"], c["year"]): c for c in report.coverage}
    assert cov[("utm31/embeddings", 2024)]["fraction"] == 1.0
    assert 0 < cov[("utm30/scales", 2023)]["fraction"] < 0.01
    assert report.counters["shard_indexes"] == len(shard_keys(store))
    doc = report.to_json()
    _schema_ok(doc)
    assert doc["summary"]["exit_code"] == 0


def test_cli_json_sample_and_exit_codes(converted, capsys, tmp_path):
    archive, store = converted
    assert main(["validate", str(store), "--level", "fidelity", "--source", str(archive), "--sample", "7",
                 "--json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    _schema_ok(doc)
    assert doc["fidelity"]["chunks"] == 7 and doc["fidelity"]["sampled_chunks"] == 7
    assert doc["summary"]["counters"]["chunks_decoded"] == 14  # 7 (embeddings, scales) chunk pairs
    assert doc["levels_run"] == ["metadata", "structure", "content", "fidelity"]
    # readable report
    assert main(["validate", str(store), "--level", "metadata", "--no-progress"]) == 0
    assert "result     clean" in capsys.readouterr().out
    # unusable input: exit 2 with one line
    assert main(["validate", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "no store here" in capsys.readouterr().err
    assert main(["validate", str(store), "--level", "fidelity", "--source", str(tmp_path / "nope"),
                 "--no-progress"]) == 2
    assert "source archive unusable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["validate", str(store), "--profile", "my-aws-profile"])
    assert e.value.code == 2


def test_workers_give_the_same_report(converted):
    archive, store = converted
    one = _run(store, archive, level="content", sample=40, seed=3)
    two = _run(store, archive, level="content", sample=40, seed=3, workers=2)
    assert one.statistics == two.statistics  # merged in a fixed order: equal to the last bit
    assert one.findings == two.findings == []


# ------------------------------------------------------------------------------------------ reads

def test_metadata_and_structure_read_only_zarr_json_coordinates_stretch_masks_and_index_tails(converted):
    _, store = converted
    rec = RecordingStorage(LocalStorage(store))
    report = validate(rec, ValidateOptions(level="structure"))
    assert report.findings == []
    shards = {k: (store / k).stat().st_size for k in shard_keys(store)}
    whole = [c[1] for c in rec.calls if c[0] in ("read", "open")]
    assert whole and all(k.endswith("zarr.json") or COORD_KEY.match(k) or STRETCH_KEY.match(k) for k in whole), whole
    ranged = [c for c in rec.calls if c[0] == "read_range"]
    assert sorted(c[1] for c in ranged) == sorted(shards)  # exactly one ranged read per shard
    for _, key, start, length in ranged:
        assert SHARD_KEY.match(key)
        assert (start, length) == (shards[key] - index_nbytes(), index_nbytes()), key
    assert rec.ops["stat"] == 0 and rec.ops["list"] == 1


# ------------------------------------------------------------------------------------------ corruptions

def _first_shard(store: Path, array: str = "embeddings", zone: str = "utm31") -> str:
    return next(k for k in shard_keys(store) if k.startswith(f"{zone}/{array}/"))


def test_flipped_byte_in_a_chunk(copy, converted):
    archive, _ = converted
    key = _first_shard(copy)
    data = bytearray((copy / key).read_bytes())
    i, off, size = written_chunks(bytes(data))[5]
    data[off + size // 2] ^= 0x5A
    rewrite(copy / key, bytes(data))
    report = _run(copy, archive)
    assert not errors(report, "metadata") and not errors(report, "structure")
    content = by_code(report, "content", "error")
    assert [f.key for f in content["object-checksum"]] == [key]
    mism = by_code(report, "fidelity", "error")["pixel-mismatch"]
    assert {f.key for f in mism} == {key}
    # every mismatching pixel lies in the damaged inner chunk (or blosc decoded garbage there)
    rows = {m["row"] // 32 % (SHARD // 32) for m in report.fidelity["mismatches"]}
    cols = {m["col"] // 32 % (SHARD // 32) for m in report.fidelity["mismatches"]}
    assert rows == {i // (SHARD // 32)} and cols == {i % (SHARD // 32)}
    assert all(m["tile"] and m["year"] in (2023, 2024) for m in report.fidelity["mismatches"])
    assert report.exit_code == 1


def test_flipped_header_byte_does_not_decode(copy, converted):
    archive, _ = converted
    key = _first_shard(copy, "scales", "utm30")
    data = bytearray((copy / key).read_bytes())
    i, off, _ = written_chunks(bytes(data))[0]
    data[off + 4] ^= 0xFF  # blosc header: uncompressed size
    rewrite(copy / key, bytes(data))
    report = _run(copy, archive, level="content")
    decode = by_code(report, "content", "error")["decode"]
    assert decode[0].key == key and decode[0].chunk is not None and decode[0].chunk[1:] == (
        int(key.split("/")[-2]) * 16 + i // 16, int(key.split("/")[-1]) * 16 + i % 16)
    assert not errors(report, "structure")


def test_truncated_shard(copy, converted):
    archive, _ = converted
    key = _first_shard(copy, "embeddings", "utm30")
    data = (copy / key).read_bytes()
    rewrite(copy / key, data[: len(data) // 2])
    report = _run(copy, archive)
    structure = errors(report, "structure")
    assert structure and {f.key for f in structure} == {key}
    assert structure[0].code in ("shard-crc", "shard-bounds", "shard-index")
    assert any(f.code == "not-decoded" and f.key == key for f in report.findings)
    assert report.exit_code == 1
    # shorter than its own index
    rewrite(copy / key, data[:100])
    report = _run(copy, archive, level="content")
    assert [(f.code, f.key) for f in errors(report)] == [("shard-truncated", key)]


def test_broken_index_crc(copy, converted):
    archive, _ = converted
    key = _first_shard(copy, "scales")
    data = bytearray((copy / key).read_bytes())
    data[-2] ^= 0x01
    rewrite(copy / key, bytes(data))
    report = _run(copy, archive, level="content")
    found = errors(report)
    assert [(f.level, f.code, f.key) for f in found] == [("structure", "shard-crc", key)]
    assert "CRC32C" in found[0].message


def test_overlapping_and_outside_chunks_in_an_index():
    layout = ShardLayout((1, 4), (1, 4), [], IndexLayout(4, "little", True, "end"))
    size = 100 + layout.index.nbytes
    index = np.array([[0, 40], [30, 20], [2**64 - 1, 2**64 - 1], [90, 20]], dtype="<u8")
    problems = {(code, i) for _, code, i, _ in check_index(index, layout, size)}
    assert problems == {("shard-overlap", 1), ("shard-bounds", 3)}
    half = np.array([[0, 10], [2**64 - 1, 5], [10, 0], [2**64 - 1, 2**64 - 1]], dtype="<u8")
    assert {(c, i) for _, c, i, _ in check_index(half, layout, size)} == {("shard-index", 1), ("shard-index", 2)}


def test_stray_objects(copy, converted):
    archive, _ = converted
    strays = ["utm31/embeddings/c/0/0/99/0", "utm31/scales/c/1/0/7", "utm30/notes.txt", "stray.bin",
              "utm31/x/.zarr.json.1a2b3c.partial", "utm31/old/sub/zarr.json"]
    for k in strays:
        (copy / k).parent.mkdir(parents=True, exist_ok=True)
        (copy / k).write_bytes(b"junk")
    report = _run(copy, archive, level="structure")
    orphans = by_code(report, "structure", "warning")["orphan"]
    assert sorted(f.key for f in orphans) == sorted(strays)
    assert not errors(report) and report.exit_code == 0
    assert not [f for f in report.findings if f.level == "metadata" and f.severity != "info"]
    # the sidecar (.tessera/: settings, journal, manifest) is ours, never an orphan
    assert not any(f.key.startswith(".tessera/") for f in report.findings)


def test_edited_zarr_json_wrong_dtype(copy, converted):
    archive, _ = converted
    edit_json(copy / "utm31/scales/zarr.json", lambda d: d.update(data_type="float64"))
    report = _run(copy, archive)
    meta = {(f.code, f.key, f.pointer) for f in errors(report, "metadata")}
    assert ("layout", "utm31/scales/zarr.json", "/data_type") in meta
    assert ("consolidated", "zarr.json", "/consolidated_metadata/metadata/utm31~1scales/data_type") in meta
    # its chunks no longer decode to the declared type: content says so, naming the shard
    decode = by_code(report, "content", "error")["decode"]
    assert decode and all(f.key.startswith("utm31/scales/c/") for f in decode)


def test_edited_zarr_json_bbox_everywhere(copy, converted):
    archive, _ = converted

    def bbox(d, where):
        d["attributes"]["spatial:bbox"][2] += 1000.0

    edit_json(copy / "utm30/zarr.json", lambda d: bbox(d, d))
    edit_json(copy / "zarr.json", lambda d: bbox(d["consolidated_metadata"]["metadata"]["utm30"], None))
    report = _run(copy, archive)
    found = [(f.code, f.key, f.attribute, f.pointer) for f in errors(report)]
    assert found == [("convention", "utm30/zarr.json", "spatial:bbox", "/attributes/spatial:bbox")]
    assert "differs from transform x shape" in errors(report)[0].message


def test_edited_zarr_json_not_json_and_bad_codec(copy, converted):
    archive, _ = converted
    rewrite(copy / "utm31/x/zarr.json", b'{"zarr_format": 3, "node_type": "arr')
    edit_json(copy / "utm30/embeddings/zarr.json",
              lambda d: d["codecs"][0]["configuration"].update(chunk_shape=[1, 128, 48, 32]))
    report = _run(copy, archive)
    meta = {(f.code, f.key, f.pointer) for f in errors(report, "metadata")}
    assert ("zarr-json", "utm31/x/zarr.json", None) in meta
    assert ("zarr-metadata", "utm30/embeddings/zarr.json", "/codecs/0/configuration/chunk_shape") in meta
    msg = next(f.message for f in errors(report, "metadata") if f.key == "utm30/embeddings/zarr.json"
               and f.code == "zarr-metadata")
    assert "not a multiple" in msg
    unchecked = by_code(report, "structure", "warning")["unchecked"]
    assert {f.details["node"] for f in unchecked} == {"utm31/x", "utm30/embeddings"}
    assert report.exit_code == 1


def test_stale_consolidated_metadata(copy, converted):
    archive, _ = converted

    def stale(d):
        meta = d["consolidated_metadata"]["metadata"]
        meta["utm31/scales"]["fill_value"] = "NaN"
        del meta["utm30/band"]
        meta["utm32"] = meta["utm31"]

    edit_json(copy / "zarr.json", stale)
    report = _run(copy, archive, level="metadata")
    found = sorted((f.code, f.key, f.pointer) for f in errors(report))
    assert found == [
        ("consolidated", "zarr.json", "/consolidated_metadata/metadata"),
        ("consolidated", "zarr.json", "/consolidated_metadata/metadata/utm31~1scales/fill_value"),
        ("consolidated", "zarr.json", "/consolidated_metadata/metadata/utm32"),
    ]
    missing = next(f for f in errors(report) if f.pointer == "/consolidated_metadata/metadata")
    assert missing.details["node"] == "utm30/band/zarr.json"


def _rewrite_shard(store: Path, key: str, change) -> None:
    """Re-encode a shard through the converter's ShardWriter with `change(i, chunk)` applied to every inner chunk,
    and update the store manifest, so that structure and content stay sound."""
    from transcode.codecs.spec import parse_codec_spec
    from transcode.engine.shardwriter import ShardWriter
    from transcode.format.manifest import MANIFEST_KEY, ObjectRecord, manifest_bytes, read_manifest

    settings = json.loads((store / ".tessera/convert.json").read_bytes())
    array = "embeddings" if "/embeddings/" in key else "scales"
    dtype, shape = (np.dtype("int8"), (128, 32, 32)) if array == "embeddings" else (np.dtype("<f4"), (32, 32))
    data = (store / key).read_bytes()
    n = (SHARD // 32) ** 2
    idx = shard_index(data, n)
    storage = LocalStorage(store)
    sink = storage.open_writer(key)
    w = ShardWriter(sink, n, parse_codec_spec(settings["codecs"][array]).encoder(dtype))
    for i, (o, s) in enumerate(idx):
        if o == 2**64 - 1:
            w.add(i, None)
            continue
        chunk = np.frombuffer(numcodecs.Blosc().decode(data[o:o + s]), dtype=dtype).reshape(shape).copy()
        change(i, chunk)
        w.add(i, chunk)
    w.finish()
    sink.commit()
    rows = [r for r in read_manifest(storage) if r.key != key]
    rows.append(ObjectRecord.from_writer(key, sink, settings["part_size"]))
    rewrite(store / MANIFEST_KEY, manifest_bytes(rows))


def test_wrong_pixel_found_by_fidelity_only(copy, converted):
    from transcode.engine.convert import ConvertOptions, load_inventory
    from transcode.engine.plan import make_plan

    archive, _ = converted
    sc_key = "utm31/scales/c/1/0/0"  # 2024
    emb_key = "utm31/embeddings/c/1/0/0/0"
    scales = (copy / sc_key).read_bytes()
    i, off, size = written_chunks(scales)[3]
    s = np.frombuffer(numcodecs.Blosc().decode(scales[off:off + size]), "<f4").reshape(32, 32)
    r, c = (int(v) for v in np.argwhere((s > 0) & (s < 1))[7])  # a valid pixel

    def bump(k, chunk):
        if k == i:
            chunk[9, r, c] = np.int8(chunk[9, r, c] + 1) if chunk[9, r, c] < 127 else 0

    _rewrite_shard(copy, emb_key, bump)
    report = _run(copy, archive)
    assert not errors(report, "metadata") and not errors(report, "structure") and not errors(report, "content")
    mism = report.fidelity["mismatches"]
    assert len(mism) == 1 and report.fidelity["mismatched"] == 1
    m = mism[0]
    row, col = (i // 16) * 32 + r, (i % 16) * 32 + c
    assert (m["group"], m["year"], m["row"], m["col"], m["field"], m["band"], m["key"]) == \
        ("utm31", 2024, row, col, "embeddings", 9, emb_key)
    # the tile and its own pixel position, by the converter's plan
    inv = load_inventory(str(archive), ConvertOptions())
    plan = make_plan(inv, zones=[31], shard=(SHARD, SHARD), time=[2023, 2024])
    owners = [p for t in plan.tasks if t.key("scales") == sc_key for p in t.placements
              if p.rows_in(row, row + 1) and p.cols_in(col, col + 1)]
    p = owners[-1]
    assert (m["tile"], m["tile_row"], m["tile_col"]) == (p.tile, row - p.row, col - p.col)
    finding = errors(report, "fidelity")[0]
    assert (finding.code, finding.key, finding.details["tile"], finding.details["year"]) == \
        ("pixel-mismatch", emb_key, p.tile, 2024)


def test_wrong_scale_found_by_fidelity(copy, converted):
    archive, _ = converted
    sc_key = "utm31/scales/c/0/1/0"
    scales = (copy / sc_key).read_bytes()
    i, _, _ = written_chunks(scales)[0]

    def halve(k, chunk):
        if k == i:
            chunk[0, 0] = np.float32(0.5) if np.isfinite(chunk[0, 0]) else np.float32(0.25)

    _rewrite_shard(copy, sc_key, halve)
    report = _run(copy, archive)
    assert not errors(report, "content")
    assert [(f.code, f.key) for f in errors(report)] == [("pixel-mismatch", sc_key)]
    assert report.fidelity["mismatches"][0]["field"] == "scales"


def test_bad_scale_sentinels(copy, converted):
    archive, _ = converted
    sc_key = "utm30/scales/c/0/0/0"
    i, _, _ = written_chunks((copy / sc_key).read_bytes())[0]

    def negative(k, chunk):
        if k == i:
            chunk[3, 4] = -0.5
            chunk[3, 5] = -np.inf

    _rewrite_shard(copy, sc_key, negative)
    report = _run(copy, archive, level="content")
    sentinel = by_code(report, "content", "error")["sentinel"]
    assert [f.key for f in sentinel] == [sc_key] and sentinel[0].details["count"] == 2


def test_never_crashes_on_a_wrecked_store(copy, converted, tmp_path):
    archive, _ = converted
    rewrite(copy / "zarr.json", b"\x00\xffnot json")
    edit_json(copy / "utm30/scales/zarr.json", lambda d: d.pop("codecs"))
    edit_json(copy / "utm31/zarr.json", lambda d: d["attributes"].update({"spatial:shape": "big", "proj:code": 7}))
    edit_json(copy / "utm31/embeddings/zarr.json", lambda d: d.update(shape=[1, 2], fill_value="zero"))
    for k in shard_keys(copy)[:3]:
        rewrite(copy / k, b"")
    rewrite(copy / ".tessera/manifest.parquet", b"PAR1 garbage")
    report = _run(copy, archive)
    assert report.exit_code == 1 and report.levels_run == ["metadata", "structure", "content", "fidelity"]
    keys = {f.key for f in errors(report)}
    assert {"zarr.json", "utm30/scales/zarr.json", "utm31/zarr.json", "utm31/embeddings/zarr.json"} <= keys
    _schema_ok(report.to_json())
    # nothing at all: unusable input
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError):
        validate(str(tmp_path / "empty"))


def _edit_node(store: Path, path: str, fn) -> None:
    """Edit a node's zarr.json and its consolidated copy alike (the consolidated metadata stays current)."""
    edit_json(store / path / "zarr.json", fn)
    edit_json(store / "zarr.json", lambda d: fn(d["consolidated_metadata"]["metadata"][path]))


def test_interop_profile_adds_portability_warnings(copy, converted):
    archive, store = converted
    clean = _run(store, archive, level="structure", profile="interop")
    assert not errors(clean) and {f.code for f in clean.findings} == {"portability"}
    assert all(f.severity == "info" for f in clean.findings)
    _edit_node(copy, "utm31", lambda d: d["attributes"].update({"proj:wkt2": 'PROJCRS["WGS 84 / UTM zone 31N"]'}))
    _edit_node(copy, "utm31/x", lambda d: d["codecs"].append({"name": "numcodecs.delta"}))
    tessera = _run(copy, archive, level="metadata", profile="tessera")
    interop = _run(copy, archive, level="metadata", profile="interop")
    assert {(f.code, f.key, f.severity) for f in tessera.findings if f.key == "utm31/zarr.json"} == \
        {("convention", "utm31/zarr.json", "info")}
    port = {(f.key, f.pointer) for f in interop.findings if f.code == "portability" and f.severity == "warning"}
    assert port == {("utm31/zarr.json", "/attributes/proj:code"), ("utm31/x/zarr.json", "/codecs/2/name")}
    # both profiles report the unknown codec the validator cannot decode, as a warning
    assert any(f.key == "utm31/x/zarr.json" and f.pointer == "/codecs/2/name" and f.severity == "warning"
               for f in tessera.findings)


def test_missing_shard_is_coverage_then_lost_data(copy, converted):
    archive, store = converted
    sc = [k for k in shard_keys(store) if k.startswith("utm30/scales/c/1/")][-1]
    t, r, c = sc.split("/")[-3:]
    emb = f"utm30/embeddings/c/{t}/0/{r}/{c}"
    (copy / emb).unlink()
    (copy / sc).unlink()
    report = _run(copy, archive)
    # a missing shard is coverage; only the stretch statistics' coverage mask, which folded it in, says it existed
    assert [(f.code, f.key, f.details["shards"]) for f in errors(report, "structure")] == [
        ("stretch-coverage", f"utm30/stretch_stats_shards/c/{t}/0/0", [[int(r), int(c)]])]
    before = {(c["array"], c["year"]): c["present"] for c in _run(store, archive, level="structure").coverage}
    after = {(c["array"], c["year"]): c["present"] for c in report.coverage}
    assert after[("utm30/scales", 2024)] == before[("utm30/scales", 2024)] - 1
    # the store manifest says the shards were written: content reports them lost
    assert sorted(f.key for f in errors(report, "content")) == [emb, sc]
    assert {f.code for f in errors(report, "content")} == {"manifest"}
    # the source has tiles there: fidelity says they are not converted (no data yet), naming the shard
    warn = by_code(report, "fidelity", "warning")["not-converted"]
    assert [f.key for f in warn] == [sc]
