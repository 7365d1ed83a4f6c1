"""Reorder a pixel-interleaved band of embeddings (rows, cols, bands) into Zarr inner chunks laid out one after
another, each (bands, ch, cw): the legacy tiles keep a pixel's 128 bands together, Zarr keeps each band's plane.

The compiled kernel (`transcode/engine/_kernels.c`) moves 16x16 byte tiles through SIMD registers, ~3x numpy's strided
copy (tools/bench/bench_transpose.py); numpy is the fallback wherever the kernel was not built."""

from __future__ import annotations

import numpy as np

try:
    from transcode.engine._kernels import band_to_chunks as _kernel
except ImportError:  # built without a C compiler: same result, slower
    _kernel = None

HAVE_KERNEL = _kernel is not None


def chunk_layout(rows: int, cols: int, bands: int, ch: int, cw: int) -> tuple[int, int, int, int, int]:
    """Shape of `band_to_chunks`' output: (chunk rows, chunk cols, bands, ch, cw)."""
    if rows % ch or cols % cw:
        raise ValueError(f"a band of {rows}x{cols} pixels is not a whole number of {ch}x{cw} chunks")
    return rows // ch, cols // cw, bands, ch, cw


def band_to_chunks(src: np.ndarray, ch: int, cw: int, out: np.ndarray | None = None,
                   use_kernel: bool = True) -> np.ndarray:
    """`src` (rows, cols, bands) -> `out` (rows/ch, cols/cw, bands, ch, cw); `out[i, j]` is inner chunk (i, j)."""
    rows, cols, bands = src.shape
    shape = chunk_layout(rows, cols, bands, ch, cw)
    if out is None:
        out = np.empty(shape, dtype=src.dtype)
    elif out.shape != shape or out.dtype != src.dtype:
        raise ValueError(f"output must be {shape} {src.dtype}, got {out.shape} {out.dtype}")
    if (use_kernel and _kernel is not None and src.dtype.itemsize == 1 and src.flags.c_contiguous
            and out.flags.c_contiguous):
        _kernel(src, out, rows, cols, bands, ch, cw)
    else:
        np.copyto(out, src.reshape(shape[0], ch, shape[1], cw, bands).transpose(0, 2, 4, 1, 3))
    return out
