"""`bench-codecs`: measure every codec option on real tiles of the user's archive.

N tile-years are placed and cut into inner chunks by `transcode.engine.shardbuild.build_shard` itself (the code convert
runs), with a recording encoder in place of the codec; the recorded chunks (every k-th, up to a byte budget) are then
compressed and decompressed by each option on one core. Projections scale the sample to the whole archive by
input bytes: store size from the compressed fraction, single-core transcode time from the measured read/assemble
time plus compression plus the writer's MD5/CRC32C pass over the output (what convert spends per byte)."""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import crc32c
import numpy as np

from transcode.codecs.catalog import BROWSER_AND_NATIVE, readers
from transcode.codecs.spec import parse_codec_spec
from transcode.engine.plan import PIXEL_BYTES, Plan, make_plan
from transcode.format.arrays import BANDS, DEFAULT_CHUNK, DEFAULT_SHARD, EMBEDDINGS, SCALES
from transcode.legacy.inventory import Inventory
from transcode.legacy.tiletable import names

BENCH_OPTIONS = (
    "none", "blosc:zstd:1", "blosc:zstd:3", "blosc:zstd:5", "blosc:zstd:3:none", "blosc:lz4:5", "blosc:lz4hc:5",
    "blosc:zlib:5", "blosc:blosclz:5", "zstd:1", "zstd:3", "zstd:9", "gzip:5", "lz4:1", "brotli:5:22",
    "brotli:9:22", "snappy", "blosc:zstd:3+crc32c",
)
DEFAULT_BUDGET = 24 * 1024 * 1024  # raw bytes of recorded chunks that each option compresses
MIN_DECODE_MB_S = 100.0  # below this a reader waits on the CPU more than on the network


@dataclass
class Sample:
    """Raw inner chunks cut from N tiles exactly as convert cuts them, and what it cost to get them."""

    tiles: list[str]
    chunks: dict[str, list[bytes]]
    chunk_shape: dict[str, tuple[int, ...]]
    chunks_total: dict[str, int]
    input_bytes: int
    build_seconds: float
    archive_input_bytes: int
    archive_tiles: int
    write_seconds_per_byte: float

    def raw_total(self, array: str) -> int:
        """Raw bytes of every non-empty inner chunk of the sample (recorded or not)."""
        return self.chunks_total[array] * int(np.prod(self.chunk_shape[array])) * _itemsize(array)


@dataclass
class CodecResult:
    """One codec option measured on the sample and projected to the whole archive."""

    option: str
    ratio: float
    ratio_embeddings: float
    ratio_scales: float
    compress_mb_s: float
    decompress_mb_s: float
    projected_store_bytes: int
    projected_seconds: float
    projected_input_mb_s: float
    bit_exact: bool
    readers: dict[str, bool] = field(default_factory=dict)
    portable: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


DATA = (EMBEDDINGS, SCALES)  # the arrays whose chunks are measured, each with its own codec


def _itemsize(array: str) -> int:
    return next(d.dtype.itemsize for d in DATA if d.name == array)


class _Recorder:
    """Stands in for a CodecSpec in EncodeSettings: keeps every `stride`-th chunk it is given, writes nothing."""

    def __init__(self, stride: int) -> None:
        self.stride = stride
        self.seen = 0
        self.kept: list[bytes] = []

    def encoder(self, dtype: np.dtype) -> Callable[[np.ndarray], bytes]:
        def record(a: np.ndarray) -> bytes:
            if self.seen % self.stride == 0:
                self.kept.append(a.tobytes())
            self.seen += 1
            return b""
        return record

    def batch_encoder(self, dtype: np.dtype, chunk_nbytes: int) -> None:
        """None: every chunk goes through `encoder`, one by one, to be recorded."""
        return None


