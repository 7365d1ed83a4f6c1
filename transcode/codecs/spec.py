"""Codec specs (`blosc:zstd:3:bitshuffle`, `zstd:5`, `brotli:6:22+crc32c`, ...) -> Zarr v3 codec chains and
matching chunk encoders and decoders.

Zarr v3 names written, chosen so that other implementations recognise them (see README "Codec names"):
- `blosc`, `zstd`, `gzip`, `crc32c`: Zarr v3 core / zarr-extensions codecs, read by every implementation;
- `numcodecs.lz4` (configuration `acceleration`): numcodecs' LZ4 (4-byte little-endian size + LZ4 block) as
  registered in zarr-extensions, built into zarr-python and zarrita.js; zarrs and tensorstore have no LZ4;
- `imagecodecs_brotli` (`level`, `lgwin`) and `imagecodecs_snappy`: the names imagecodecs-zarr registers with
  zarr-python, the only Zarr v3 names in use for these compressors (implemented in `transcode.codecs.extracodecs`).
`+crc32c` appends the `crc32c` codec after the compressor: a CRC32C of every stored inner chunk.
"""

from __future__ import annotations

import functools
import gzip
import io

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import crc32c as _crc32c
import numcodecs
import numpy as np

from transcode.errors import UsageError
from transcode.format.arrays import codec_arrays

if TYPE_CHECKING:
    from transcode.codecs.batchencode import BatchEncoder

ARRAYS = codec_arrays()  # the arrays `--codec` chooses for
NAMES = ("blosc", "zstd", "gzip", "brotli", "snappy", "lz4", "none")
BLOSC_CNAMES = ("zstd", "lz4", "lz4hc", "zlib", "blosclz")
BLOSC_SHUFFLES = {"none": "noshuffle", "byte": "shuffle", "bit": "bitshuffle",
                  "noshuffle": "noshuffle", "shuffle": "shuffle", "bitshuffle": "bitshuffle"}
CRC32C_SUFFIX = "+crc32c"
VALID_FORMS = (
    "blosc[:CNAME[:CLEVEL[:SHUFFLE]]]  CNAME in zstd|lz4|lz4hc|zlib|blosclz, CLEVEL 0-9, SHUFFLE none|byte|bit",
    "zstd[:LEVEL[:checksum]]           LEVEL -131072..22",
    "gzip[:LEVEL]                      LEVEL 0-9",
    "brotli[:QUALITY[:WINDOW]]         QUALITY 0-11, WINDOW (log2 bytes) 10-24",
    "lz4[:ACCELERATION]                ACCELERATION 1-65537",
    "snappy                            no parameters",
    "none                              no compression",
    "any of these + '+crc32c'          also store a CRC32C of each inner chunk, e.g. zstd:5+crc32c",
)
DEFAULT_SPEC = "blosc:zstd:3"
DEFAULT_LEVELS = {"blosc": 5, "zstd": 3, "gzip": 5, "brotli": 5, "lz4": 1}
DEFAULT_BROTLI_WINDOW = 22

Encoder = Callable[[np.ndarray], bytes]
Decoder = Callable[[bytes], bytes]


