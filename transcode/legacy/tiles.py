"""Read row/column windows of tiles and landmasks: memory-mapped locally, one ranged GET on S3."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from transcode.errors import ArchiveError
from transcode.legacy.npyheader import (
    FIRST_READ,
    MAX_TILE_SIDE,
    NpyHeader,
    NpyHeaderError,
    check_embeddings_header,
    check_scales_header,
    header_span,
    parse_npy_header,
)
from transcode.storage import Storage
from transcode.storage.causes import os_error


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
        self._fd: int | None = None
        self._stamp: tuple[int, int] | None = None  # (size, mtime) of the open file, re-checked after each read

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.header.shape

    def _element(self) -> tuple[int, int]:
        """(items per pixel, bytes per item)."""
        per_pixel = int(np.prod(self.header.shape[2:], dtype=np.int64)) if len(self.header.shape) > 2 else 1
        return per_pixel, self.header.dtype.itemsize

    def read(self, window: Window) -> np.ndarray:
        """The window as a new C-ordered array of shape (rows, cols[, bands])."""
        out = np.empty(window.shape + tuple(self.header.shape[2:]), dtype=self.header.dtype)
        self.read_into(window, out)
        return out

    def read_into(self, window: Window, out: np.ndarray) -> None:
        """Copy the window straight into `out` (any writable view of the right shape): one copy, no temporaries."""
        self._check(window)
        if out.shape != window.shape + tuple(self.header.shape[2:]):
            raise ValueError(f"out has shape {out.shape}, window needs {window.shape + tuple(self.header.shape[2:])}")
        if not (window.shape[0] and window.shape[1]):
            return
        path = self.storage.local_path(self.key)
        per_pixel, itemsize = self._element()
        if path is not None and out.strides[1] == per_pixel * itemsize and window.shape[0] <= 512 \
                and (out.ndim == 2 or out.strides[2] == itemsize):
            self._scatter_read(path, window, out)
        else:
            out[...] = self._read_span(window)

    def fetch(self, window: Window) -> np.ndarray:
        """The window as a read-only array over the bytes read (one pread or one ranged GET, no copy): for reading
        several windows at once and placing them afterwards."""
        self._check(window)
        if not (window.shape[0] and window.shape[1]):
            return np.empty(window.shape + tuple(self.header.shape[2:]), dtype=self.header.dtype)
        return self._read_span(window)

    def fetch_size(self, window: Window) -> int:
        """The bytes `fetch(window)` reads: its span, from the window's first pixel to its last."""
        return self._span(window)[1]

    def _check(self, window: Window) -> None:
        h, w = self.header.shape[:2]
        if not (0 <= window.row0 <= window.row1 <= h and 0 <= window.col0 <= window.col1 <= w):
            raise ArchiveError(self.storage.describe(self.key), f"window {window} outside the tile's {h}x{w} pixels")

    def _scatter_read(self, path, window: Window, out: np.ndarray) -> None:
        """One preadv from the file straight into the destination rows (no intermediate buffer)."""
        start, length = self._span(window)
        per_pixel, itemsize = self._element()
        row_bytes = window.shape[1] * per_pixel * itemsize
        gap = (self.header.shape[1] - window.shape[1]) * per_pixel * itemsize
        scratch = np.empty(gap, dtype=np.uint8) if gap else None
        buffers: list = []
        for r in range(window.shape[0]):
            if r and scratch is not None:
                buffers.append(scratch)
            buffers.append(memoryview(out[r]).cast("B"))
        try:
            got = os.preadv(self._local_fd(path), buffers, start)
        except OSError as e:
            raise os_error(str(path), e, "read") from e
        self._check_unchanged(path)
        if got != length or length != window.shape[0] * row_bytes + (window.shape[0] - 1) * gap:
            raise ArchiveError(str(path), f"truncated: wanted bytes {start}..{start + length - 1}, got {got} bytes")

    def _local_fd(self, path) -> int:
        """The file, opened on first use; its size must be what the header declares (as the inventory found it:
        a tile of any other size is not placed), else it shrank or grew since."""
        if self._fd is None:
            fd = os.open(path, os.O_RDONLY)
            st = os.fstat(fd)
            if st.st_size != self.header.expected_size:
                os.close(fd)
                raise ArchiveError(str(path), f"changed since the inventory: {st.st_size} bytes, its header and shape "
                                              f"need {self.header.expected_size}")
            self._fd, self._stamp = fd, (st.st_size, st.st_mtime_ns)
        return self._fd

    def _check_unchanged(self, path) -> None:
        """The file's size and mtime are still those it had when it was opened: bytes read while it was rewritten in
        place would mix two versions."""
        st = os.fstat(self._fd)
        if (st.st_size, st.st_mtime_ns) != self._stamp:
            raise ArchiveError(str(path), f"changed while it was read (size {self._stamp[0]} -> {st.st_size} bytes, "
                                          "mtime changed): convert again once the source is stable")

    def _span(self, window: Window) -> tuple[int, int]:
        """(offset, length) of the contiguous byte span from the window's first to its last pixel."""
        w = self.header.shape[1]
        per_pixel, itemsize = self._element()
        first = window.row0 * w + window.col0
        last = (window.row1 - 1) * w + window.col1  # one past the last pixel needed
        return self.header.data_offset + first * per_pixel * itemsize, (last - first) * per_pixel * itemsize

    def _read_span(self, window: Window) -> np.ndarray:
        """The window as a strided view over its byte span: one pread locally (no mmap, so the pages do not
        count against the worker's memory), one ranged GET on S3."""
        start, length = self._span(window)
        path = self.storage.local_path(self.key)
        if path is not None:
            data = np.empty(length, dtype=np.uint8)
            try:
                got = os.preadv(self._local_fd(path), [data], start)
            except OSError as e:
                raise os_error(str(path), e, "read") from e
            self._check_unchanged(path)
        else:
            data = self.storage.read_range(self.key, start, length)
            got = len(data)
        if got != length:
            raise ArchiveError(self.storage.describe(self.key),
                               f"truncated: wanted bytes {start}..{start + length - 1}, got {got} bytes")
        return self._view(data, window)

    def _read_ranged(self, window: Window) -> np.ndarray:
        """The window read with one ranged request, as remote storage does (tests compare it with local reads)."""
        if not (window.shape[0] and window.shape[1]):
            return np.empty(window.shape + tuple(self.header.shape[2:]), dtype=self.header.dtype)
        start, length = self._span(window)
        return self._view(self.storage.read_range(self.key, start, length), window)

    def _view(self, data, window: Window) -> np.ndarray:
        rows, cols = window.shape
        w = self.header.shape[1]
        per_pixel, itemsize = self._element()
        out_shape = (rows, cols) + tuple(self.header.shape[2:])
        # the span starts at (row0, col0): view it as whole rows of the tile and keep the window's columns
        flat = np.frombuffer(data, dtype=self.header.dtype)
        strides = (w * per_pixel * itemsize, per_pixel * itemsize) + ((itemsize,) if len(out_shape) == 3 else ())
        return np.lib.stride_tricks.as_strided(flat, shape=out_shape, strides=strides, writeable=False)


