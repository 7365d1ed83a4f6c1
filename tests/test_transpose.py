"""The band-to-chunks byte transpose: compiled kernel and numpy fallback agree with the plain definition."""

import platform

import numpy as np
import pytest

from transcode.engine import transpose
from transcode.engine.transpose import band_to_chunks, chunk_layout


def reference(src: np.ndarray, ch: int, cw: int) -> np.ndarray:
    rows, cols, bands = src.shape
    out = np.empty((rows // ch, cols // cw, bands, ch, cw), src.dtype)
    for i in range(rows // ch):
        for j in range(cols // cw):
            out[i, j] = np.moveaxis(src[i * ch:(i + 1) * ch, j * cw:(j + 1) * cw], 2, 0)
    return out


def test_kernel_is_built():
    # the package builds it wherever a C compiler is present (CI included); without it we fall back silently,
    # which this test would otherwise hide
    assert transpose.HAVE_KERNEL, f"transcode.engine._kernels was not built on {platform.machine()}"


@pytest.mark.parametrize("rows,cols,bands,ch,cw", [
    (64, 4096, 128, 32, 32),  # the default band: SIMD tiles throughout
    (32, 96, 128, 32, 48),  # chunk width a multiple of 16 but not a power of two
    (6, 10, 3, 3, 5),  # nothing a multiple of 16: the scalar path
    (16, 40, 128, 8, 20),  # bands in tiles, chunk width not
    (2, 2, 128, 1, 1),
])
@pytest.mark.parametrize("use_kernel", [True, False])
def test_band_to_chunks_matches_the_definition(rows, cols, bands, ch, cw, use_kernel):
    src = np.random.default_rng(rows * cols + bands).integers(-128, 128, (rows, cols, bands), dtype=np.int8)
    out = band_to_chunks(src, ch, cw, use_kernel=use_kernel)
    np.testing.assert_array_equal(out, reference(src, ch, cw))


def test_into_a_reused_buffer_and_shape_errors():
    src = np.arange(4 * 8 * 16, dtype=np.uint8).reshape(4, 8, 16)
    buf = np.full(chunk_layout(4, 8, 16, 2, 4), 7, np.uint8)
    assert band_to_chunks(src, 2, 4, buf) is buf
    np.testing.assert_array_equal(buf, reference(src, 2, 4))
    with pytest.raises(ValueError, match="not a whole number of 3x4 chunks"):
        band_to_chunks(src, 3, 4)
    with pytest.raises(ValueError, match="output must be"):
        band_to_chunks(src, 2, 4, np.empty((2, 2, 16, 2, 2), np.uint8))