@dataclass(frozen=True)
class CodecSpec:
    """A parsed codec choice for one array; `text` is its canonical spelling."""

    name: str
    cname: str | None = None
    level: int | None = None
    shuffle: str | None = None
    checksum: bool = False
    window: int | None = None
    crc32c: bool = False

    @property
    def text(self) -> str:
        if self.name == "blosc":
            base = f"blosc:{self.cname}:{self.level}" + (f":{self.shuffle}" if self.shuffle else "")
        elif self.name == "zstd":
            base = f"zstd:{self.level}" + (":checksum" if self.checksum else "")
        elif self.name in ("gzip", "lz4"):
            base = f"{self.name}:{self.level}"
        elif self.name == "brotli":
            base = f"brotli:{self.level}:{self.window}"
        else:
            base = self.name
        return base + (CRC32C_SUFFIX if self.crc32c else "")

    def _blosc_shuffle(self, dtype: np.dtype) -> str:
        # zarr-python's own default: bit-shuffle single bytes, byte-shuffle wider types
        return self.shuffle or ("bitshuffle" if dtype.itemsize == 1 else "shuffle")

    def zarr_config(self, dtype: np.dtype) -> list[dict]:
        """The compressor part of the inner chunk codec chain, as Zarr v3 JSON."""
        dtype = np.dtype(dtype)
        chain: list[dict] = []
        if self.name == "blosc":
            chain.append({"name": "blosc", "configuration": {
                "typesize": dtype.itemsize, "cname": self.cname, "clevel": self.level,
                "shuffle": self._blosc_shuffle(dtype), "blocksize": 0}})
        elif self.name == "zstd":
            chain.append({"name": "zstd", "configuration": {"level": self.level, "checksum": self.checksum}})
        elif self.name == "gzip":
            chain.append({"name": "gzip", "configuration": {"level": self.level}})
        elif self.name == "lz4":
            chain.append({"name": "numcodecs.lz4", "configuration": {"acceleration": self.level}})
        elif self.name == "brotli":
            chain.append({"name": "imagecodecs_brotli", "configuration": {"level": self.level, "lgwin": self.window}})
        elif self.name == "snappy":
            chain.append({"name": "imagecodecs_snappy"})
        if self.crc32c:
            chain.append({"name": "crc32c"})
        return chain

    def zarr_compressors(self, dtype: np.dtype) -> list:
        """zarr-python codec objects for `create_array(compressors=...)`."""
        from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec

        dtype = np.dtype(dtype)
        codecs: list = []
        if self.name == "blosc":
            codecs.append(BloscCodec(cname=self.cname, clevel=self.level, shuffle=self._blosc_shuffle(dtype),
                                     typesize=dtype.itemsize, blocksize=0))
        elif self.name == "zstd":
            codecs.append(ZstdCodec(level=self.level, checksum=self.checksum))
        elif self.name == "gzip":
            codecs.append(GzipCodec(level=self.level))
        elif self.name == "lz4":
            from zarr.codecs.numcodecs import LZ4

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "not in the Zarr v3 specification": `codecs` says so, per reader
                codecs.append(LZ4(acceleration=self.level))
        elif self.name == "brotli":
            from transcode.codecs.extracodecs import BrotliCodec

            codecs.append(BrotliCodec(level=self.level, lgwin=self.window))
        elif self.name == "snappy":
            from transcode.codecs.extracodecs import SnappyCodec

            codecs.append(SnappyCodec())
        if self.crc32c:
            codecs.append(Crc32cCodec())
        return codecs

    def encoder(self, dtype: np.dtype) -> Encoder:
        """Encode one C-ordered inner chunk exactly as the chain in `zarr_config` would."""
        compress = self._compressor(np.dtype(dtype))
        if not self.crc32c:
            return compress

        def with_crc(a: np.ndarray) -> bytes:
            data = compress(a)
            return data + _crc32c.crc32c(data).to_bytes(4, "little")
        return with_crc

    def batch_encoder(self, dtype: np.dtype, chunk_nbytes: int) -> BatchEncoder | None:
        """A C loop giving `encoder`'s bytes for many inner chunks per call (Blosc without +crc32c), else None."""
        from transcode.codecs.batchencode import batch_encoder

        if self.name != "blosc" or self.crc32c:
            return None
        dtype = np.dtype(dtype)
        return batch_encoder(self.cname, self.level, self._blosc_shuffle(dtype), dtype.itemsize, chunk_nbytes)

    def decoder(self, dtype: np.dtype) -> Decoder:
        """Decode one stored inner chunk back to its raw C-order bytes (verifying the CRC32C if there is one)."""
        decompress = self._decompressor(np.dtype(dtype))
        if not self.crc32c:
            return decompress

        def check_crc(data: bytes) -> bytes:
            body, stored = data[:-4], int.from_bytes(data[-4:], "little")
            if _crc32c.crc32c(body) != stored:
                raise ValueError("CRC32C of the inner chunk does not match")
            return decompress(body)
        return check_crc

    def _numcodec(self, dtype: np.dtype):
        if self.name == "blosc":
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[self._blosc_shuffle(dtype)]
            return numcodecs.Blosc(cname=self.cname, clevel=self.level, shuffle=shuffle, blocksize=0,
                                   typesize=dtype.itemsize)
        if self.name == "zstd":
            return numcodecs.Zstd(level=self.level, checksum=self.checksum)
        if self.name == "gzip":
            return numcodecs.GZip(level=self.level)
        if self.name == "lz4":
            return numcodecs.LZ4(acceleration=self.level)
        return None

    def _compressor(self, dtype: np.dtype) -> Encoder:
        from transcode.codecs import extracodecs as x

        if self.name == "brotli":
            level, window = self.level, self.window
            return lambda a: x.brotli_compress(a, level, window)
        if self.name == "snappy":
            return x.snappy_compress
        if self.name == "gzip":
            # numcodecs' GZip stamps the current time into every header; a zero MTIME (RFC 1952: "no time stamp")
            # gives the same stream with bytes that depend only on the data, as resume and mirrors need
            return functools.partial(_gzip_no_time, level=self.level)
        codec = self._numcodec(dtype)
        if codec is None:
            return lambda a: a.tobytes()
        return lambda a: bytes(codec.encode(a))

    def _decompressor(self, dtype: np.dtype) -> Decoder:
        from transcode.codecs import extracodecs as x

        if self.name == "brotli":
            return x.brotli_decompress
        if self.name == "snappy":
            return x.snappy_decompress
        codec = self._numcodec(dtype)
        if codec is None:
            return bytes
        return lambda data: bytes(codec.decode(data))


def _int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None
    if not lo <= n <= hi:
        raise ValueError(f"{what} must be in {lo}..{hi}, got {n}")
    return n


