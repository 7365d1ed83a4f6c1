"""The batch Blosc encoder and `ShardWriter.add_run`: the same bytes as numcodecs chunk by chunk, whatever the
codec settings, the chunk content, the output room or the selection of chunks; the per-chunk path everywhere the
batch one does not apply."""

import io

import numpy as np
import pytest

from transcode.codecs import batchencode
from transcode.codecs.spec import parse_codec_spec
from transcode.engine.shardwriter import ShardWriter
from transcode.storage.objectwriter import ObjectWriter

BLOSC = ["blosc:zstd:3", "blosc:zstd:9:byte", "blosc:lz4:1:none", "blosc:lz4hc:5:bit", "blosc:zlib:1",
         "blosc:blosclz:5:byte", "blosc:zstd:0"]


class MemoryWriter(ObjectWriter):
    """An in-memory sink that records every write."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = io.BytesIO()

    def _write(self, data) -> None:
        self._digest(data)
        self.buf.write(bytes(data))

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _chunks(dtype: str, n: int, seed: int = 3) -> np.ndarray:
    """A mix of compressible, incompressible, constant and special-value chunks."""
    rng = np.random.default_rng(seed)
    shape = (n, 128, 32, 32) if dtype == "int8" else (n, 32, 32)
    smooth = np.cumsum(rng.normal(size=shape), axis=-1)
    if dtype == "int8":
        out = np.clip(smooth * 4, -127, 127).astype("int8")
        out[1::4] = rng.integers(-128, 128, size=out[1::4].shape, dtype=np.int8)  # incompressible
        out[2::4] = 0
    else:
        out = (np.abs(smooth) / 100 + 0.01).astype("float32")
        out[1::4] = np.nan
        out[3::4, :7] = np.inf
    return out


def test_the_extension_is_built_and_finds_numcodecs_blosc():
    assert batchencode._encode is not None
    assert batchencode._blosc_compress_ctx() != 0


@pytest.mark.parametrize("text", BLOSC)
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_batch_bytes_equal_numcodecs_chunk_by_chunk(text, dtype):
    spec = parse_codec_spec(text)
    chunks = _chunks(dtype, 24)
    enc = spec.encoder(np.dtype(dtype))
    batch = spec.batch_encoder(np.dtype(dtype), chunks[0].nbytes)
    assert batch is not None
    which = np.array([0, 1, 2, 3, 5, 8, 13, 21, 22, 23], dtype=np.int64)
    sizes = np.zeros(len(which), dtype=np.int64)
    out = bytearray(len(which) * batch.worst)
    nxt, fill = batch(chunks.reshape(len(chunks), -1).view(np.uint8), which, 0, out, sizes)
    expected = [enc(chunks[w]) for w in which]
    assert nxt == len(which)
    assert sizes.tolist() == [len(e) for e in expected]
    assert bytes(out[:fill]) == b"".join(expected)


def test_batch_stops_where_the_worst_case_would_not_fit_and_resumes():
    spec = parse_codec_spec("blosc:zstd:3")
    chunks = _chunks("int8", 8)
    batch = spec.batch_encoder(np.dtype("int8"), chunks[0].nbytes)
    flat = chunks.reshape(8, -1).view(np.uint8)
    which = np.arange(8, dtype=np.int64)
    sizes = np.zeros(8, dtype=np.int64)
    out = bytearray(3 * batch.worst - 1)  # room for two worst cases, not three
    parts, t = [], 0
    while t < 8:
        t2, fill = batch(flat, which, t, out, sizes)
        assert t2 > t
        assert t2 == 8 or len(out) - fill < batch.worst  # it stopped only for want of room
        parts.append(bytes(out[:fill]))
        t = t2
    enc = spec.encoder(np.dtype("int8"))
    assert b"".join(parts) == b"".join(enc(c) for c in chunks)


def test_batch_refuses_positions_outside_the_chunks():
    spec = parse_codec_spec("blosc:zstd:3")
    chunks = _chunks("float32", 4)
    batch = spec.batch_encoder(np.dtype("float32"), chunks[0].nbytes)
    with pytest.raises(TypeError, match="int64"):
        batch(chunks.reshape(4, -1).view(np.uint8), np.array([0, 1], dtype=np.int32), 0,
              bytearray(2 * batch.worst), np.zeros(2, dtype=np.int64))
    with pytest.raises(IndexError, match="position 4"):
        batch(chunks.reshape(4, -1).view(np.uint8), np.array([0, 4], dtype=np.int64), 0,
              bytearray(2 * batch.worst), np.zeros(2, dtype=np.int64))


@pytest.mark.parametrize("text", ["blosc:zstd:3+crc32c", "zstd:3", "gzip:5", "lz4", "brotli", "snappy", "none"])
def test_other_chains_have_no_batch_encoder(text):
    assert parse_codec_spec(text).batch_encoder(np.dtype("int8"), 128 * 32 * 32) is None


@pytest.mark.parametrize("text", ["blosc:zstd:3", "blosc:lz4:1:none+crc32c", "zstd:3"])
def test_add_run_writes_the_same_shard_as_add(text):
    """Same object bytes, index, digests and counts whether chunks go in one by one or as runs."""
    spec = parse_codec_spec(text)
    chunks = _chunks("int8", 40, seed=9)
    n_chunks = 64
    selected = [0, 1, 2, 7, 9, 10, 11, 12, 30, 31, 33, 39]
    ks = np.array([k + 3 for k in selected], dtype=np.int64)
    one, runs = MemoryWriter(), MemoryWriter()
    w1 = ShardWriter(one, n_chunks, spec.encoder(np.dtype("int8")))
    for k, s in zip(ks.tolist(), selected):
        w1.add(k, chunks[s])
    w1.finish()
    w2 = ShardWriter(runs, n_chunks, spec.encoder(np.dtype("int8")),
                     spec.batch_encoder(np.dtype("int8"), chunks[0].nbytes))
    w2._scratch = bytearray(3 * (chunks[0].nbytes + 16))  # several trips through the scratch buffer
    w2.add_run(ks[:5], chunks, np.array(selected[:5]))
    w2.add_run(ks[5:], chunks, np.array(selected[5:]))
    w2.finish()
    assert one.buf.getvalue() == runs.buf.getvalue()
    assert (w1.index == w2.index).all()
    assert one.md5.hexdigest() == runs.md5.hexdigest() and one.crc == runs.crc
    assert w1.chunks_written == w2.chunks_written == len(selected)


def test_add_run_refuses_chunks_out_of_order():
    spec = parse_codec_spec("blosc:zstd:3")
    chunks = _chunks("float32", 4)
    w = ShardWriter(MemoryWriter(), 16, spec.encoder(np.dtype("float32")),
                    spec.batch_encoder(np.dtype("float32"), chunks[0].nbytes))
    w.add_run(np.array([2, 5]), chunks, np.array([0, 1]))
    with pytest.raises(ValueError, match="increasing order"):
        w.add_run(np.array([5, 6]), chunks, np.array([2, 3]))
    with pytest.raises(ValueError, match="increasing order"):
        w.add_run(np.array([9, 8]), chunks, np.array([2, 3]))
    with pytest.raises(ValueError, match="3 chunk positions but 2 chunks"):
        w.add_run(np.array([10, 11, 12]), chunks, np.array([2, 3]))