def read_landmask(storage: Storage, key: str, window: Window | None = None) -> np.ndarray:
    """A window (or all) of a landmask GeoTIFF as uint8, 0 = water; the object is small, read whole if remote."""
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile
    from rasterio.session import DummySession
    from rasterio.windows import Window as RioWindow

    rio_window = None if window is None else RioWindow(window.col0, window.row0, window.shape[1], window.shape[0])

    def band(ds) -> np.ndarray:
        if ds.count < 1 or not (1 <= ds.height <= MAX_TILE_SIDE and 1 <= ds.width <= MAX_TILE_SIDE):
            raise ArchiveError(storage.describe(key), f"a landmask of {ds.count} bands of {ds.height}x{ds.width} "
                                                      f"pixels is not a tile's (one band, sides 1..{MAX_TILE_SIDE})")
        return ds.read(1, window=rio_window)

    path = storage.local_path(key)
    data = None if path is not None else storage.read(key)
    try:
        # GDAL reads a local file or bytes in hand: no cloud session. Without an Env of its own, rasterio makes
        # one per open, with an AWS session whose credential chain costs ~20 ms of CPU (GIL held) whenever boto3
        # is installed and AWS credentials are set: 16 landmasks per shard were a third of a second
        with rasterio.Env(session=DummySession()):
            if path is not None:
                with rasterio.open(path) as ds:
                    return band(ds)
            with MemoryFile(data) as mem, mem.open() as ds:
                return band(ds)
    except (RasterioError, ValueError) as e:  # GDAL's errors on a damaged file; MemoryFile's on bytes of no format
        raise ArchiveError(storage.describe(key), f"not a readable GeoTIFF landmask: {e}") from e
