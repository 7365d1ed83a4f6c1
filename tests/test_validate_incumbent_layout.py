"""What the incumbent (geotessera 0.11) legitimately writes, judged by the validator without the incumbent installed:
embeddings inner chunks left out beside stored scales chunks (all-zero chunks), and stored zero chunks beside
absent scales chunks."""

from __future__ import annotations

from pathlib import Path

import crc32c
import numcodecs
import numpy as np
import pytest
import zarr
from validate_helpers import MISSING, SHARD, by_code, clone, errors, make_store, no_internal, rewrite, written_chunks

from transcode.validate import ValidateOptions, validate

CHUNK = 32
PER_SIDE = SHARD // CHUNK


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("incumbent-layout"))


@pytest.fixture()
def copy(converted, tmp_path):
    return clone(converted[1], tmp_path / "store")


def _run(store: Path, level: str = "content"):
    report = validate(str(store), ValidateOptions(level=level))
    no_internal(report)
    return report


def _set_chunk(path: Path, i: int, encoded: bytes | None) -> None:
    """Inner chunk `i` of the shard at `path` made `encoded` (appended to the chunk bytes), or not stored (None)."""
    data = path.read_bytes()
    n = PER_SIDE * PER_SIDE
    start = len(data) - (16 * n + 4)
    index = np.frombuffer(data[start:-4], dtype="<u8").reshape(n, 2).copy()
    body = data[:start]
    if encoded is None:
        index[i] = MISSING
    else:
        index[i] = (len(body), len(encoded))
        body += encoded
    raw = index.astype("<u8").tobytes()
    rewrite(path, body + raw + crc32c.crc32c(raw).to_bytes(4, "little"))


def _scales_chunks(store: Path, group: str, t: int, sr: int, sc: int) -> dict[int, np.ndarray]:
    """Inner chunk index -> decoded scales of every stored chunk of one scales shard."""
    key = f"{group}/scales/c/{t}/{sr}/{sc}"
    stored = [i for i, _, _ in written_chunks((store / key).read_bytes())]
    arr = zarr.open_array(str(store / group / "scales"), mode="r")
    out = {}
    for i in stored:
        r, c = sr * SHARD + (i // PER_SIDE) * CHUNK, sc * SHARD + (i % PER_SIDE) * CHUNK
        out[i] = arr[t, r:r + CHUNK, c:c + CHUNK]
    return out


def _pick(store: Path, valid: bool) -> tuple[str, str, int]:
    """(embeddings shard key, scales shard key, inner chunk) of a stored chunk pair whose scales have valid pixels
    (`valid`) or none (water and no data only)."""
    for key in sorted(p.relative_to(store).as_posix() for p in store.glob("utm*/scales/c/*/*/*")):
        group, _, _, t, sr, sc = key.split("/")
        for i, s in _scales_chunks(store, group, int(t), int(sr), int(sc)).items():
            has = bool(((s > 0) & (s < 1)).any())
            if has == valid and (valid or np.isnan(s).any()):
                return f"{group}/embeddings/c/{t}/0/{sr}/{sc}", key, i
    raise AssertionError("no such chunk in the synthetic store")


def test_absent_embeddings_chunk_beside_water_is_legitimate(copy):
    emb, _, i = _pick(copy, valid=False)
    _set_chunk(copy / emb, i, None)
    report = _run(copy)
    assert not errors(report) and not by_code(report, severity="warning")
    info = by_code(report, "structure", "info")["chunk-pairing"]
    assert info[0].details == {"chunks": 1, "absent": "embeddings"}
    assert report.counters["unpaired_chunks"] == 1


def test_absent_embeddings_chunk_beside_valid_scales_is_lost_data(copy):
    emb, _, i = _pick(copy, valid=True)
    _set_chunk(copy / emb, i, None)
    report = _run(copy)
    lost = by_code(report, "content", "error")["zero-embeddings"]
    assert [f.key for f in lost] == [emb] and lost[0].details["chunks"] == 1
    assert lost[0].chunk[2:] == (int(emb.split("/")[-2]) * PER_SIDE + i // PER_SIDE,
                                 int(emb.split("/")[-1]) * PER_SIDE + i % PER_SIDE)
    assert report.exit_code == 1


def test_stored_embeddings_beside_absent_scales(copy):
    """An absent scales chunk reads as +inf (no data): a stored embeddings chunk beside it is legitimate when it is
    all zeros (the incumbent writes an all-zero shard whole), and values without meaning when not."""
    emb, sc, i = _pick(copy, valid=True)
    _set_chunk(copy / sc, i, None)
    report = _run(copy)
    stray = by_code(report, "content", "warning")["unpaired-chunk"]
    assert [f.key for f in stray] == [emb]
    # its valid pixels now read +inf, yet the stretch statistics counted them: the one error
    group, t = emb.split("/")[0], emb.split("/")[3]
    assert [(f.code, f.key) for f in errors(report)] == [("stretch-statistics", f"{group}/stretch_stats_count/c/{t}")]
    assert by_code(report, "structure", "info")["chunk-pairing"][0].details == {"chunks": 1, "absent": "scales"}
    # the same chunk holding zeros (as the incumbent writes an all-zero shard whole): nothing to report
    (copy / ".tessera" / "manifest.parquet").unlink()  # the shard is now another tool's: no checksum to compare
    zeros = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE, blocksize=0).encode(
        np.zeros((1, 128, CHUNK, CHUNK), np.int8))
    _set_chunk(copy / emb, i, zeros)
    report = _run(copy)
    assert {f.code for f in errors(report)} == {"stretch-statistics"} and not by_code(report, severity="warning")
    assert by_code(report, "structure", "info")["chunk-pairing"][0].details == {"chunks": 1, "absent": "scales"}
