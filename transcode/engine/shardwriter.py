"""Encode one shard as a stream: inner chunks appended in order, then the index, never the whole shard in memory."""

from __future__ import annotations

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
        self.encode = encode
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
        data = self.encode(np.ascontiguousarray(chunk))
        self.sink.write(data)
        self.index[i] = (self.offset, len(data))
        self.offset += len(data)
        self.chunks_written += 1

    def add_run(self, ks: np.ndarray, chunks: np.ndarray, which: np.ndarray) -> None:
        """Append inner chunks `ks` (increasing C-order positions in the shard); chunk `ks[t]` is
        `chunks[which[t]]`, `chunks` holding one C-ordered inner chunk per entry of its first axis."""
        ks = np.asarray(ks, dtype=np.int64)
        which = np.asarray(which, dtype=np.int64)
        if len(ks) == 0:
            return
        if len(which) != len(ks):
            raise ValueError(f"{len(ks)} chunk positions but {len(which)} chunks")
        if ks[0] <= self.last or np.any(np.diff(ks) <= 0):
            raise ValueError(f"inner chunks must be added in increasing order ({ks.tolist()} after {self.last})")
        if self.batch is None or not chunks.flags.c_contiguous or chunks[0].nbytes != self.batch.chunk_nbytes:
            for k, w in zip(ks.tolist(), which.tolist()):
                self.add(k, chunks[w])
            return
        flat = chunks.reshape(len(chunks), -1).view(np.uint8)
        sizes = np.empty(len(ks), dtype=np.int64)
        scratch = memoryview(self._scratch)
        t = 0
        while t < len(ks):
            t2, fill = self.batch(flat, which, t, scratch, sizes)
            self.sink.write(scratch[:fill])
            run = sizes[t:t2]
            self.index[ks[t:t2], 0] = self.offset + np.cumsum(run) - run
            self.index[ks[t:t2], 1] = run
            self.offset += fill
            t = t2
        self.last = int(ks[-1])
        self.chunks_written += len(ks)

    def finish(self) -> int:
        """Append the index (with its CRC32C); returns the shard's size. The caller commits the sink."""
        raw = self.layout.encode(self.index)
        self.sink.write(raw)
        return self.offset + len(raw)