def choose_tiles(plan: Plan, n: int) -> list[tuple[int, str]]:
    """N (year, tile) pairs spread evenly over the plan's tile-years in (lat, lon, year) order."""
    placed = plan.inventory.table[plan.placed_rows()]
    if not len(placed):
        return []
    placed = placed[np.lexsort((placed["year"], placed["lon_i"], placed["lat_i"]))]
    n = max(1, min(n, len(placed)))
    picks = placed[[(2 * i + 1) * len(placed) // (2 * n) for i in range(n)]]
    return list(zip(picks["year"].tolist(), names(picks["lon_i"], picks["lat_i"])))


def _write_cost(directory: str) -> float:
    """Seconds per output byte of what convert's writer does with it: MD5, CRC32C, write, fsync."""
    buf = np.random.default_rng(0).integers(0, 256, 16 << 20, dtype=np.uint8).tobytes()
    path = os.path.join(directory, "write-cost")
    t0 = time.perf_counter()
    hashlib.md5(buf).digest()
    crc32c.crc32c(buf)
    with open(path, "wb") as f:
        f.write(buf)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    os.unlink(path)
    return seconds / len(buf)


def take_sample(source: str, inv: Inventory, n: int, *, shard: tuple[int, int] = DEFAULT_SHARD,
                chunk: tuple[int, int] = DEFAULT_CHUNK, years: Sequence[int] | None = None,
                budget: int = DEFAULT_BUDGET, source_options=None, tick: Callable[[], None] = lambda: None) -> Sample:
    """Build the shards of N tiles with convert's own code, recording their inner chunks."""
    import numcodecs

    from transcode.engine.shardbuild import EncodeSettings, StretchTarget, build_shard
    from transcode.format.arrays import STRETCH_SAMPLE_SIZE
    from transcode.storage import S3Options, open_storage

    full = make_plan(inv, years=years, shard=shard, chunk=chunk)
    chosen = set(choose_tiles(full, n))
    if not chosen:
        from transcode.errors import UsageError

        raise UsageError(source, "no usable tiles to sample")
    keep = [(y, name) in chosen
            for y, name in zip(inv.table["year"].tolist(), names(inv.table["lon_i"], inv.table["lat_i"]))]
    plan = make_plan(inv.select(np.array(keep, bool)), years=years, shard=shard, chunk=chunk, time=full.time,
                     grids=full.grids)
    ch, cw = chunk
    est = sum((-(-p.height // ch) + 1) * (-(-p.width // cw) + 1) for t in plan.tasks for p in t.placements)
    per_chunk = ch * cw * (BANDS * _itemsize(EMBEDDINGS.name) + _itemsize(SCALES.name))
    stride = max(1, math.ceil(est * per_chunk / budget))
    rec = {d.codec: _Recorder(stride) for d in DATA}
    settings = EncodeSettings(tuple(shard), tuple(chunk), rec)  # type: ignore[arg-type]
    src = open_storage(source, source_options or S3Options())
    numcodecs.blosc.set_nthreads(1)
    input_bytes, seconds = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="bench-codecs-") as tmp:
        sink = open_storage(tmp)
        for i, task in enumerate(plan.tasks):  # with the stretch statistics, as convert builds shards by default
            # one encoding thread: the recorder keeps every k-th chunk in the order the encoder sees them
            result = build_shard(task, settings, src, sink, StretchTarget(STRETCH_SAMPLE_SIZE, f"stats/{i}"),
                                 threads=1)
            input_bytes += result.input_bytes
            seconds += result.seconds
            tick()
        write_cost = _write_cost(tmp)
    placed = inv.table[full.placed_rows()]
    return Sample(
        tiles=[f"{tile} {year}" for year, tile in sorted(chosen)],
        chunks={a: r.kept for a, r in rec.items()},
        chunk_shape={EMBEDDINGS.name: (BANDS, ch, cw), SCALES.name: (ch, cw)},
        chunks_total={a: r.seen for a, r in rec.items()},
        input_bytes=input_bytes, build_seconds=seconds,
        archive_input_bytes=int((placed["height"].astype(np.int64) * placed["width"] * PIXEL_BYTES).sum()),
        archive_tiles=len(placed), write_seconds_per_byte=write_cost,
    )


def _timed(fn: Callable, items: list) -> tuple[float, list]:
    """Run `fn` over all items; repeat short runs (up to 3 passes) and keep the fastest pass."""
    best, out = math.inf, []
    for _ in range(3):
        t0 = time.perf_counter()
        out = [fn(x) for x in items]
        best = min(best, time.perf_counter() - t0)
        if best > 0.15:
            break
    return best, out


def bench_option(sample: Sample, option: str) -> CodecResult:
    """Compress and decompress the sample's chunks with one option on one core, and project."""
    spec = parse_codec_spec(option)
    raw_sub = comp_sub = 0
    t_enc_total = t_dec_total = 0.0
    comp_total_est = 0.0
    enc_total_est = 0.0
    ratios, exact = {}, True
    for array, dtype in ((d.name, d.dtype) for d in DATA):
        chunks = sample.chunks[array]
        if not chunks:
            ratios[array] = 1.0
            continue
        arrays = [np.frombuffer(c, dtype).reshape(sample.chunk_shape[array]) for c in chunks]
        t_enc, encoded = _timed(spec.encoder(dtype), arrays)
        t_dec, decoded = _timed(spec.decoder(dtype), encoded)
        exact = exact and all(d == c for d, c in zip(decoded, chunks))
        raw, comp = sum(map(len, chunks)), sum(map(len, encoded))
        ratios[array] = raw / comp
        scale = sample.raw_total(array) / raw  # recorded chunks -> every chunk of the sample
        raw_sub, comp_sub = raw_sub + raw, comp_sub + comp
        t_enc_total, t_dec_total = t_enc_total + t_enc, t_dec_total + t_dec
        comp_total_est += comp * scale
        enc_total_est += t_enc * scale
    per_input = sample.archive_input_bytes / sample.input_bytes
    sample_seconds = sample.build_seconds + enc_total_est + comp_total_est * sample.write_seconds_per_byte
    ok = readers(spec)
    return CodecResult(
        option=spec.text, ratio=raw_sub / comp_sub, ratio_embeddings=ratios[EMBEDDINGS.name],
        ratio_scales=ratios[SCALES.name], compress_mb_s=raw_sub / t_enc_total / 1e6,
        decompress_mb_s=raw_sub / max(t_dec_total, 1e-9) / 1e6,
        projected_store_bytes=int(comp_total_est * per_input), projected_seconds=sample_seconds * per_input,
        projected_input_mb_s=sample.input_bytes / sample_seconds / 1e6, bit_exact=exact, readers=ok,
        portable=all(ok[r] for r in BROWSER_AND_NATIVE),
    )


def recommend(results: list[CodecResult]) -> CodecResult | None:
    """Smallest projected store among portable, bit-exact options that decode at >= 100 MB/s per core and
    transcode within twice the time of the fastest such option."""
    fit = [r for r in results if r.portable and r.bit_exact and r.decompress_mb_s >= MIN_DECODE_MB_S]
    if not fit:
        return None
    fastest = min(r.projected_seconds for r in fit)
    fit = [r for r in fit if r.projected_seconds <= 2 * fastest]
    return min(fit, key=lambda r: (r.projected_store_bytes, r.projected_seconds))


def run(sample: Sample, options: Sequence[str] = BENCH_OPTIONS,
        tick: Callable[[], None] = lambda: None) -> list[CodecResult]:
    """Every option on the sample, in order."""
    import numcodecs

    numcodecs.blosc.set_nthreads(1)  # per core, as convert's workers run
    out = []
    for opt in options:
        out.append(bench_option(sample, opt))
        tick()
    return out
