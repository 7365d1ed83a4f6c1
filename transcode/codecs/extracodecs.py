"""Brotli and Snappy as Zarr v3 bytes-to-bytes codecs for zarr-python, on the `brotli` and `python-snappy` packages.

Zarr v3 has no core or zarr-extensions name for either compressor. The only Zarr v3 names in use for them are
`imagecodecs_brotli` and `imagecodecs_snappy`, registered under the `zarr.codecs` entry-point group by the
`imagecodecs-zarr` package (`imagecodecs.zarr.Brotli` / `.Snappy`) and listed by zarr-python's own registry of
known codec packages. We write exactly that metadata, so a reader with imagecodecs-zarr installed opens our stores
and we open theirs:

    {"name": "imagecodecs_brotli", "configuration": {"level": 0..11, "lgwin": 10..24}}   # optional "mode"
    {"name": "imagecodecs_snappy"}

The chunk bytes are a plain Brotli stream (RFC 7932) and a raw Snappy block (not the framing format), which is
what `imagecodecs.brotli_encode` / `snappy_encode` produce and decode. Importing this module registers both codecs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zarr.abc.codec import BytesBytesCodec
from zarr.core.common import JSON, parse_named_configuration

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer

BROTLI_NAME = "imagecodecs_brotli"
SNAPPY_NAME = "imagecodecs_snappy"
BROTLI_DEFAULT_LEVEL = 11  # the Brotli library's own default quality, used when a store names none
BROTLI_DEFAULT_LGWIN = 22
BROTLI_MODES = ("GENERIC", "TEXT", "FONT")


def brotli_compress(data: Any, level: int = BROTLI_DEFAULT_LEVEL, lgwin: int = BROTLI_DEFAULT_LGWIN,
                    mode: str | None = None) -> bytes:
    """One Brotli stream of `data` (any contiguous buffer)."""
    import brotli

    return brotli.compress(memoryview(data).cast("B"), mode=getattr(brotli, f"MODE_{mode or 'GENERIC'}"),
                           quality=level, lgwin=lgwin)


def brotli_decompress(data: Any) -> bytes:
    """Inverse of `brotli_compress`."""
    import brotli

    return brotli.decompress(bytes(data))


def snappy_compress(data: Any) -> bytes:
    """One raw Snappy block of `data` (any contiguous buffer)."""
    import snappy

    return snappy.compress(memoryview(data).cast("B"))


def snappy_decompress(data: Any) -> bytes:
    """Inverse of `snappy_compress`."""
    import snappy

    return snappy.decompress(bytes(data))


def _config(data: dict[str, JSON], name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    _, config = parse_named_configuration(data, name, require_configuration=False)
    config = dict(config or {})
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown configuration keys {unknown}; expected some of {list(allowed)}")
    return config


@dataclass(frozen=True)
class BrotliCodec(BytesBytesCodec):
    """Brotli compression, metadata-compatible with imagecodecs-zarr's `imagecodecs_brotli`."""

    is_fixed_size = False
    level: int = BROTLI_DEFAULT_LEVEL
    lgwin: int = BROTLI_DEFAULT_LGWIN
    mode: str | None = None

    def __init__(self, *, level: int | None = None, lgwin: int | None = None, mode: str | None = None) -> None:
        level = BROTLI_DEFAULT_LEVEL if level is None else int(level)
        lgwin = BROTLI_DEFAULT_LGWIN if lgwin is None else int(lgwin)
        if not 0 <= level <= 11 or not 10 <= lgwin <= 24:
            raise ValueError(f"{BROTLI_NAME}: level must be 0..11 and lgwin 10..24, got {level}, {lgwin}")
        if mode is not None and str(mode).upper() not in BROTLI_MODES:
            raise ValueError(f"{BROTLI_NAME}: mode must be one of {BROTLI_MODES}, got {mode!r}")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "lgwin", lgwin)
        object.__setattr__(self, "mode", None if mode is None else str(mode).upper())

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> BrotliCodec:
        return cls(**_config(data, BROTLI_NAME, ("level", "lgwin", "mode")))

    def to_dict(self) -> dict[str, JSON]:
        config: dict[str, JSON] = {"level": self.level, "lgwin": self.lgwin}
        if self.mode is not None:
            config["mode"] = self.mode
        return {"name": BROTLI_NAME, "configuration": config}

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        raw = await asyncio.to_thread(brotli_decompress, chunk_bytes.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(raw)

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        out = await asyncio.to_thread(brotli_compress, chunk_bytes.as_numpy_array(), self.level, self.lgwin,
                                      self.mode)
        return chunk_spec.prototype.buffer.from_bytes(out)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class SnappyCodec(BytesBytesCodec):
    """Snappy compression (raw block format), metadata-compatible with imagecodecs-zarr's `imagecodecs_snappy`."""

    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> SnappyCodec:
        _config(data, SNAPPY_NAME, ())
        return cls()

    def to_dict(self) -> dict[str, JSON]:
        return {"name": SNAPPY_NAME}

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        return chunk_spec.prototype.buffer.from_bytes(snappy_decompress(chunk_bytes.as_numpy_array()))

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        return chunk_spec.prototype.buffer.from_bytes(snappy_compress(chunk_bytes.as_numpy_array()))

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError


def register() -> None:
    """Register both codecs with zarr-python (idempotent); ours is preferred unless the user configured another."""
    import zarr
    from zarr.registry import fully_qualified_name, register_codec

    for name, cls in ((BROTLI_NAME, BrotliCodec), (SNAPPY_NAME, SnappyCodec)):
        register_codec(name, cls)
        if zarr.config.get(f"codecs.{name}", None) is None:  # imagecodecs-zarr may register the same name
            zarr.config.set({f"codecs.{name}": fully_qualified_name(cls)})


register()
