"""Stretch statistics (docs/format.md, "Stretch statistics"): of one shard while its pixels are in hand, and of a
(zone, year) from its shards' partials. N, S = sum x and M = sum x x^T over the valid pixels, x = int8 vector x its
scale, in float64; the sample is the K valid pixels with the smallest keys, the key a bijective hash of the pixel's
(zone, year, row, column): a uniform draw without replacement over the zone-year, so each shard takes part in
proportion to its valid pixels, and it depends only on the pixels, never on the order shards are built or merged."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from transcode.format.arrays import (
    BANDS,
    EMBEDDINGS_DTYPE,
    SCALES_DTYPE,
    STRETCH_SAMPLE,
    STRETCH_SAMPLE_COUNT,
    STRETCH_SAMPLE_SCALES,
    STRETCH_STATS_COUNT,
    STRETCH_STATS_PROD,
    STRETCH_STATS_SHARDS,
    STRETCH_STATS_SUM,
)
from transcode.format.sentinels import NO_DATA, valid_scales

BLOCK = 2048  # valid pixels per float64 product (2 MiB, stays in cache); with the caller's strips, the only blocking
_MAGIC = b"tessera-stretch-partial 1\n"
_U64 = np.uint64
_M1, _M2, _GOLDEN = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB), _U64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that scatters neighbouring inputs (in place)."""
    x += _GOLDEN
    x ^= x >> _U64(30)
    x *= _M1
    x ^= x >> _U64(27)
    x *= _M2
    x ^= x >> _U64(31)
    return x


def year_salt(zone: int, year: int) -> np.uint64:
    """The key salt of a (zone, year): keys of one pixel differ between years and zones."""
    return _mix(np.array([(zone << 16) | year], dtype=_U64))[0]


