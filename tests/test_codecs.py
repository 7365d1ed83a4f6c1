"""Codec specs: parsing and rejection, encoders byte-identical to zarr-python's codec chain, Brotli/Snappy codec
metadata compatible with imagecodecs-zarr, portability lookups, the `codecs` command and the convert warning."""

import json
import warnings

import numpy as np
import crc32c
import pytest
import zarr
from zarr.storage import MemoryStore

from transcode.cli import main
from transcode.codecs.catalog import FAMILIES, matrix_rows, portability_warning, readers
from transcode.codecs.interop_matrix import MATRIX
from transcode.codecs.spec import VALID_FORMS, parse_codec_options, parse_codec_spec, spec_from_zarr_config
from transcode.errors import UsageError
from transcode.testing.interop import MATRIX_OPTIONS

SPECS = ["blosc", "blosc:zstd:3", "blosc:lz4:1:none", "blosc:lz4hc:9:byte", "blosc:zlib:5:bit", "blosc:blosclz:0",
         "zstd", "zstd:-5", "zstd:19:checksum", "gzip", "gzip:9", "lz4", "lz4:17", "brotli", "brotli:0:10",
         "brotli:11:24", "snappy", "none", "blosc:zstd:3+crc32c", "zstd:5:checksum+crc32c", "brotli:4:18+crc32c",
         "snappy+crc32c", "lz4+crc32c", "none+crc32c", "gzip:1+crc32c"]
BAD = ["blosc:foo", "blosc:zstd:10", "blosc:zstd:3:twist", "blosc:zstd:3:bit:4", "zstd:23", "zstd:3:md5",
       "gzip:10", "brotli:12", "brotli:5:9", "brotli:5:25", "brotli:1:2:3", "lz4:0", "lz4:x", "snappy:1",
       "none:1", "zstd+md5", "zstd+crc32c+crc32c", "+crc32c", "lzma", ""]


def _chunk(dtype: str, shape=(128, 32, 32)) -> np.ndarray:
    rng = np.random.default_rng(5)
    smooth = np.cumsum(rng.normal(size=shape), axis=-1)  # compressible, like real embeddings
    if dtype == "int8":
        return np.clip(smooth * 4, -127, 127).astype("int8")
    out = (np.abs(smooth) / 100 + 0.01).astype("float32")
    out[:3, :5] = np.nan
    out[-2:] = np.inf
    return out


@pytest.mark.parametrize("text", SPECS)
def test_canonical_text_parses_back_to_the_same_spec(text):
    spec = parse_codec_spec(text)
    assert parse_codec_spec(spec.text) == spec
    assert spec.crc32c == text.endswith("+crc32c")


@pytest.mark.parametrize("text", BAD)
def test_malformed_specs_are_refused_with_the_valid_forms(text):
    with pytest.raises(UsageError) as e:
        parse_codec_spec(text)
    assert e.value.exit_code == 2
    for form in VALID_FORMS:
        assert form.split()[0] in str(e.value)


