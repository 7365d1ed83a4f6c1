"""Encode one shard as a stream: inner chunks appended in order, then the index, never the whole shard in memory."""

from __future__ import annotations

import crc32c
import numpy as np

from transcode.codecs import Encoder
from transcode.storage import ObjectWriter

MISSING = np.uint64(2**64 - 1)


class ShardWriter:
    """Writes a `sharding_indexed` shard (index at the end, `bytes` little endian + `crc32c` index codecs)."""

    def __init__(self, sink: ObjectWriter, n_chunks: int, encode: Encoder) -> None:
        self.sink = sink
        self.encode = encode
        self.index = np.full((n_chunks, 2), MISSING, dtype="<u8")
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

    def finish(self) -> int:
        """Append the index and its CRC32C; returns the shard's size. The caller commits the sink."""
        raw = self.index.tobytes()
        self.sink.write(raw)
        self.sink.write(np.uint32(crc32c.crc32c(raw)).astype("<u4").tobytes())
        return self.offset + len(raw) + 4
