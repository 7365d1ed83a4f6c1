"""The index of a `sharding_indexed` shard: one (offset, size) pair of uint64 per inner chunk in C order, both
2^64-1 for an absent chunk, then (with the `crc32c` index codec) a little-endian CRC32C of those bytes; the whole
index sits at the end (or start) of the shard object. A tessera store writes little-endian entries, the CRC32C
and the index at the end; readers of other stores meet the other variants, so the layout is a value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import crc32c
import numpy as np

EMPTY = 2**64 - 1  # offset and size of an inner chunk that is not stored (it reads as the fill value)
ENTRY_NBYTES = 16
CRC_NBYTES = 4


class ShardIndexError(ValueError):
    """Index bytes that cannot be decoded (wrong length, CRC32C mismatch) or an index layout not supported."""


class IndexChecksumError(ShardIndexError):
    """The index's CRC32C does not match its entries."""


@dataclass(frozen=True)
class IndexLayout:
    """How the index of a shard with `n_chunks` inner chunks is encoded and where it sits."""

    n_chunks: int
    endian: str = "little"
    crc: bool = True
    location: str = "end"

    @property
    def nbytes(self) -> int:
        """Encoded size of the index, CRC32C included."""
        return self.n_chunks * ENTRY_NBYTES + (CRC_NBYTES if self.crc else 0)

    @property
    def _dtype(self) -> str:
        return "<u8" if self.endian == "little" else ">u8"

    def entries(self, raw: bytes) -> np.ndarray:
        """The whole (offset, size) entries at the start of index bytes, the CRC32C not checked (to tell two
        indexes apart, or read a damaged one)."""
        body = raw[:self.n_chunks * ENTRY_NBYTES]
        body = body[:len(body) // ENTRY_NBYTES * ENTRY_NBYTES]
        return np.frombuffer(body, dtype=self._dtype).reshape(-1, 2)

    def index_range(self, size: int) -> tuple[int, int]:
        """(start, length) of the index in a shard object of `size` bytes."""
        return (size - self.nbytes, self.nbytes) if self.location == "end" else (0, self.nbytes)

    def data_range(self, size: int) -> tuple[int, int]:
        """[start, end) of the region of a shard object of `size` bytes where inner chunks may lie."""
        return (0, size - self.nbytes) if self.location == "end" else (self.nbytes, size)

    def empty(self) -> np.ndarray:
        """An index with every inner chunk absent: (n_chunks, 2) offsets and sizes."""
        return np.full((self.n_chunks, 2), EMPTY, dtype=self._dtype)

    def encode(self, index: np.ndarray) -> bytes:
        """The index bytes as stored: entries, then their CRC32C when the layout has one."""
        raw = np.ascontiguousarray(index, dtype=self._dtype).tobytes()
        if len(raw) != self.n_chunks * ENTRY_NBYTES:
            raise ShardIndexError(f"an index of {self.n_chunks} entries cannot hold {len(raw) // ENTRY_NBYTES}")
        return raw + crc32c.crc32c(raw).to_bytes(CRC_NBYTES, "little") if self.crc else raw

    def decode(self, raw: bytes) -> np.ndarray:
        """(n_chunks, 2) offsets and sizes from stored index bytes; ShardIndexError if the length or CRC32C is wrong."""
        if len(raw) != self.nbytes:
            raise ShardIndexError(f"index is {len(raw)} bytes, expected {self.nbytes}")
        if self.crc:
            want = int.from_bytes(raw[-CRC_NBYTES:], "little")
            got = crc32c.crc32c(raw[:-CRC_NBYTES])
            if got != want:
                raise IndexChecksumError(f"index CRC32C mismatch: stored {want:08x}, computed {got:08x}")
        return self.entries(raw)

    def zarr_index_codecs(self) -> list[dict]:
        """The `index_codecs` of the sharding configuration that encode this layout."""
        codecs: list[dict] = [{"name": "bytes", "configuration": {"endian": self.endian}}]
        return codecs + [{"name": "crc32c"}] if self.crc else codecs

    @classmethod
    def from_sharding(cls, n_chunks: int, config: dict[str, Any]) -> IndexLayout:
        """The layout a `sharding_indexed` configuration declares; ShardIndexError for index codecs other than
        `bytes` (+ `crc32c`), the only ones with a fixed encoded size that readers agree on."""
        entries = [c if isinstance(c, dict) else {"name": c} for c in config.get("index_codecs") or []]
        names = [c.get("name") for c in entries]
        if names not in (["bytes"], ["bytes", "crc32c"]):
            raise ShardIndexError(f"shard index codecs {names} are not supported")
        endian = (entries[0].get("configuration") or {}).get("endian", "little")
        return cls(n_chunks, endian, len(names) == 2, config.get("index_location", "end"))


def present(index: np.ndarray) -> np.ndarray:
    """Where an index entry is a stored inner chunk (not both fields EMPTY)."""
    return ~((index[:, 0] == EMPTY) & (index[:, 1] == EMPTY))


def outside(index: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Where a stored entry's bytes do not lie within [lo, hi) (absent entries are never outside)."""
    off, n = index[:, 0], index[:, 1]
    return present(index) & ((off < lo) | (off > hi) | (n > hi - np.minimum(off, hi)))