def pixel_keys(salt: np.uint64, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample keys of pixels at zone-grid (rows, cols): distinct for distinct pixels of a zone-year."""
    with np.errstate(over="ignore"):
        x = (rows.astype(_U64) << _U64(32)) | cols.astype(_U64)
        return _mix(x ^ salt)


@dataclass
class Partial:
    """One shard's share: N, S, M and its candidates (the min(N, K) valid pixels of smallest key, by key)."""

    n: int
    s: np.ndarray  # (BANDS,) float64
    m: np.ndarray  # (BANDS, BANDS) float64
    keys: np.ndarray  # (c,) uint64, ascending
    emb: np.ndarray  # (c, BANDS) int8
    scales: np.ndarray  # (c,) float32

    def to_bytes(self) -> bytes:
        """A self-describing little-endian record (the same bytes for the same statistics)."""
        head = json.dumps({"n": self.n, "candidates": len(self.keys), "bands": BANDS}).encode() + b"\n"
        return b"".join([_MAGIC, head, self.s.astype("<f8").tobytes(), self.m.astype("<f8").tobytes(),
                         self.keys.astype("<u8").tobytes(), self.scales.astype("<f4").tobytes(),
                         self.emb.astype(EMBEDDINGS_DTYPE).tobytes()])

    @classmethod
    def from_bytes(cls, data: bytes) -> Partial:
        """Inverse of to_bytes; ValueError when the bytes are not such a record."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a partial stretch-statistics record")
        end = data.index(b"\n", len(_MAGIC))
        head = json.loads(data[len(_MAGIC):end])
        c, b = int(head["candidates"]), int(head["bands"])
        sizes = [("<f8", b), ("<f8", b * b), ("<u8", c), ("<f4", c), ("i1", c * b)]
        out, at = [], end + 1
        for dtype, count in sizes:
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=at)
            out.append(arr)
            at += arr.nbytes
        if at != len(data):
            raise ValueError(f"partial stretch-statistics record of {len(data)} bytes, expected {at}")
        s, m, keys, scales, emb = out
        return cls(int(head["n"]), s.astype(np.float64), m.reshape(b, b).astype(np.float64), keys.astype(_U64),
                   emb.reshape(c, b).astype(EMBEDDINGS_DTYPE), scales.astype(SCALES_DTYPE))


class _Pool:
    """The K candidates of smallest key seen so far (kept loosely, up to 2K, until taken)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.size = 0
        self.threshold = None  # the K-th smallest key once K were seen: larger keys cannot enter

    def offer(self, keys: np.ndarray, emb: np.ndarray, scales: np.ndarray) -> None:
        if self.threshold is not None:
            keep = keys < self.threshold
            keys, emb, scales = keys[keep], emb[keep], scales[keep]
        if len(keys):
            self.parts.append((keys, emb, scales))
            self.size += len(keys)
        if self.size > 2 * self.k:
            self._reduce()

    def _reduce(self) -> None:
        keys, emb, scales = (np.concatenate(a) for a in zip(*self.parts))
        if len(keys) > self.k:
            top = np.argpartition(keys, self.k - 1)[:self.k]
            keys, emb, scales = keys[top], emb[top], scales[top]
            self.threshold = keys.max()
        self.parts = [(keys, emb, scales)]
        self.size = len(keys)

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The min(seen, K) candidates of smallest key, ascending."""
        if not self.parts:
            return np.zeros(0, _U64), np.zeros((0, BANDS), EMBEDDINGS_DTYPE), np.zeros(0, SCALES_DTYPE)
        self._reduce()
        keys, emb, scales = self.parts[0]
        order = np.argsort(keys, kind="stable")
        return keys[order], np.ascontiguousarray(emb[order]), scales[order]


@dataclass
class StripShare:
    """What one strip adds to a shard's statistics, computed apart from the shard (on any thread) and folded in
    later in strip order: its valid-pixel count, the per-block products in block order, and its sample candidates."""

    n: int
    s_parts: list[np.ndarray]
    m_parts: list[np.ndarray]
    keys: np.ndarray
    emb: np.ndarray
    scales: np.ndarray


class ShardStats:
    """Accumulates a shard's partial statistics from its strips of pixels, in the order the shard is read. `measure`
    may run on several threads at once; `fold` takes the strips in order (the sums are not associative)."""

    def __init__(self, zone: int, year: int, sample_size: int) -> None:
        self.salt = year_salt(zone, year)
        self.n = 0
        self.s = np.zeros(BANDS, np.float64)
        self.m = np.zeros((BANDS, BANDS), np.float64)
        self.pool = _Pool(sample_size)

    def add(self, emb: np.ndarray, scales: np.ndarray, row0: int, col0: int) -> None:
        """Fold in a strip: `emb` (rows, cols, BANDS) int8 and its `scales` (rows, cols), whose top-left pixel is at
        zone-grid row `row0`, column `col0`. Only valid pixels count (0 < scale < 1)."""
        share = self.measure(emb, scales, row0, col0)
        if share is not None:
            self.fold(share)

    def measure(self, emb: np.ndarray, scales: np.ndarray, row0: int, col0: int, block: np.ndarray | None = None,
                products: np.ndarray | None = None) -> StripShare | None:
        """A strip's share (as `add` takes it), touching nothing of the shard's sums; None when no pixel is valid.
        The candidates are copies: the strip's buffers may be reused as soon as this returns. `block` (BLOCK x
        BANDS float64) is scratch; `products` (at least one BANDS x BANDS float64 per block of BLOCK valid pixels)
        receives the block products, which the share then points into."""
        valid = valid_scales(scales).ravel()
        where = np.flatnonzero(valid)
        n = len(where)
        if n == 0:
            return None
        q, w = emb.reshape(-1, BANDS), scales.reshape(-1).astype(np.float64)
        if n < len(valid):
            q, w = np.take(q, where, axis=0), w[where]
        if block is None:
            block = np.empty((min(n, BLOCK), BANDS), np.float64)
        ones = np.ones(min(n, BLOCK), np.float64)
        s_parts, m_parts = [], []
        for i in range(0, n, BLOCK):
            j = min(n, i + BLOCK)
            x = block[:j - i]
            x[...] = q[i:j]  # int8 -> float64, then scaled in place: cheaper than one mixed-type multiply
            x *= w[i:j, None]
            s_parts.append(ones[:j - i] @ x)  # BLAS gemv: half the time of x.sum(axis=0)
            # numpy hands A^T A to BLAS syrk (half the products of a general multiply), into `out` or a new array
            m_parts.append(np.matmul(x.T, x, out=None if products is None else products[len(m_parts)]))
        rows, cols = np.divmod(where, scales.shape[1])
        keys = pixel_keys(self.salt, rows + row0, cols + col0)
        # most pixels lose: choose by key before copying any embedding (the threshold only falls as strips are
        # folded, so one read while another thread folds is still a bound)
        threshold = self.pool.threshold
        if threshold is not None:
            keep = np.flatnonzero(keys < threshold)
        elif n > self.pool.k:
            keep = np.argpartition(keys, self.pool.k - 1)[:self.pool.k]
        else:
            keep = np.arange(n)
        return StripShare(n, s_parts, m_parts, keys[keep], q[keep], w[keep].astype(SCALES_DTYPE))

    def fold(self, share: StripShare) -> None:
        """Add a strip's share to the sums, block by block in the order `add` would (the same bytes)."""
        for s_part, m_part in zip(share.s_parts, share.m_parts):
            self.s += s_part
            self.m += m_part
        self.n += share.n
        if len(share.keys):
            self.pool.offer(share.keys, share.emb, share.scales)

    def partial(self) -> Partial:
        """The shard's partial statistics."""
        keys, emb, scales = self.pool.take()
        return Partial(self.n, self.s.copy(), self.m.copy(), keys, emb, scales)


