"""Zarr v3 document checks of the validator, one rule at a time: each invalid document is rejected at the JSON
pointer of the key at fault; valid variants pass; chunks decode through the declared chain."""

from __future__ import annotations

import copy

import crc32c
import numcodecs
import numpy as np
import pytest

from transcode.validate.zarrspec import ArraySpec, Chain, DecodeError, check_document, fill_value, parse_json

BASE = {
    "zarr_format": 3, "node_type": "array", "shape": [2, 64, 64], "data_type": "float32",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 64, 64]}},
    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
    "fill_value": "Infinity", "dimension_names": ["time", "y", "x"], "attributes": {},
    "codecs": [{"name": "sharding_indexed", "configuration": {
        "chunk_shape": [1, 32, 32],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                   {"name": "blosc", "configuration": {"typesize": 4, "cname": "zstd", "clevel": 3,
                                                       "shuffle": "shuffle", "blocksize": 0}}],
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
        "index_location": "end"}}],
}
SH = "/codecs/0/configuration"


def _edit(path: str, value=None, delete: bool = False) -> dict:
    doc = copy.deepcopy(BASE)
    *parents, last = [int(p) if p.isdigit() else p for p in path.strip("/").split("/")]
    node = doc
    for p in parents:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


def test_the_base_document_is_valid():
    assert check_document(BASE) == []
    spec = ArraySpec("a", BASE)
    assert spec.shard.index.n_chunks == 4 and spec.shard.index.nbytes == 4 * 16 + 4
    assert spec.chunk_key((1, 0, 0)) == "c/1/0/0" and spec.parse_chunk_key("c/1/0/0") == (1, 0, 0)
    assert spec.parse_chunk_key("c/2/0/0") is None and spec.parse_chunk_key("c/01/0/0") is None
    assert spec.inner_coords((1, 0, 0), 3) == (1, 1, 1)


@pytest.mark.parametrize("path,value,pointer,words", [
    ("/zarr_format", 2, "/zarr_format", "not 3"),
    ("/node_type", "dataset", "/node_type", "node_type"),
    ("/shape", [2, -1, 64], "/shape", "integers >= 0"),
    ("/data_type", 7, "/data_type", "not a data type"),
    ("/fill_value", "inf", "/fill_value", "not a number"),
    ("/fill_value", "0x7f80", "/fill_value", "hex"),  # a float32 hex fill value needs 8 digits
    ("/chunk_grid/configuration/chunk_shape", [1, 64], "/chunk_grid/configuration/chunk_shape", "dimensions"),
    ("/chunk_key_encoding/configuration/separator", "-", "/chunk_key_encoding/configuration/separator", "separator"),
    ("/dimension_names", ["y", "x"], "/dimension_names", "entries"),
    ("/mystery", {"a": 1}, "/mystery", "must_understand"),
    (f"{SH}/chunk_shape", [1, 48, 32], f"{SH}/chunk_shape", "not a multiple"),
    (f"{SH}/index_location", "middle", f"{SH}/index_location", "start or end"),
    (f"{SH}/codecs/0/configuration/endian", None, f"{SH}/codecs/0/configuration/endian", "required"),
    (f"{SH}/codecs/1/configuration/cname", "brotli", f"{SH}/codecs/1/configuration/cname", "cname"),
    (f"{SH}/codecs/1/configuration/clevel", 12, f"{SH}/codecs/1/configuration/clevel", "0..9"),
    (f"{SH}/codecs/1/configuration/shuffle", "weird", f"{SH}/codecs/1/configuration/shuffle", "shuffle"),
    (f"{SH}/codecs/1/configuration/speed", 3, f"{SH}/codecs/1/configuration/speed", "unknown configuration key"),
    (f"{SH}/index_codecs/1", {"name": "zstd", "configuration": {"level": 1}}, f"{SH}/index_codecs/1",
     "fixed encoded size"),
])
def test_invalid_documents_are_rejected_at_the_key(path, value, pointer, words):
    problems = check_document(_edit(path, value))
    errors = [(p, m) for sev, _, p, m in problems if sev == "error"]
    hits = [m for p, m in errors if p == pointer and words in m]
    if words == "hex":
        hits = [m for p, m in errors if p == pointer]
    assert hits, errors


