"""Brotli and Snappy as Zarr v3 bytes-to-bytes codecs for zarr-python, on the `brotli` and `python-snappy` packages.

Zarr v3 has no core or zarr-extensions name for either compressor. The only Zarr v3 names in use for them are
`imagecodecs_brotli` and `imagecodecs_snappy`, registered under the `zarr.codecs` entry-point group by the
`imagecodecs-zarr` package (`imagecodecs.zarr.Brotli` / `.Snappy`) and listed by zarr-python's own registry of
known codec packages. We read and write exactly that metadata, so a reader with imagecodecs-zarr installed opens our
stores and we open theirs:

    {"name": "imagecodecs_brotli", "configuration": {"level": 0..11, "lgwin": 10..24}}   # each key optional, "mode" too
    {"name": "imagecodecs_snappy"}                                                      # or {"level": N}, ignored

The chunk bytes are a plain Brotli stream (RFC 7932) and a raw Snappy block (not the framing format), which is
what `imagecodecs.brotli_encode` / `snappy_encode` produce and decode.

Registration: the distribution declares both classes as `zarr.codecs` entry points (pyproject.toml), so an installed
toolkit lets plain `zarr.open_group` read such stores without importing transcode. imagecodecs-zarr declares the
same two names. zarr-python (`zarr.registry`) then loads both classes, keys them by their qualified class names,
and picks the one named by the config key `codecs.<name>`; with none set it warns and takes whichever entry point
came last (an order nobody controls). Importing this module (which zarr does when it loads our entry point, in
whatever order) registers both classes and sets `codecs.<name>` to ours unless the user already chose one, so the
choice is ours, silently, in either order; and since both classes read the same configuration keys and write the
same stream formats, either choice reads every such store.
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
# what imagecodecs-zarr encodes with when the metadata names no level or window (imagecodecs' brotli_encode defaults),
# so such a store gets the same stream settings whichever of the two classes zarr-python picks
BROTLI_DEFAULT_LEVEL = 4
BROTLI_DEFAULT_LGWIN = 22
BROTLI_MODES = ("GENERIC", "TEXT", "FONT")  # brotli.MODE_* = 0, 1, 2; imagecodecs writes the names
BROTLI_CONFIG_KEYS = ("level", "lgwin", "mode")
SNAPPY_CONFIG_KEYS = ("level",)  # imagecodecs-zarr's Snappy takes a `level` and writes it back; Snappy ignores it


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


def _brotli_mode(mode: Any) -> str | None:
    """A Brotli mode as imagecodecs writes it (the name); an int is brotli's MODE_* number."""
    if mode is None:
        return None
    if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode < len(BROTLI_MODES):
        return BROTLI_MODES[mode]
    if isinstance(mode, str) and mode.upper() in BROTLI_MODES:
        return mode
    raise ValueError(f"{BROTLI_NAME}: mode must be one of {BROTLI_MODES}, got {mode!r}")


@dataclass(frozen=True)
class BrotliCodec(BytesBytesCodec):
    """Brotli compression, metadata-compatible with imagecodecs-zarr's `imagecodecs_brotli`.

    A key the metadata leaves out stays out (the library default applies), so reading and re-serialising a
    document changes nothing, exactly as with imagecodecs-zarr's class.
    """

    is_fixed_size = False
    level: int | None = None
    lgwin: int | None = None
    mode: str | None = None

    def __init__(self, *, level: int | None = None, lgwin: int | None = None, mode: str | int | None = None) -> None:
        level = None if level is None else int(level)
        lgwin = None if lgwin is None else int(lgwin)
        if (level is not None and not 0 <= level <= 11) or (lgwin is not None and not 10 <= lgwin <= 24):
            raise ValueError(f"{BROTLI_NAME}: level must be 0..11 and lgwin 10..24, got {level}, {lgwin}")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "lgwin", lgwin)
        object.__setattr__(self, "mode", _brotli_mode(mode))

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> BrotliCodec:
        return cls(**_config(data, BROTLI_NAME, BROTLI_CONFIG_KEYS))

    def to_dict(self) -> dict[str, JSON]:
        config: dict[str, JSON] = {k: v for k, v in (("level", self.level), ("lgwin", self.lgwin),
                                                      ("mode", self.mode)) if v is not None}
        return {"name": BROTLI_NAME, "configuration": config} if config else {"name": BROTLI_NAME}

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        raw = await asyncio.to_thread(brotli_decompress, chunk_bytes.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(raw)

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        level = BROTLI_DEFAULT_LEVEL if self.level is None else self.level
        lgwin = BROTLI_DEFAULT_LGWIN if self.lgwin is None else self.lgwin
        out = await asyncio.to_thread(brotli_compress, chunk_bytes.as_numpy_array(), level, lgwin,
                                      None if self.mode is None else self.mode.upper())
        return chunk_spec.prototype.buffer.from_bytes(out)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class SnappyCodec(BytesBytesCodec):
    """Snappy compression (raw block format), metadata-compatible with imagecodecs-zarr's `imagecodecs_snappy`."""

    is_fixed_size = False
    level: int | None = None  # carried through for imagecodecs-zarr's metadata; Snappy has no levels

    def __init__(self, *, level: int | None = None) -> None:
        object.__setattr__(self, "level", None if level is None else int(level))

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> SnappyCodec:
        return cls(**_config(data, SNAPPY_NAME, SNAPPY_CONFIG_KEYS))

    def to_dict(self) -> dict[str, JSON]:
        if self.level is None:
            return {"name": SNAPPY_NAME}
        return {"name": SNAPPY_NAME, "configuration": {"level": self.level}}

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        return chunk_spec.prototype.buffer.from_bytes(snappy_decompress(chunk_bytes.as_numpy_array()))

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        return chunk_spec.prototype.buffer.from_bytes(snappy_compress(chunk_bytes.as_numpy_array()))

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError


def register() -> None:
    """Register both codecs with zarr-python (idempotent) and make ours the configured choice unless one is set.

    The entry points already register the classes when the distribution is installed; this also covers a source
    tree on sys.path that is not installed.
    """
    import zarr
    from zarr.registry import fully_qualified_name, register_codec

    for name, cls in ((BROTLI_NAME, BrotliCodec), (SNAPPY_NAME, SnappyCodec)):
        register_codec(name, cls)
        if zarr.config.get(f"codecs.{name}", None) is None:  # imagecodecs-zarr may register the same name
            zarr.config.set({f"codecs.{name}": fully_qualified_name(cls)})


register()