def _parse(name: str, args: list[str]) -> CodecSpec:
    """The spec without its `+crc32c` suffix; ValueError naming the problem."""
    if name == "blosc":
        if len(args) > 3:
            raise ValueError("too many fields")
        cname = args[0] if args else "zstd"
        if cname not in BLOSC_CNAMES:
            raise ValueError(f"unknown blosc compressor {cname!r}")
        level = _int(args[1], "blosc level", 0, 9) if len(args) > 1 else DEFAULT_LEVELS["blosc"]
        shuffle = None
        if len(args) > 2:
            if args[2] not in BLOSC_SHUFFLES:
                raise ValueError(f"unknown shuffle {args[2]!r}")
            shuffle = BLOSC_SHUFFLES[args[2]]
        return CodecSpec("blosc", cname, level, shuffle)
    if name == "zstd":
        if len(args) > 2 or (len(args) == 2 and args[1] != "checksum"):
            raise ValueError("expected zstd[:LEVEL[:checksum]]")
        level = _int(args[0], "zstd level", -131072, 22) if args else DEFAULT_LEVELS["zstd"]
        return CodecSpec("zstd", level=level, checksum=len(args) == 2)
    if name == "gzip":
        if len(args) > 1:
            raise ValueError("expected gzip[:LEVEL]")
        return CodecSpec("gzip", level=_int(args[0], "gzip level", 0, 9) if args else DEFAULT_LEVELS["gzip"])
    if name == "brotli":
        if len(args) > 2:
            raise ValueError("expected brotli[:QUALITY[:WINDOW]]")
        level = _int(args[0], "brotli quality", 0, 11) if args else DEFAULT_LEVELS["brotli"]
        window = _int(args[1], "brotli window", 10, 24) if len(args) > 1 else DEFAULT_BROTLI_WINDOW
        return CodecSpec("brotli", level=level, window=window)
    if name == "lz4":
        if len(args) > 1:
            raise ValueError("expected lz4[:ACCELERATION]")
        return CodecSpec("lz4", level=_int(args[0], "lz4 acceleration", 1, 65537) if args else DEFAULT_LEVELS["lz4"])
    if name in ("snappy", "none"):
        if args:
            raise ValueError(f"{name} takes no parameters")
        return CodecSpec(name)
    raise ValueError(f"unknown codec {name!r}")


def parse_codec_spec(text: str) -> CodecSpec:
    """Parse one codec spec; UsageError naming the problem and listing the valid forms."""
    body = text.strip().lower()
    crc = body.endswith(CRC32C_SUFFIX)
    body = body.removesuffix(CRC32C_SUFFIX) if crc else body
    parts = body.split(":")
    try:
        if "+" in body:
            extra = body[body.index("+"):]
            raise ValueError(f"{CRC32C_SUFFIX!r} given twice" if extra == CRC32C_SUFFIX
                             else f"unknown suffix {extra!r}; the only one is {CRC32C_SUFFIX!r}")
        spec = _parse(parts[0], parts[1:])
    except ValueError as e:
        raise UsageError(f"codec spec {text!r}", f"{e}; valid forms:\n  " + "\n  ".join(VALID_FORMS)) from None
    return CodecSpec(spec.name, spec.cname, spec.level, spec.shuffle, spec.checksum, spec.window, crc)


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


def spec_from_zarr_config(chain: list[dict]) -> CodecSpec:
    """Inverse of `CodecSpec.zarr_config`: the spec an inner chunk codec chain (after `bytes`) was written from.

    ValueError for chains this toolkit does not write (the validator reports those as not portable)."""
    chain = [c if isinstance(c, dict) else {"name": c} for c in chain]
    crc = bool(chain) and chain[-1].get("name") == "crc32c"
    body = chain[:-1] if crc else chain
    if len(body) > 1:
        raise ValueError(f"more than one compressor: {[c.get('name') for c in body]}")
    if not body:
        return CodecSpec("none", crc32c=crc)
    name, cfg = body[0].get("name"), body[0].get("configuration") or {}
    if name == "blosc":
        return CodecSpec("blosc", cfg.get("cname"), cfg.get("clevel"), cfg.get("shuffle"), crc32c=crc)
    if name == "zstd":
        return CodecSpec("zstd", level=cfg.get("level"), checksum=bool(cfg.get("checksum")), crc32c=crc)
    if name == "gzip":
        return CodecSpec("gzip", level=cfg.get("level"), crc32c=crc)
    if name == "numcodecs.lz4":
        return CodecSpec("lz4", level=cfg.get("acceleration", 1), crc32c=crc)
    if name == "imagecodecs_brotli":
        return CodecSpec("brotli", level=cfg.get("level"), window=cfg.get("lgwin"), crc32c=crc)
    if name == "imagecodecs_snappy":
        return CodecSpec("snappy", crc32c=crc)
    raise ValueError(f"codec {name!r} is not one tessera-transcode writes")


def _gzip_no_time(a: np.ndarray, level: int) -> bytes:
    """numcodecs' GZip stream for one chunk, with the header's MTIME field 0."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0) as f:
        f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
    return out.getvalue()
