"""Parse `.npy` headers (format 1.0–3.0) from their first bytes, without numpy's loader."""

from __future__ import annotations

import ast
import math
import re
import struct
from dataclasses import dataclass

import numpy as np

# a tile holds what the store holds: int8 vectors of BANDS values and one float32 scale per pixel
from transcode.format.arrays import BANDS, EMBEDDINGS_DTYPE, SCALES_DTYPE

__all__ = ["BANDS", "EMBEDDINGS_DTYPE", "SCALES_DTYPE", "NpyHeader", "NpyHeaderError", "check_embeddings_header",
           "check_scales_header", "header_span", "parse_npy_header"]
MAGIC = b"\x93NUMPY"
FIRST_READ = 4096  # enough for any real tile header (128 bytes); longer headers are read on demand
MAX_HEADER = 1 << 20
MAX_TILE_SIDE = 4096  # a 0.1° cell is ~1120 px at most; anything far beyond that is not a tile


# the dict numpy's writer emits, exactly; anything else goes through the full literal parser
_PLAIN = re.compile(r"^\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (True|False), 'shape': \((\d+(?:, \d+)*,?)?\), \}$")
_DTYPES: dict[str, np.dtype] = {}  # descr -> dtype, parsed once


class NpyHeaderError(ValueError):
    """The bytes are not a valid `.npy` header (the message says what is wrong)."""


@dataclass(frozen=True)
class NpyHeader:
    """What an `.npy` header declares, and where the array data starts."""

    version: tuple[int, int]
    dtype: np.dtype
    fortran_order: bool
    shape: tuple[int, ...]
    data_offset: int

    @property
    def nbytes(self) -> int:
        """Size of the array data in bytes."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def expected_size(self) -> int:
        """Size the whole file must have: header plus data."""
        return self.data_offset + self.nbytes


def header_span(prefix: bytes) -> int:
    """Total header length (magic to data start) declared by the first 12 bytes of a file."""
    if len(prefix) < 10 or prefix[:6] != MAGIC:
        raise NpyHeaderError("not an .npy file (magic string \\x93NUMPY missing)")
    major = prefix[6]
    if major == 1:
        return 10 + struct.unpack("<H", prefix[8:10])[0]
    if major in (2, 3):
        if len(prefix) < 12:
            raise NpyHeaderError("file ends inside the .npy preamble")
        return 12 + struct.unpack("<I", prefix[8:12])[0]
    raise NpyHeaderError(f"unsupported .npy format version {major}.{prefix[7]}")


def parse_npy_header(data: bytes) -> NpyHeader:
    """Parse the header at the start of `data`, which must hold at least `header_span` bytes."""
    span = header_span(data)
    if span > MAX_HEADER:
        raise NpyHeaderError(f"header length {span} is implausibly large")
    if len(data) < span:
        raise NpyHeaderError(f"file ends inside the header ({len(data)} of {span} bytes)")
    major, minor = data[6], data[7]
    start = 10 if major == 1 else 12
    encoding = "utf-8" if major == 3 else "latin-1"
    try:
        text = data[start:span].decode(encoding).strip()
        meta = _plain_header(text) or ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError) as e:
        raise NpyHeaderError(f"header is not a Python dict literal: {e}") from e
    if not isinstance(meta, dict) or set(meta) != {"descr", "fortran_order", "shape"}:
        raise NpyHeaderError(f"header must have exactly the keys descr, fortran_order, shape; got {meta!r}")
    shape = meta["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise NpyHeaderError(f"shape must be a tuple of non-negative integers, got {shape!r}")
    if not isinstance(meta["fortran_order"], bool):
        raise NpyHeaderError(f"fortran_order must be True or False, got {meta['fortran_order']!r}")
    descr = meta["descr"]
    dtype = _DTYPES.get(descr) if isinstance(descr, str) else None
    if dtype is None:
        try:
            dtype = np.lib.format.descr_to_dtype(descr)
        except (TypeError, ValueError) as e:
            raise NpyHeaderError(f"unknown dtype {descr!r}") from e
        if isinstance(descr, str):
            _DTYPES[descr] = dtype
    return NpyHeader((major, minor), dtype, meta["fortran_order"], shape, span)


def _plain_header(text: str) -> dict | None:
    """The header dict when it is written exactly as numpy writes it (the common case, parsed without `ast`)."""
    m = _PLAIN.match(text)
    if m is None:
        return None
    shape = tuple(int(n) for n in m.group(3).split(",") if n.strip()) if m.group(3) else ()
    return {"descr": m.group(1), "fortran_order": m.group(2) == "True", "shape": shape}


def check_embeddings_header(h: NpyHeader) -> list[tuple[str, str]]:
    """(kind, reason) for each way this header is not a valid embeddings tile; empty when valid."""
    problems = _check_common(h)
    if h.dtype != EMBEDDINGS_DTYPE:
        problems.append(("wrong-dtype", f"dtype {h.dtype.str} (expected int8 |i1)"))
    if len(h.shape) != 3:
        problems.append(("bad-shape", f"shape {h.shape} has {len(h.shape)} dimensions (expected (H, W, {BANDS}))"))
    else:
        if h.shape[2] != BANDS:
            problems.append(("bad-shape", f"shape {h.shape} has {h.shape[2]} bands (expected {BANDS})"))
        problems += _check_sides(h.shape[:2])
    return problems


def check_scales_header(h: NpyHeader) -> list[tuple[str, str]]:
    """(kind, reason) for each way this header is not a valid scales tile; empty when valid."""
    problems = _check_common(h)
    if h.dtype != SCALES_DTYPE:
        problems.append(("wrong-dtype", f"dtype {h.dtype.str} (expected float32 <f4)"))
    if len(h.shape) != 2:
        problems.append(("bad-shape", f"shape {h.shape} has {len(h.shape)} dimensions (expected (H, W))"))
    else:
        problems += _check_sides(h.shape)
    return problems


def _check_common(h: NpyHeader) -> list[tuple[str, str]]:
    return [("fortran-order", "Fortran order (tiles must be C order)")] if h.fortran_order else []


def _check_sides(hw: tuple[int, ...]) -> list[tuple[str, str]]:
    if any(n < 1 or n > MAX_TILE_SIDE for n in hw):
        return [("bad-shape", f"impossible tile size {hw[0]}x{hw[1]} (each side must be 1..{MAX_TILE_SIDE})")]
    return []