class ZoneYearStats:
    """Folds the partials of a zone-year's shards, in shard order (row, column), into its stretch arrays."""

    def __init__(self, sample_size: int, shard_grid: tuple[int, int]) -> None:
        self.k = sample_size
        self.n = 0
        self.s = np.zeros(BANDS, np.float64)
        self.m = np.zeros((BANDS, BANDS), np.float64)
        self.mask = np.zeros(shard_grid, np.uint8)
        self.pool = _Pool(sample_size)
        self._last: tuple[int, int] | None = None

    def add(self, shard_row: int, shard_col: int, p: Partial) -> None:
        """Fold in the partial of shard (row, column); shards must come in ascending order (sums are not
        associative in floating point: one order, the same bytes)."""
        if self._last is not None and (shard_row, shard_col) <= self._last:
            raise ValueError(f"shard ({shard_row}, {shard_col}) after {self._last}: partials must come in order")
        self._last = (shard_row, shard_col)
        self.n += p.n
        self.s += p.s
        self.m += p.m
        self.mask[shard_row, shard_col] = 1
        self.pool.offer(p.keys, p.emb, p.scales)

    def arrays(self) -> dict[str, np.ndarray]:
        """Each stretch array's chunk of this year (its leading time axis of length 1), by array name."""
        keys, emb, scales = self.pool.take()
        sample = np.zeros((1, self.k, BANDS), STRETCH_SAMPLE.dtype)
        sample_scales = np.full((1, self.k), NO_DATA, STRETCH_SAMPLE_SCALES.dtype)
        sample[0, :len(keys)] = emb
        sample_scales[0, :len(keys)] = scales
        return {
            STRETCH_STATS_SUM.name: self.s[None].astype(STRETCH_STATS_SUM.dtype),
            STRETCH_STATS_PROD.name: self.m[None].astype(STRETCH_STATS_PROD.dtype),
            STRETCH_SAMPLE.name: sample,
            STRETCH_SAMPLE_SCALES.name: sample_scales,
            STRETCH_SAMPLE_COUNT.name: np.array([len(keys)], STRETCH_SAMPLE_COUNT.dtype),
            STRETCH_STATS_SHARDS.name: self.mask[None],
            STRETCH_STATS_COUNT.name: np.array([self.n], STRETCH_STATS_COUNT.dtype),  # last: it says "complete"
        }