def test_chain_order_and_missing_keys():
    doc = copy.deepcopy(BASE)
    cfg = doc["codecs"][0]["configuration"]
    cfg["codecs"] = [cfg["codecs"][1], cfg["codecs"][0]]  # blosc before bytes
    msgs = [m for _, _, p, m in check_document(doc)]
    assert any("before the array -> bytes codec" in m for m in msgs)
    problems = check_document(_edit("/codecs", None, delete=True))
    assert [(p, m) for _, _, p, m in problems] == [("/codecs", "required key 'codecs' is missing")]
    unknown = check_document(_edit(f"{SH}/codecs/1", {"name": "numcodecs.delta"}))
    assert [(s, p) for s, _, p, _ in unknown] == [("warning", f"{SH}/codecs/1/name")]


@pytest.mark.parametrize("dtype,value,ok", [
    ("float32", "NaN", True), ("float32", "-Infinity", True), ("float32", "0x7fc00000", True),
    ("float32", 1, True), ("float64", "0x7ff8000000000000", True), ("int8", 127, True), ("int8", 128, False),
    ("uint8", -1, False), ("int32", 1.5, False), ("bool", True, True), ("bool", 0, False),
    ("complex64", [1.0, "NaN"], True), ("complex64", 1.0, False), ("r16", [0, 255], True), ("r16", [0], False),
])
def test_fill_values(dtype, value, ok):
    _, problem = fill_value(dtype, value)
    assert (problem is None) == ok, problem


def test_strict_json_and_decoding():
    assert parse_json(b'{"fill_value": NaN}')[1] is not None
    assert parse_json(b"\xff")[1].startswith("not UTF-8")
    a = (np.arange(32 * 32, dtype="<f4") / 7).reshape(32, 32)
    chain = Chain(BASE["codecs"][0]["configuration"]["codecs"], np.dtype("<f4"), (1, 32, 32))
    enc = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=1, typesize=4).encode(a)
    assert np.array_equal(chain.decode(enc).reshape(32, 32), a)
    with pytest.raises(DecodeError):
        chain.decode(enc[:-5])
    t = Chain([{"name": "transpose", "configuration": {"order": [1, 0]}}, {"name": "bytes",
               "configuration": {"endian": "big"}}, {"name": "crc32c"}], np.dtype("<f4"), (32, 32))
    raw = a.T.astype(">f4").tobytes()
    data = raw + crc32c.crc32c(raw).to_bytes(4, "little")
    assert np.array_equal(t.decode(data), a)
    with pytest.raises(DecodeError, match="CRC32C"):
        t.decode(bytes([data[0] ^ 0xFF]) + data[1:])


@pytest.mark.parametrize("name,package", [("numcodecs.lz4", None), ("imagecodecs_brotli", "brotli"),
                                          ("imagecodecs_snappy", "snappy")])
def test_extension_compressors_convert_can_write(name, package):
    a = (np.arange(32 * 32, dtype="<f4") / 3).reshape(32, 32)
    chain = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": name}, {"name": "crc32c"}]
    doc = _edit(f"{SH}/codecs", chain)
    assert [p for s, _, p, _ in check_document(doc) if s != "info"] == []
    if package is None:
        enc = numcodecs.LZ4().encode(a.tobytes())
    else:
        enc = pytest.importorskip(package).compress(a.tobytes())
    enc += crc32c.crc32c(enc).to_bytes(4, "little")
    assert np.array_equal(ArraySpec("a", doc).chain().decode(enc).reshape(32, 32), a)
    bad = _edit(f"{SH}/codecs/1", {"name": name, "configuration": {"speed": 1}})
    assert any(p == f"{SH}/codecs/1/configuration/speed" for _, _, p, _ in check_document(bad))
    if name == "imagecodecs_snappy":  # imagecodecs-zarr's Snappy may write a level (ignored by Snappy)
        theirs = _edit(f"{SH}/codecs/1", {"name": name, "configuration": {"level": 1}})
        assert [p for s, _, p, _ in check_document(theirs) if s != "info"] == []


def test_a_store_written_with_another_codec_passes(tmp_path):
    from transcode.codecs.spec import parse_codec_options
    from transcode.engine.convert import ConvertOptions, convert
    from transcode.testing.synthetic import make_legacy_archive
    from transcode.validate import ValidateOptions, validate

    make_legacy_archive(tmp_path / "a", years=(2024,), tiles=["grid_0.05_83.95"], seed=2)
    convert(str(tmp_path / "a"), str(tmp_path / "s"),
            ConvertOptions(shard=(512, 512), codecs=parse_codec_options(["embeddings=zstd:3", "scales=gzip:4"])))
    report = validate(str(tmp_path / "s"), ValidateOptions(level="fidelity", source=str(tmp_path / "a")))
    assert report.findings == [], [f.line() for f in report.findings]
    assert report.fidelity["exact"] > 0 and report.counters["chunks_decoded"] > 0