@pytest.mark.parametrize("text", SPECS)
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_encoder_matches_zarr_pythons_chain_and_decoder_inverts_it(text, dtype):
    """The bytes convert writes are exactly what zarr-python writes with the declared codecs (Brotli and Snappy
    through the installed entry points)."""
    spec = parse_codec_spec(text)
    a = _chunk(dtype, (128, 32, 32) if dtype == "int8" else (32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(MemoryStore(), shape=a.shape, chunks=a.shape, dtype=dtype, fill_value=0,
                                compressors=spec.zarr_compressors(dtype))
        arr[...] = a
    stored = arr.store._store_dict["c/" + "/".join("0" * a.ndim)].to_bytes()
    ours = spec.encoder(dtype)(a)
    if spec.name == "gzip":  # zarr-python's gzip stamps the time (header bytes 4-7); ours writes 0 there
        assert ours[4:8] == b"\0\0\0\0"
        stored = stored[:4] + b"\0\0\0\0" + stored[8:]
        if spec.crc32c:  # the CRC32C trailer covers the stamped header: recompute it over the unstamped one
            stored = stored[:-4] + crc32c.crc32c(stored[:-4]).to_bytes(4, "little")
    assert ours == stored
    assert spec.decoder(dtype)(ours) == a.tobytes()
    written = [c for c in arr.metadata.to_dict()["codecs"] if c["name"] != "bytes"]
    assert json.loads(json.dumps(written)) == spec.zarr_config(dtype)
    assert spec_from_zarr_config(spec.zarr_config(dtype)).zarr_config(dtype) == spec.zarr_config(dtype)


def test_a_corrupted_crc32c_is_caught():
    spec = parse_codec_spec("zstd:3+crc32c")
    data = bytearray(spec.encoder("int8")(_chunk("int8")))
    data[10] ^= 1
    with pytest.raises(ValueError, match="CRC32C"):
        spec.decoder("int8")(bytes(data))


def test_per_array_options_and_defaults():
    specs = parse_codec_options(["embeddings=brotli:7", "scales=lz4+crc32c"])
    assert specs["embeddings"].text == "brotli:7:22" and specs["scales"].text == "lz4:1+crc32c"
    assert {s.text for s in parse_codec_options(None).values()} == {"blosc:zstd:3"}
    with pytest.raises(UsageError):
        parse_codec_options(["landmask=zstd"])


def test_brotli_and_snappy_metadata_is_imagecodecs_zarrs():
    """Same names and configuration keys as imagecodecs-zarr, and its optional forms are read too."""
    from zarr.registry import get_codec_class

    from transcode.codecs.extracodecs import BrotliCodec, SnappyCodec

    assert get_codec_class("imagecodecs_brotli") is BrotliCodec
    assert get_codec_class("imagecodecs_snappy") is SnappyCodec
    assert BrotliCodec(level=6, lgwin=20).to_dict() == {"name": "imagecodecs_brotli",
                                                        "configuration": {"level": 6, "lgwin": 20}}
    assert SnappyCodec().to_dict() == {"name": "imagecodecs_snappy"}
    # every form imagecodecs-zarr writes is read and written back unchanged (keys it leaves out stay out)
    for doc in ({"name": "imagecodecs_brotli"}, {"name": "imagecodecs_brotli", "configuration": {"mode": "TEXT"}},
                {"name": "imagecodecs_brotli", "configuration": {"level": 0, "lgwin": 24, "mode": "FONT"}},
                {"name": "imagecodecs_snappy"}, {"name": "imagecodecs_snappy", "configuration": {"level": 3}}):
        cls = BrotliCodec if doc["name"] == "imagecodecs_brotli" else SnappyCodec
        assert cls.from_dict(doc).to_dict() == doc
    assert BrotliCodec.from_dict({"name": "imagecodecs_brotli", "configuration": {"mode": 1}}).mode == "TEXT"
    assert SnappyCodec.from_dict({"name": "imagecodecs_snappy", "configuration": {}}) == SnappyCodec()
    for bad in ({"quality": 5}, {"level": 12}, {"lgwin": 9}, {"mode": "FAST"}, {"mode": 3}):
        with pytest.raises(ValueError):
            BrotliCodec.from_dict({"name": "imagecodecs_brotli", "configuration": bad})
    with pytest.raises(ValueError):
        SnappyCodec.from_dict({"name": "imagecodecs_snappy", "configuration": {"acceleration": 1}})


def test_brotli_without_configuration_encodes_with_the_library_defaults():
    """A store naming no level or window is written as imagecodecs-zarr writes it: quality 4, window 22."""
    import asyncio

    import brotli
    from zarr.core.array_spec import ArrayConfig, ArraySpec
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.dtype import get_data_type_from_native_dtype

    from transcode.codecs.extracodecs import BrotliCodec

    raw = _chunk("int8").tobytes()
    proto = default_buffer_prototype()
    spec = ArraySpec(shape=(len(raw),), dtype=get_data_type_from_native_dtype(np.dtype("uint8")), fill_value=0,
                     config=ArrayConfig(order="C", write_empty_chunks=True), prototype=proto)
    out = asyncio.run(BrotliCodec()._encode_single(proto.buffer.from_bytes(raw), spec))
    assert out.to_bytes() == brotli.compress(raw, quality=4, lgwin=22)


def test_every_option_and_family_has_interop_evidence():
    assert list(MATRIX) == list(MATRIX_OPTIONS)
    for text in SPECS:
        assert matrix_rows(parse_codec_spec(text))
    assert {f.codec for f in FAMILIES} >= {parse_codec_spec(o).name for o in MATRIX_OPTIONS}


def test_portability_follows_the_matrix():
    assert all(readers(parse_codec_spec("blosc:zlib:3:none+crc32c")).values())
    lz4 = readers(parse_codec_spec("lz4:9"))
    assert lz4 == {r: v == "yes" for r, v in MATRIX["lz4:1"].items()}
    assert portability_warning(parse_codec_options(None)) is None
    line = portability_warning(parse_codec_options(["embeddings=snappy"]))
    assert line.startswith("embeddings=snappy cannot be decoded by") and "\n" not in line
    assert "scales" not in line


def test_codecs_command_lists_names_and_readers(capsys):
    assert main(["codecs", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by = {c["codec"]: c for c in doc["codecs"]}
    assert by["brotli"]["zarr_name"] == "imagecodecs_brotli" and by["lz4"]["zarr_name"] == "numcodecs.lz4"
    assert by["blosc"]["portable"] and not by["snappy"]["portable"]
    assert doc["matrix"] == MATRIX
    assert main(["codecs"]) == 0
    out = capsys.readouterr().out
    assert "imagecodecs_snappy" in out and "NOT" in out


def test_convert_refuses_a_bad_spec_before_any_work(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["convert", str(tmp_path / "nowhere"), str(store), "--codec", "scales=brotli:99"]) == 2
    err = capsys.readouterr().err
    assert "brotli quality" in err and "snappy" in err and not store.exists()


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3 specification")
def test_convert_warns_once_on_stderr_and_round_trips_mixed_codecs(clean_archive, tmp_path, capsys):
    """embeddings and scales with different non-portable codecs: one warning line, JSON stdout intact,
    every tile pixel read back bit-exactly by zarr-python."""
    from transcode.engine.plan import make_plan
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory
    from transcode.testing.interop import expected_window

    store = tmp_path / "store"
    rc = main(["convert", clean_archive.root, str(store), "--shard-size", "512", "--no-progress", "--json",
               "--codec", "embeddings=brotli:3:20+crc32c", "--codec", "scales=lz4"])
    out, err = capsys.readouterr()
    assert rc == 0 and json.loads(out)["shards_written"] > 0
    lines = [x for x in err.splitlines() if "warning" in x]
    assert len(lines) == 1 and "embeddings=brotli:3:20+crc32c" in lines[0] and "scales=lz4:1" in lines[0]
    plan = make_plan(build_inventory(open_archive(clean_archive.root)), shard=(512, 512))
    g = zarr.open_group(str(store), mode="r")
    assert g["utm30/embeddings"].metadata.to_dict()["codecs"][0]["configuration"]["codecs"][1]["name"] \
        == "imagecodecs_brotli"
    for task in plan.tasks:
        for p in task.placements:
            y0, y1, x0, x1 = p.row, p.row + p.height, p.col, p.col + p.width
            emb, sc = expected_window(clean_archive.root, plan, task.zone, task.t, y0, y1, x0, x1)
            assert np.array_equal(g[f"{task.group}/embeddings"][task.t, :, y0:y1, x0:x1], emb)
            assert np.array_equal(g[f"{task.group}/scales"][task.t, y0:y1, x0:x1].view("u4"), sc.view("u4"))


@pytest.mark.parametrize("text", ["gzip:1", "gzip:6", "gzip:9"])
def test_gzip_chunks_do_not_depend_on_the_clock(text, monkeypatch):
    """The same chunk encodes to the same bytes whatever the time (a resumed or repeated convert is byte-identical)."""
    import time

    spec = parse_codec_spec(text)
    a = _chunk("int8", (128, 32, 32))
    monkeypatch.setattr(time, "time", lambda: 1_000_000_000.0)
    first = spec.encoder("int8")(a)
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    assert spec.encoder("int8")(a) == first
    assert spec.decoder("int8")(first) == a.tobytes()
