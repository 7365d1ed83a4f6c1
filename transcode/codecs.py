"""Codec specs (`blosc:zstd:3:bitshuffle`, `zstd:5`, ...) -> Zarr v3 codec chains and matching chunk encoders."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numcodecs
import numpy as np

from transcode.errors import UsageError

ARRAYS = ("embeddings", "scales")
BLOSC_CNAMES = ("zstd", "lz4", "lz4hc", "zlib", "blosclz")
BLOSC_SHUFFLES = {"none": "noshuffle", "byte": "shuffle", "bit": "bitshuffle",
                  "noshuffle": "noshuffle", "shuffle": "shuffle", "bitshuffle": "bitshuffle"}
VALID_FORMS = (
    "blosc[:CNAME[:CLEVEL[:SHUFFLE]]]  CNAME in zstd|lz4|lz4hc|zlib|blosclz, CLEVEL 0-9, SHUFFLE none|byte|bit",
    "zstd[:LEVEL[:checksum]]           LEVEL -131072..22",
    "gzip[:LEVEL]                      LEVEL 0-9",
    "none                              no compression",
)
DEFAULT_SPEC = "blosc:zstd:3"

Encoder = Callable[[np.ndarray], bytes]


@dataclass(frozen=True)
class CodecSpec:
    """A parsed codec choice for one array; `text` is its canonical spelling."""

    name: str
    cname: str | None = None
    level: int | None = None
    shuffle: str | None = None
    checksum: bool = False

    @property
    def text(self) -> str:
        if self.name == "blosc":
            return f"blosc:{self.cname}:{self.level}" + (f":{self.shuffle}" if self.shuffle else "")
        if self.name == "zstd":
            return f"zstd:{self.level}" + (":checksum" if self.checksum else "")
        if self.name == "gzip":
            return f"gzip:{self.level}"
        return "none"

    def _blosc_shuffle(self, dtype: np.dtype) -> str:
        # zarr-python's own default: bit-shuffle single bytes, byte-shuffle wider types
        return self.shuffle or ("bitshuffle" if dtype.itemsize == 1 else "shuffle")

    def zarr_config(self, dtype: np.dtype) -> list[dict]:
        """The compressor part of the inner chunk codec chain, as Zarr v3 JSON."""
        dtype = np.dtype(dtype)
        if self.name == "blosc":
            return [{"name": "blosc", "configuration": {"typesize": dtype.itemsize, "cname": self.cname,
                                                        "clevel": self.level, "shuffle": self._blosc_shuffle(dtype),
                                                        "blocksize": 0}}]
        if self.name == "zstd":
            return [{"name": "zstd", "configuration": {"level": self.level, "checksum": self.checksum}}]
        if self.name == "gzip":
            return [{"name": "gzip", "configuration": {"level": self.level}}]
        return []

    def zarr_compressors(self, dtype: np.dtype) -> list:
        """zarr-python codec objects for `create_array(compressors=...)`."""
        from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

        dtype = np.dtype(dtype)
        if self.name == "blosc":
            return [BloscCodec(cname=self.cname, clevel=self.level, shuffle=self._blosc_shuffle(dtype),
                               typesize=dtype.itemsize, blocksize=0)]
        if self.name == "zstd":
            return [ZstdCodec(level=self.level, checksum=self.checksum)]
        if self.name == "gzip":
            return [GzipCodec(level=self.level)]
        return []

    def encoder(self, dtype: np.dtype) -> Encoder:
        """Encode one C-ordered inner chunk exactly as the chain in `zarr_config` would."""
        dtype = np.dtype(dtype)
        if self.name == "blosc":
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[self._blosc_shuffle(dtype)]
            codec = numcodecs.Blosc(cname=self.cname, clevel=self.level, shuffle=shuffle, blocksize=0,
                                    typesize=dtype.itemsize)
        elif self.name == "zstd":
            codec = numcodecs.Zstd(level=self.level, checksum=self.checksum)
        elif self.name == "gzip":
            codec = numcodecs.GZip(level=self.level)
        else:
            return lambda a: a.tobytes()
        return lambda a: bytes(codec.encode(a))


def _int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None
    if not lo <= n <= hi:
        raise ValueError(f"{what} must be in {lo}..{hi}, got {n}")
    return n


def parse_codec_spec(text: str) -> CodecSpec:
    """Parse one codec spec; UsageError naming the problem and listing the valid forms."""
    parts = text.strip().lower().split(":")
    name, args = parts[0], parts[1:]
    try:
        if name == "blosc":
            if len(args) > 3:
                raise ValueError("too many fields")
            cname = args[0] if args else "zstd"
            if cname not in BLOSC_CNAMES:
                raise ValueError(f"unknown blosc compressor {cname!r}")
            level = _int(args[1], "blosc level", 0, 9) if len(args) > 1 else 5
            shuffle = None
            if len(args) > 2:
                if args[2] not in BLOSC_SHUFFLES:
                    raise ValueError(f"unknown shuffle {args[2]!r}")
                shuffle = BLOSC_SHUFFLES[args[2]]
            return CodecSpec("blosc", cname, level, shuffle)
        if name == "zstd":
            if len(args) > 2 or (len(args) == 2 and args[1] != "checksum"):
                raise ValueError("expected zstd[:LEVEL[:checksum]]")
            level = _int(args[0], "zstd level", -131072, 22) if args else 3
            return CodecSpec("zstd", level=level, checksum=len(args) == 2)
        if name == "gzip":
            if len(args) > 1:
                raise ValueError("expected gzip[:LEVEL]")
            return CodecSpec("gzip", level=_int(args[0], "gzip level", 0, 9) if args else 5)
        if name == "none" and not args:
            return CodecSpec("none")
        raise ValueError(f"unknown codec {name!r}")
    except ValueError as e:
        raise UsageError(f"codec spec {text!r}", f"{e}; valid forms:\n  " + "\n  ".join(VALID_FORMS)) from None


def parse_codec_options(options: Iterable[str] | None) -> dict[str, CodecSpec]:
    """`--codec embeddings=SPEC` / `--codec scales=SPEC` / `--codec SPEC` (both) -> spec per array."""
    specs = {a: parse_codec_spec(DEFAULT_SPEC) for a in ARRAYS}
    for opt in options or []:
        target, sep, spec = opt.partition("=")
        if not sep:
            for a in ARRAYS:
                specs[a] = parse_codec_spec(opt)
        elif target in ARRAYS:
            specs[target] = parse_codec_spec(spec)
        else:
            raise UsageError(f"--codec {opt}", f"unknown array {target!r}; use embeddings=SPEC or scales=SPEC")
    return specs
