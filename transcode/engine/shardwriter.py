"""Encode one shard as a stream: inner chunks appended in order, then the index, never the whole shard in memory."""

from __future__ import annotations

from typing import Any

import numpy as np

from transcode.codecs.batchencode import BatchEncoder
from transcode.codecs.spec import Encoder
from transcode.format.shardindex import IndexLayout
from transcode.storage import ObjectWriter


class ShardWriter:
    """Writes a `sharding_indexed` shard in the store's index layout (transcode.format.shardindex; at the end)."""

    def __init__(self, sink: ObjectWriter, n_chunks: int, encode: Encoder, batch: BatchEncoder | None = None) -> None:
        self.layout = IndexLayout(n_chunks)
        if self.layout.location != "end":
            raise ValueError("a shard is written as a stream: its index must come at the end")
        self.sink = sink
        self.encode_one = encode
        self.batch = batch
        # the batch encoder's output: small enough to stay in cache until the sink copies it
        self._scratch = bytearray(max(1 << 20, 4 * batch.worst)) if batch else None
        self.index = self.layout.empty()
        self.offset = 0
        self.last = -1
        self.chunks_written = 0

    def add(self, i: int, chunk: np.ndarray | None) -> None:
        """Append inner chunk `i` (C-order position in the shard's chunk grid); None leaves it empty (fill value)."""
        if i <= self.last:
            raise ValueError(f"inner chunks must be added in increasing order ({i} after {self.last})")
        self.last = i
        if chunk is None:
            return
        data = self.encode_one(np.ascontiguousarray(chunk))
        self.sink.write(data)
        self.index[i] = (self.offset, len(data))
        self.offset += len(data)
        self.chunks_written += 1

    def add_run(self, ks: np.ndarray, chunks: np.ndarray, which: np.ndarray) -> None:
        """Append inner chunks `ks` (increasing C-order positions in the shard); chunk `ks[t]` is
        `chunks[which[t]]`, `chunks` holding one C-ordered inner chunk per entry of its first axis."""
        ks = self._check_run(ks, which)
        if not len(ks):
            return
        if not self._batchable(chunks):
            for k, w in zip(ks.tolist(), np.asarray(which).tolist()):
                self.add(k, chunks[w])
            return
        flat = chunks.reshape(len(chunks), -1).view(np.uint8)
        which = np.asarray(which, dtype=np.int64)
        sizes = np.empty(len(ks), dtype=np.int64)
        scratch = memoryview(self._scratch)
        t = 0
        while t < len(ks):
            t2, fill = self.batch(flat, which, t, scratch, sizes)
            self._append(ks[t:t2], sizes[t:t2], scratch[:fill])
            t = t2

    def worst(self, n: int) -> int:
        """Bytes `encode` may need in its `out` buffer for n chunks (0: it does not use one)."""
        return n * self.batch.worst if self.batch is not None else 0

    def encode(self, chunks: np.ndarray, which: np.ndarray, out: memoryview | None) -> tuple[np.ndarray, Any]:
        """Encode `chunks[which[t]]` for every t, touching nothing of the writer (safe on any thread): their sizes
        and their bytes one after another, in `out` (at least `worst(len(which))` bytes) where the batch encoder
        takes them, else in a new bytes object. `append` them later, in shard order."""
        which = np.asarray(which, dtype=np.int64)
        if not len(which):
            return np.zeros(0, np.int64), b""
        if self._batchable(chunks) and out is not None and len(out) >= self.worst(len(which)):
            flat = chunks.reshape(len(chunks), -1).view(np.uint8)
            sizes = np.empty(len(which), dtype=np.int64)
            t, fill = self.batch(flat, which, 0, out, sizes)
            if t != len(which):
                raise RuntimeError(f"the batch encoder stopped at chunk {t} of {len(which)} with room for all")
            return sizes, out[:fill]
        pieces = [self.encode_one(np.ascontiguousarray(chunks[w])) for w in which.tolist()]
        return np.array([len(p) for p in pieces], dtype=np.int64), b"".join(pieces)

    def append(self, ks: np.ndarray, sizes: np.ndarray, data: bytes | memoryview) -> None:
        """Append chunks `ks` (increasing C-order positions) that `encode` made: `sizes` and their bytes, in order."""
        ks = self._check_run(ks, sizes)
        if len(ks):
            self._append(ks, np.asarray(sizes, dtype=np.int64), data)

    def _batchable(self, chunks: np.ndarray) -> bool:
        return self.batch is not None and chunks.flags.c_contiguous and chunks[0].nbytes == self.batch.chunk_nbytes

    def _check_run(self, ks: np.ndarray, which: np.ndarray) -> np.ndarray:
        ks = np.asarray(ks, dtype=np.int64)
        if len(which) != len(ks):
            raise ValueError(f"{len(ks)} chunk positions but {len(which)} chunks")
        if len(ks) and (ks[0] <= self.last or np.any(np.diff(ks) <= 0)):
            raise ValueError(f"inner chunks must be added in increasing order ({ks.tolist()} after {self.last})")
        return ks

    def _append(self, ks: np.ndarray, sizes: np.ndarray, data: bytes | memoryview) -> None:
        self.sink.write(data)
        self.index[ks, 0] = self.offset + np.cumsum(sizes) - sizes
        self.index[ks, 1] = sizes
        self.offset += int(sizes.sum())
        self.last = int(ks[-1])
        self.chunks_written += len(ks)

    def finish(self) -> int:
        """Append the index (with its CRC32C); returns the shard's size. The caller commits the sink."""
        raw = self.layout.encode(self.index)
        self.sink.write(raw)
        return self.offset + len(raw)
