"""Read row/column windows of tiles and landmasks: memory-mapped locally, one ranged GET on S3."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transcode.errors import ArchiveError
from transcode.legacy.npyheader import (
    FIRST_READ,
    NpyHeader,
    NpyHeaderError,
    check_embeddings_header,
    check_scales_header,
    header_span,
    parse_npy_header,
)
from transcode.storage import Storage


def read_npy_header(storage: Storage, key: str) -> NpyHeader:
    """Parse an `.npy` header from the object's first bytes (one ranged read; two if it is long)."""
    head = storage.read_range(key, 0, FIRST_READ)
    try:
        span = header_span(head)
        if span > len(head):
            head = storage.read_range(key, 0, span)
        return parse_npy_header(head)
    except NpyHeaderError as e:
        raise ArchiveError(storage.describe(key), str(e)) from e


@dataclass(frozen=True)
class Window:
    """Rows [row0, row1) and columns [col0, col1) of a tile."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row1 - self.row0, self.col1 - self.col0)


class NpyTileFile:
    """One `.npy` tile file (embeddings or scales) whose header is known; reads windows of it."""

    def __init__(self, storage: Storage, key: str, header: NpyHeader | None = None, kind: str = "embeddings") -> None:
        self.storage = storage
        self.key = key
        self.header = header if header is not None else read_npy_header(storage, key)
        problems = (check_embeddings_header if kind == "embeddings" else check_scales_header)(self.header)
        if problems:
            raise ArchiveError(storage.describe(key), "; ".join(msg for _, msg in problems))
        self._mmap: np.memmap | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.header.shape

    def _element(self) -> tuple[int, int]:
        """(items per pixel, bytes per item)."""
        per_pixel = int(np.prod(self.header.shape[2:], dtype=np.int64)) if len(self.header.shape) > 2 else 1
        return per_pixel, self.header.dtype.itemsize

    def read(self, window: Window) -> np.ndarray:
        """The window as a new C-ordered array of shape (rows, cols[, bands])."""
        h, w = self.header.shape[:2]
        if not (0 <= window.row0 <= window.row1 <= h and 0 <= window.col0 <= window.col1 <= w):
            raise ArchiveError(self.storage.describe(self.key), f"window {window} outside the tile's {h}x{w} pixels")
        path = self.storage.local_path(self.key)
        if path is not None:
            return self._read_local(path, window)
        return self._read_ranged(window)

    def _read_local(self, path, window: Window) -> np.ndarray:
        if self._mmap is None:
            size = path.stat().st_size
            if size < self.header.expected_size:
                raise ArchiveError(str(path), f"truncated: {size} bytes, header says {self.header.expected_size}")
            self._mmap = np.memmap(path, dtype=self.header.dtype, mode="r", offset=self.header.data_offset,
                                   shape=self.header.shape, order="C")
        return np.array(self._mmap[window.row0:window.row1, window.col0:window.col1], copy=True)

    def _read_ranged(self, window: Window) -> np.ndarray:
        rows, cols = window.shape
        h, w = self.header.shape[:2]
        per_pixel, itemsize = self._element()
        out_shape = (rows, cols) + tuple(self.header.shape[2:])
        if rows == 0 or cols == 0:
            return np.empty(out_shape, dtype=self.header.dtype)
        pixel_bytes = per_pixel * itemsize
        first = window.row0 * w + window.col0
        last = (window.row1 - 1) * w + window.col1  # one past the last pixel needed
        start = self.header.data_offset + first * pixel_bytes
        length = (last - first) * pixel_bytes
        data = self.storage.read_range(self.key, start, length)
        if len(data) != length:
            raise ArchiveError(self.storage.describe(self.key),
                               f"truncated: wanted bytes {start}..{start + length - 1}, got {len(data)} bytes")
        # lay the contiguous span into whole rows, then cut the columns out
        flat = np.empty(rows * w * per_pixel, dtype=self.header.dtype)
        lead = window.col0 * per_pixel
        flat[lead:lead + (last - first) * per_pixel] = np.frombuffer(data, dtype=self.header.dtype)
        block = flat.reshape((rows, w) + tuple(self.header.shape[2:]))
        return np.ascontiguousarray(block[:, window.col0:window.col1])


def read_landmask(storage: Storage, key: str, window: Window | None = None) -> np.ndarray:
    """A window (or all) of a landmask GeoTIFF as uint8, 0 = water; the object is small, read whole if remote."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.io import MemoryFile
    from rasterio.windows import Window as RioWindow

    rio_window = None if window is None else RioWindow(window.col0, window.row0, window.shape[1], window.shape[0])
    path = storage.local_path(key)
    try:
        if path is not None:
            with rasterio.open(path) as ds:
                return ds.read(1, window=rio_window)
        with MemoryFile(storage.read(key)) as mem, mem.open() as ds:
            return ds.read(1, window=rio_window)
    except RasterioIOError as e:
        raise ArchiveError(storage.describe(key), f"not a readable GeoTIFF landmask: {e}") from e
