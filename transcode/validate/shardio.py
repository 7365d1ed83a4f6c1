"""Reading shards for the content and fidelity levels: the index by one ranged read, chunks by coalesced ranged
reads (a sample) or by sequential blocks that cover the whole object (so its CRC32C can be compared with the
store manifest). Worker processes open their own storage once."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c
import numpy as np

from transcode.format.shardindex import present
from transcode.storage import S3Options, Storage, open_storage
from transcode.validate.zarrspec import ArraySpec, DecodeError, ShardLayout

BLOCK = 32 * 1024 * 1024
MAX_GAP = 1024 * 1024


@dataclass(frozen=True)
class ObjectRef:
    """One chunk or shard object of an array, with everything a worker needs to read and decode it."""

    array: str
    doc: dict
    key: str
    size: int
    coords: tuple[int, ...]
    crc32c: str | None = None  # from the store manifest, when there is one
    manifest_size: int | None = None

    def spec(self) -> ArraySpec:
        return ArraySpec(self.array, self.doc)


@dataclass(frozen=True)
class StoreAccess:
    """How a worker reaches the store (and the source, for fidelity); `storage` is used when running inline."""

    store_url: str
    store_options: S3Options
    source_url: str | None = None
    source_options: S3Options | None = None
    storage: Storage | None = None
    source: Storage | None = None

    def for_processes(self) -> StoreAccess:
        return StoreAccess(self.store_url, self.store_options, self.source_url, self.source_options)


_OPEN: dict[tuple, Storage] = {}


def open_cached(url: str, options: S3Options | None) -> Storage:
    key = (url, options)
    if key not in _OPEN:
        _OPEN[key] = open_storage(url, options)
    return _OPEN[key]


def store_of(access: StoreAccess) -> Storage:
    return access.storage if access.storage is not None else open_cached(access.store_url, access.store_options)


def source_of(access: StoreAccess) -> Storage:
    return access.source if access.source is not None else open_cached(access.source_url, access.source_options)


def read_index(storage: Storage, layout: ShardLayout, ref: ObjectRef) -> tuple[np.ndarray, bytes]:
    """(index, its raw bytes) of a shard: one ranged read."""
    start, length = layout.index.index_range(ref.size)
    if ref.size < length:
        raise DecodeError(f"object of {ref.size} bytes is shorter than its {length}-byte index")
    raw = storage.read_range(ref.key, start, length)
    return layout.parse_index(raw), raw


def written(index: np.ndarray) -> np.ndarray:
    """Indices of the inner chunks present, in C order."""
    return np.flatnonzero(present(index))


def read_selected(storage: Storage, key: str, index: np.ndarray, chunks, counter: dict) -> Iterator[tuple[int, bytes]]:
    """(i, encoded bytes) of the given inner chunks (absent ones skipped), by coalesced ranged reads."""
    stored = present(index)
    entries = sorted((int(index[i, 0]), int(index[i, 1]), int(i)) for i in chunks if stored[i])
    k = 0
    while k < len(entries):
        start = entries[k][0]
        end = entries[k][0] + entries[k][1]
        j = k + 1
        while j < len(entries) and entries[j][0] - end <= MAX_GAP and entries[j][0] + entries[j][1] - start <= BLOCK:
            end = max(end, entries[j][0] + entries[j][1])
            j += 1
        data = storage.read_range(key, start, end - start)
        counter["bytes"] += len(data)
        counter["reads"] += 1
        for off, n, i in entries[k:j]:
            piece = data[off - start:off - start + n]
            if len(piece) != n:
                raise DecodeError(f"chunk {i}: object ends inside it")
            yield i, piece
        k = j


def read_whole(storage: Storage, layout: ShardLayout, ref: ObjectRef, index: np.ndarray, index_raw: bytes,
               counter: dict) -> Iterator[tuple[int, bytes]]:
    """(i, encoded bytes) of every present inner chunk, reading the object front to back in blocks; the CRC32C of
    the whole object ends up in counter["crc32c"]."""
    lo, hi = layout.index.data_range(ref.size)
    crc = crc32c.crc32c(index_raw) if layout.index.location == "start" else 0
    entries = sorted((int(index[i, 0]), int(index[i, 1]), int(i)) for i in written(index))
    cuts = [lo]
    for off, n, _ in entries:
        if lo < off < hi and off - cuts[-1] >= BLOCK:
            cuts.append(off)
    cuts.append(hi)
    e = 0
    for b0, b1 in itertools.pairwise(cuts):
        data = storage.read_range(ref.key, b0, b1 - b0) if b1 > b0 else b""
        counter["bytes"] += len(data)
        counter["reads"] += 1
        crc = crc32c.crc32c(data, crc)
        if len(data) != b1 - b0:
            raise DecodeError(f"object ended after {b0 + len(data)} bytes, the index says {ref.size}")
        while e < len(entries) and entries[e][0] < b1:
            off, n, i = entries[e]
            e += 1
            if off >= b0 and off + n <= b1:
                yield i, data[off - b0:off - b0 + n]
            else:  # spans blocks: read on its own (chunks are contiguous, so this is rare)
                piece = storage.read_range(ref.key, off, n)
                counter["bytes"] += len(piece)
                counter["reads"] += 1
                yield i, piece
    if layout.index.location == "end":
        crc = crc32c.crc32c(index_raw, crc)
    counter["crc32c"] = f"{crc:08x}"
