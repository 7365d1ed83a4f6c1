"""Compress a run of inner chunks in one call: the default codec (Blosc) through numcodecs' own bundled c-blosc,
looped in C (`transcode/codecs/_bloscbatch.c`), so a shard's 16,384 chunks cost no Python call, bytes object or copy
each. The bytes are those of `numcodecs.Blosc.encode`; other codecs keep the per-chunk path."""

from __future__ import annotations

import ctypes

import numpy as np

try:
    from transcode.codecs._bloscbatch import encode as _encode
except ImportError:  # built without a C compiler: the per-chunk path is used
    _encode = None

BLOSC_MAX_OVERHEAD = 16
SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_address: int | None = None


def _blosc_compress_ctx() -> int:
    """Address of `blosc_compress_ctx` in numcodecs' Blosc extension (0 if it does not export it)."""
    global _address
    if _address is None:
        import numcodecs.blosc

        try:
            fn = ctypes.CDLL(numcodecs.blosc.__file__).blosc_compress_ctx
            _address = ctypes.cast(fn, ctypes.c_void_p).value or 0
        except (OSError, AttributeError):
            _address = 0
    return _address


class BatchEncoder:
    """Blosc-compress equal-sized chunks `src[pos[t]]` one after another into an output buffer."""

    def __init__(self, cname: str, clevel: int, shuffle: str, typesize: int, chunk_nbytes: int) -> None:
        self.cname = cname
        self.clevel, self.shuffle, self.typesize = clevel, SHUFFLES[shuffle], typesize
        self.chunk_nbytes = chunk_nbytes
        self.worst = chunk_nbytes + BLOSC_MAX_OVERHEAD  # what one chunk may need in the output
        self._fn = _blosc_compress_ctx()

    def __call__(self, src: np.ndarray, pos: np.ndarray, start: int, out: bytearray | memoryview,
                 sizes: np.ndarray) -> tuple[int, int]:
        """Compress from `pos[start]` on while the worst case fits in `out`; `sizes[t]` gets each size.
        Returns (the next `t` to do, bytes used in `out`)."""
        if pos.dtype != np.int64 or sizes.dtype != np.int64:
            raise TypeError(f"chunk positions and sizes must be int64, got {pos.dtype} and {sizes.dtype}")
        return _encode(self._fn, self.cname, self.clevel, self.shuffle, self.typesize, src, self.chunk_nbytes,
                       pos, start, out, sizes)


def batch_encoder(cname: str, clevel: int, shuffle: str, typesize: int, chunk_nbytes: int) -> BatchEncoder | None:
    """A Blosc batch encoder, or None where the extension is not built or numcodecs does not export c-blosc."""
    if _encode is None or not _blosc_compress_ctx():
        return None
    return BatchEncoder(cname, clevel, shuffle, typesize, chunk_nbytes)
