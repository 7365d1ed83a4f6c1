"""Zarr v3 metadata as the specification defines it: check a zarr.json document, parse an array's layout, and
decode chunks with the declared codec chain (numcodecs underneath), independently of zarr-python."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import crc32c
import numpy as np

from transcode.format.shardindex import IndexChecksumError, IndexLayout, ShardIndexError
from transcode.validate.report import ERROR, WARNING

# (severity, code, JSON pointer inside the document, message)
Msg = tuple[str, str, str, str]

CORE_DTYPES = {
    "bool": "|b1", "int8": "|i1", "int16": "<i2", "int32": "<i4", "int64": "<i8",
    "uint8": "|u1", "uint16": "<u2", "uint32": "<u4", "uint64": "<u8",
    "float16": "<f2", "float32": "<f4", "float64": "<f8", "complex64": "<c8", "complex128": "<c16",
}
_RAW = re.compile(r"^r([1-9][0-9]*)$")
ARRAY_KEYS = {"zarr_format", "node_type", "shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value",
              "codecs", "attributes", "dimension_names", "storage_transformers"}
GROUP_KEYS = {"zarr_format", "node_type", "attributes", "consolidated_metadata"}
ARRAY_TO_ARRAY = {"transpose"}
ARRAY_TO_BYTES = {"bytes", "sharding_indexed", "vlen-utf8", "vlen-bytes"}
BYTES_TO_BYTES = {"gzip", "zstd", "blosc", "crc32c", "numcodecs.lz4", "imagecodecs_brotli", "imagecodecs_snappy"}
# configuration keys of the extension compressors `convert --codec` can write (transcode.codecs.spec), and every
# key imagecodecs-zarr writes for Brotli and Snappy (its Snappy may carry a `level`, which Snappy ignores)
EXTENSION_KEYS = {"numcodecs.lz4": {"acceleration"}, "imagecodecs_brotli": {"level", "lgwin", "mode"},
                  "imagecodecs_snappy": {"level"}}
# codecs that zarr-python, tensorstore and zarrs all read (the core spec plus the registered zstd extension)
PORTABLE_CODECS = {"bytes", "transpose", "gzip", "blosc", "crc32c", "sharding_indexed", "zstd"}
BLOSC_CNAMES = ("lz4", "lz4hc", "blosclz", "zstd", "snappy", "zlib")
BLOSC_SHUFFLES = ("noshuffle", "shuffle", "bitshuffle")


def ptr(*parts: Any) -> str:
    """RFC 6901 pointer."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


# ------------------------------------------------------------------------------------------ JSON documents

class NonStandardJSON(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise NonStandardJSON(f"{name} is not valid JSON (strict parsers such as a browser's JSON.parse reject it)")


def parse_json(raw: bytes) -> tuple[Any, str | None]:
    """(document, None) or (None, why it is not a JSON document); NaN/Infinity tokens are rejected."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text: {e}"
    try:
        return json.loads(text, parse_constant=_reject_constant), None
    except NonStandardJSON as e:
        return None, str(e)
    except ValueError as e:
        return None, f"not valid JSON: {e}"


# ------------------------------------------------------------------------------------------ data types

def numpy_dtype(data_type: Any) -> np.dtype | None:
    """The numpy dtype of a core Zarr v3 data type (raw bits as void), or None for anything else."""
    if not isinstance(data_type, str):
        return None
    if data_type in CORE_DTYPES:
        return np.dtype(CORE_DTYPES[data_type])
    m = _RAW.match(data_type)
    if m and int(m.group(1)) % 8 == 0:
        return np.dtype(f"V{int(m.group(1)) // 8}")
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _float_fill(v: Any, itemsize: int) -> float | None:
    """The float a float fill value denotes, or None when it is not a valid one."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if v == "NaN":
        return math.nan
    if v == "Infinity":
        return math.inf
    if v == "-Infinity":
        return -math.inf
    if isinstance(v, str) and re.fullmatch(f"0x[0-9a-fA-F]{{{2 * itemsize}}}", v):
        raw = int(v, 16).to_bytes(itemsize, "big")
        return float(np.frombuffer(raw, dtype=f">f{itemsize}")[0])
    return None


def fill_value(data_type: str, value: Any) -> tuple[Any, str | None]:
    """(numpy scalar, None) or (None, why `value` is not a valid fill value for `data_type`)."""
    dt = numpy_dtype(data_type)
    if dt is None:
        return None, None  # extension type: not ours to judge
    if dt.kind == "b":
        return (np.bool_(value), None) if isinstance(value, bool) else (None, f"{value!r} is not true or false")
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if not _is_int(value):
            return None, f"{value!r} is not an integer"
        if not info.min <= value <= info.max:
            return None, f"{value} is outside the range of {data_type} ({info.min}..{info.max})"
        return dt.type(value), None
    if dt.kind == "f":
        f = _float_fill(value, dt.itemsize)
        if f is None:
            return None, f"{value!r} is not a number, 'NaN', 'Infinity', '-Infinity' or a 0x hex string"
        return dt.type(f), None
    if dt.kind == "c":
        if not (isinstance(value, list) and len(value) == 2):
            return None, f"{value!r} is not a [real, imaginary] pair"
        parts = [_float_fill(p, dt.itemsize // 2) for p in value]
        if None in parts:
            return None, f"{value!r} holds a part that is not a valid float"
        return dt.type(complex(*parts)), None
    if dt.kind == "V":
        if not (isinstance(value, list) and len(value) == dt.itemsize and all(_is_int(b) and 0 <= b <= 255
                                                                               for b in value)):
            return None, f"{value!r} is not a list of {dt.itemsize} byte values"
        return np.frombuffer(bytes(value), dtype=dt)[0], None
    return None, None


# ------------------------------------------------------------------------------------------ codec chains

def _codec(entry: Any) -> tuple[str | None, dict | None, str | None]:
    """(name, configuration, problem) of one codec entry (the short form is a bare name string)."""
    if isinstance(entry, str):
        return entry, {}, None
    if not isinstance(entry, dict):
        return None, None, f"{entry!r} is not a codec object"
    name = entry.get("name")
    if not isinstance(name, str):
        return None, None, "a codec needs a string 'name'"
    config = entry.get("configuration", {})
    if not isinstance(config, dict):
        return name, None, f"{name}: configuration must be an object"
    extra = set(entry) - {"name", "configuration"}
    if extra and not all(isinstance(entry[k], dict) and entry[k].get("must_understand") is False for k in extra):
        return name, config, f"{name}: unexpected keys {sorted(extra)}"
    return name, config, None


def _config_keys(name: str, config: dict, allowed: set[str], p: str) -> list[Msg]:
    extra = sorted(set(config) - allowed)
    return [(ERROR, "zarr-metadata", p + ptr("configuration", k), (f"{name}: unknown configuration key {k!r} "
             f"(allowed: {', '.join(sorted(allowed)) or 'none'})")) for k in extra]


def check_chain(codecs: Any, dtype: np.dtype | None, shape: tuple[int, ...] | None, p: str,
                index: bool = False) -> list[Msg]:
    """Every problem of a codec chain for chunks of `shape` and `dtype` (None: not known, checks skipped)."""
    out: list[Msg] = []
    if not isinstance(codecs, list) or not codecs:
        return [(ERROR, "zarr-metadata", p, "codecs must be a non-empty list")]
    stage = 0  # 0: array->array, 1: after array->bytes, expecting bytes->bytes
    seen_ab = False
    cur_shape = tuple(shape) if shape is not None else None
    for i, entry in enumerate(codecs):
        q = p + ptr(i)
        name, config, problem = _codec(entry)
        if problem:
            out.append((ERROR, "zarr-metadata", q, problem))
        if name is None or config is None:
            continue
        if name in ARRAY_TO_ARRAY:
            if stage:
                out.append((ERROR, "zarr-metadata", q, f"{name} (array -> array) after the array -> bytes codec"))
            out += _check_transpose(config, cur_shape, q)
            order = config.get("order")
            if cur_shape is not None and isinstance(order, list) and sorted(order) == list(range(len(cur_shape))):
                cur_shape = tuple(cur_shape[k] for k in order)
        elif name in ARRAY_TO_BYTES:
            if seen_ab:
                out.append((ERROR, "zarr-metadata", q, f"a second array -> bytes codec ({name}); exactly one allowed"))
            seen_ab, stage = True, 1
            if name == "bytes":
                out += _check_bytes(config, dtype, q)
            elif name == "sharding_indexed":
                if index:
                    out.append((ERROR, "zarr-metadata", q, "sharding_indexed inside a shard index chain"))
                out += check_sharding(config, dtype, cur_shape, q)
            else:
                out += [(WARNING, "zarr-metadata", q, f"{name}: variable-length data type codec, not checked")]
        elif name in BYTES_TO_BYTES:
            if not seen_ab:
                out.append((ERROR, "zarr-metadata", q, f"{name} (bytes -> bytes) before the array -> bytes codec"))
            out += _check_bb(name, config, dtype, q)
            if index and name != "crc32c":
                out.append((ERROR, "zarr-metadata", q, (f"{name}: shard index codecs must have a fixed encoded size "
                            "(bytes and crc32c only)")))
        else:
            out.append((WARNING, "zarr-metadata", q + "/name", (f"unknown codec {name!r}: readers that do not "
                        "implement it cannot decode this array, and this validator does not decode it")))
    if not seen_ab:
        out.append((ERROR, "zarr-metadata", p, "no array -> bytes codec (bytes or sharding_indexed)"))
    return out


def _check_transpose(config: dict, shape: tuple | None, q: str) -> list[Msg]:
    out = _config_keys("transpose", config, {"order"}, q)
    order = config.get("order")
    n = len(shape) if shape is not None else None
    if not (isinstance(order, list) and all(_is_int(k) for k in order) and sorted(order) == list(range(len(order)))):
        out.append((ERROR, "zarr-metadata", q + "/configuration/order",
                    f"transpose: order {order!r} is not a permutation"))
    elif n is not None and len(order) != n:
        out.append((ERROR, "zarr-metadata", q + "/configuration/order", (f"transpose: order has {len(order)} axes, "
                    f"the chunk {n}")))
    return out


def _check_bytes(config: dict, dtype: np.dtype | None, q: str) -> list[Msg]:
    out = _config_keys("bytes", config, {"endian"}, q)
    endian = config.get("endian")
    if endian is None:
        if dtype is not None and dtype.itemsize > 1 and dtype.kind != "V":
            out.append((ERROR, "zarr-metadata", q + "/configuration/endian",
                        f"bytes: 'endian' is required for the {dtype.itemsize}-byte data type"))
    elif endian not in ("little", "big"):
        out.append((ERROR, "zarr-metadata", q + "/configuration/endian",
                    f"bytes: endian {endian!r} is not little or big"))
    return out


def _check_bb(name: str, config: dict, dtype: np.dtype | None, q: str) -> list[Msg]:
    c = q + "/configuration"
    if name == "crc32c":
        return _config_keys(name, config, set(), q)
    if name in EXTENSION_KEYS:
        return _config_keys(name, config, EXTENSION_KEYS[name], q)
    if name == "gzip":
        out = _config_keys(name, config, {"level"}, q)
        if not (_is_int(config.get("level")) and 0 <= config["level"] <= 9):
            out.append((ERROR, "zarr-metadata", c + "/level", f"gzip: level {config.get('level')!r} is not 0..9"))
        return out
    if name == "zstd":
        out = _config_keys(name, config, {"level", "checksum"}, q)
        if not (_is_int(config.get("level")) and -131072 <= config["level"] <= 22):
            out.append((ERROR, "zarr-metadata", c + "/level", (f"zstd: level {config.get('level')!r} is not an integer "
                        "-131072..22")))
        if "checksum" in config and not isinstance(config["checksum"], bool):
            out.append((ERROR, "zarr-metadata", c + "/checksum", "zstd: checksum must be true or false"))
        return out
    # blosc
    out = _config_keys(name, config, {"cname", "clevel", "shuffle", "typesize", "blocksize"}, q)
    if config.get("cname") not in BLOSC_CNAMES:
        out.append((ERROR, "zarr-metadata", c + "/cname", (f"blosc: cname {config.get('cname')!r} is not one of "
                    f"{', '.join(BLOSC_CNAMES)}")))
    if not (_is_int(config.get("clevel")) and 0 <= config["clevel"] <= 9):
        out.append((ERROR, "zarr-metadata", c + "/clevel", f"blosc: clevel {config.get('clevel')!r} is not 0..9"))
    shuffle = config.get("shuffle")
    if shuffle not in BLOSC_SHUFFLES:
        out.append((ERROR, "zarr-metadata", c + "/shuffle", (f"blosc: shuffle {shuffle!r} is not one of "
                    f"{', '.join(BLOSC_SHUFFLES)}")))
    typesize = config.get("typesize")
    if typesize is None:
        if shuffle not in (None, "noshuffle"):
            out.append((ERROR, "zarr-metadata", c + "/typesize", "blosc: typesize is required when shuffling"))
    elif not (_is_int(typesize) and typesize >= 1):
        out.append((ERROR, "zarr-metadata", c + "/typesize", f"blosc: typesize {typesize!r} is not a positive integer"))
    elif dtype is not None and shuffle not in (None, "noshuffle") and typesize != dtype.itemsize:
        out.append((WARNING, "zarr-metadata", c + "/typesize", (f"blosc: typesize {typesize} differs from the data "
                    f"type's {dtype.itemsize} bytes: shuffling works on the wrong element size")))
    if "blocksize" in config and not (_is_int(config["blocksize"]) and config["blocksize"] >= 0):
        out.append((ERROR, "zarr-metadata", c + "/blocksize", (f"blosc: blocksize {config['blocksize']!r} is not an "
                    "integer >= 0")))
    return out


def check_sharding(config: dict, dtype: np.dtype | None, shard_shape: tuple | None, q: str) -> list[Msg]:
    """sharding_indexed: inner chunk shape divides the shard, inner and index chains valid."""
    c = q + "/configuration"
    out = _config_keys("sharding_indexed", config, {"chunk_shape", "codecs", "index_codecs", "index_location"}, q)
    inner = config.get("chunk_shape")
    inner_ok = isinstance(inner, list) and inner and all(_is_int(v) and v >= 1 for v in inner)
    if not inner_ok:
        out.append((ERROR, "zarr-metadata", c + "/chunk_shape", (f"sharding_indexed: chunk_shape {inner!r} is not a "
                    "list of positive integers")))
    elif shard_shape is not None:
        if len(inner) != len(shard_shape):
            out.append((ERROR, "zarr-metadata", c + "/chunk_shape", (f"sharding_indexed: chunk_shape {inner} has "
                        f"{len(inner)} dimensions, the shard {list(shard_shape)} has {len(shard_shape)}")))
        elif any(s % i for s, i in zip(shard_shape, inner)):
            out.append((ERROR, "zarr-metadata", c + "/chunk_shape", (f"sharding_indexed: shard shape "
                        f"{list(shard_shape)} is not a multiple of the inner chunk shape {inner}")))
    out += check_chain(config.get("codecs"), dtype, tuple(inner) if inner_ok else None, c + "/codecs")
    if "index_codecs" not in config:
        out.append((ERROR, "zarr-metadata", c + "/index_codecs", "sharding_indexed: index_codecs is required"))
    else:
        n = len(inner) if inner_ok else None
        out += check_chain(config["index_codecs"], np.dtype("<u8"), None if n is None else (1,) * n + (2,),
                           c + "/index_codecs", index=True)
    loc = config.get("index_location", "end")
    if loc not in ("start", "end"):
        out.append((ERROR, "zarr-metadata", c + "/index_location", (f"sharding_indexed: index_location {loc!r} is not "
                    "start or end")))
    return out


# ------------------------------------------------------------------------------------------ documents

def check_document(doc: Any) -> list[Msg]:
    """Every Zarr v3 problem of one zarr.json document (group or array)."""
    if not isinstance(doc, dict):
        return [(ERROR, "zarr-metadata", "", "zarr.json is not a JSON object")]
    out: list[Msg] = []
    if doc.get("zarr_format") != 3:
        out.append((ERROR, "zarr-metadata", "/zarr_format", f"zarr_format is {doc.get('zarr_format')!r}, not 3"))
    kind = doc.get("node_type")
    if kind not in ("array", "group"):
        out.append((ERROR, "zarr-metadata", "/node_type", f"node_type {kind!r} is not 'array' or 'group'"))
        return out
    allowed = ARRAY_KEYS if kind == "array" else GROUP_KEYS
    for k, v in doc.items():
        if k not in allowed and not (isinstance(v, dict) and v.get("must_understand") is False):
            out.append((ERROR, "zarr-metadata", ptr(k), f"unknown key {k!r} without must_understand: false"))
    if "attributes" in doc and not isinstance(doc["attributes"], dict):
        out.append((ERROR, "zarr-metadata", "/attributes", "attributes must be an object"))
    if kind == "group":
        cm = doc.get("consolidated_metadata")
        if cm is not None and not (isinstance(cm, dict) and isinstance(cm.get("metadata"), dict)):
            out.append((ERROR, "zarr-metadata", "/consolidated_metadata", ("consolidated_metadata must be an object "
                        "with a 'metadata' object")))
        return out
    return out + _check_array(doc)


def _check_array(doc: dict) -> list[Msg]:
    out: list[Msg] = []
    for k in ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs"):
        if k not in doc:
            out.append((ERROR, "zarr-metadata", ptr(k), f"required key {k!r} is missing"))
    shape = doc.get("shape")
    shape_ok = isinstance(shape, list) and all(_is_int(v) and v >= 0 for v in shape)
    if "shape" in doc and not shape_ok:
        out.append((ERROR, "zarr-metadata", "/shape", f"shape {shape!r} is not a list of integers >= 0"))
    dt = doc.get("data_type")
    dtype = numpy_dtype(dt)
    if "data_type" in doc and dtype is None:
        if isinstance(dt, (str, dict)):
            out.append((WARNING, "zarr-metadata", "/data_type", f"data_type {dt!r} is not a core Zarr v3 data type"))
        else:
            out.append((ERROR, "zarr-metadata", "/data_type", f"data_type {dt!r} is not a data type name"))
    if "fill_value" in doc and isinstance(dt, str):
        _, problem = fill_value(dt, doc["fill_value"])
        if problem:
            out.append((ERROR, "zarr-metadata", "/fill_value", f"fill_value for {dt}: {problem}"))
    chunk_shape = None
    grid = doc.get("chunk_grid")
    if "chunk_grid" in doc:
        name, config, problem = _codec(grid)
        if problem or name != "regular":
            out.append((ERROR if problem else WARNING, "zarr-metadata", "/chunk_grid/name",
                        problem or f"chunk grid {name!r} is not 'regular'; chunks not checked"))
        else:
            cs = config.get("chunk_shape")
            if not (isinstance(cs, list) and cs and all(_is_int(v) and v >= 1 for v in cs)):
                out.append((ERROR, "zarr-metadata", "/chunk_grid/configuration/chunk_shape",
                            f"chunk_shape {cs!r} is not a list of positive integers"))
            elif shape_ok and len(cs) != len(shape):
                out.append((ERROR, "zarr-metadata", "/chunk_grid/configuration/chunk_shape",
                            f"chunk_shape has {len(cs)} dimensions, shape {len(shape)}"))
            else:
                chunk_shape = tuple(cs)
    if "chunk_key_encoding" in doc:
        name, config, problem = _codec(doc["chunk_key_encoding"])
        sep = (config or {}).get("separator", "/" if name == "default" else ".")
        if problem or name not in ("default", "v2"):
            out.append((ERROR, "zarr-metadata", "/chunk_key_encoding/name",
                        problem or f"chunk key encoding {name!r} is not 'default' or 'v2'"))
        elif sep not in ("/", "."):
            out.append((ERROR, "zarr-metadata", "/chunk_key_encoding/configuration/separator",
                        f"separator {sep!r} is not '/' or '.'"))
    if "codecs" in doc:
        out += check_chain(doc["codecs"], dtype, chunk_shape, "/codecs")
    names = doc.get("dimension_names")
    if names is not None:
        if not (isinstance(names, list) and all(n is None or isinstance(n, str) for n in names)):
            out.append((ERROR, "zarr-metadata", "/dimension_names",
                        "dimension_names must be a list of strings or nulls"))
        elif shape_ok and len(names) != len(shape):
            out.append((ERROR, "zarr-metadata", "/dimension_names", (f"dimension_names has {len(names)} entries, "
                        f"shape {len(shape)} dimensions")))
    st = doc.get("storage_transformers", [])
    if not isinstance(st, list):
        out.append((ERROR, "zarr-metadata", "/storage_transformers", "storage_transformers must be a list"))
    elif st:
        out.append((WARNING, "zarr-metadata", "/storage_transformers", "storage transformers are not checked"))
    return out


# ------------------------------------------------------------------------------------------ decoding

class DecodeError(ValueError):
    pass


class ChecksumMismatch(DecodeError):
    """The bytes are there but their stored CRC32C does not match them."""


class UnsupportedCodec(ValueError):
    pass


class _Plain:
    """A plain Brotli stream or raw Snappy block (what imagecodecs' zarr codecs write), decoded by the packages."""

    def __init__(self, name: str) -> None:
        package = "brotli" if name == "imagecodecs_brotli" else "snappy"
        try:
            self._module = __import__(package)
        except ImportError:
            raise UnsupportedCodec(f"codec {name!r} needs the {package!r} package") from None
        self.name = name

    def decode(self, data: bytes) -> bytes:
        return self._module.decompress(data)


class Chain:
    """A codec chain for chunks of one shape and dtype that decodes bytes into an array (no sharding inside)."""

    def __init__(self, codecs: list, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        import numcodecs

        self.dtype, self.shape = dtype, tuple(shape)
        self.transposes: list[tuple[int, ...]] = []
        self.endian = "little"
        self.bb: list[tuple[str, Any]] = []
        cur = self.shape
        for entry in codecs:
            name, config, problem = _codec(entry)
            if problem or name is None:
                raise UnsupportedCodec(problem or "bad codec entry")
            config = config or {}
            if name == "transpose":
                order = tuple(config["order"])
                self.transposes.append(order)
                cur = tuple(cur[k] for k in order)
            elif name == "bytes":
                self.endian = config.get("endian", "little")
            elif name == "crc32c":
                self.bb.append(("crc32c", None))
            elif name == "gzip":
                self.bb.append(("codec", numcodecs.GZip(level=config.get("level", 1))))
            elif name == "zstd":
                self.bb.append(("codec", numcodecs.Zstd()))
            elif name == "blosc":
                self.bb.append(("codec", numcodecs.Blosc()))
            elif name == "numcodecs.lz4":
                self.bb.append(("codec", numcodecs.LZ4()))
            elif name in ("imagecodecs_brotli", "imagecodecs_snappy"):
                self.bb.append(("codec", _Plain(name)))
            else:
                raise UnsupportedCodec(f"codec {name!r} is not supported by the validator")
        self.encoded_shape = cur
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * dtype.itemsize

    def decode(self, data: bytes | memoryview) -> np.ndarray:
        buf = data
        for kind, codec in reversed(self.bb):
            if kind == "crc32c":
                if len(buf) < 4:
                    raise DecodeError("shorter than its CRC32C")
                body, tail = bytes(buf[:-4]), bytes(buf[-4:])
                if crc32c.crc32c(body) != int.from_bytes(tail, "little"):
                    raise ChecksumMismatch("CRC32C mismatch")
                buf = body
            else:
                try:
                    buf = codec.decode(bytes(buf))
                except Exception as e:  # noqa: BLE001 - numcodecs raises RuntimeError/ValueError and friends
                    raise DecodeError(f"{type(codec).__name__.lower()} cannot decode: {e}") from None
        raw = memoryview(buf).cast("B") if not isinstance(buf, (bytes, bytearray)) else buf
        if len(raw) != self.nbytes:
            raise DecodeError(f"decodes to {len(raw)} bytes, a chunk of {self.shape} {self.dtype} needs {self.nbytes}")
        dt = self.dtype.newbyteorder("<" if self.endian == "little" else ">") if self.dtype.itemsize > 1 \
            and self.dtype.kind != "V" else self.dtype
        arr = np.frombuffer(raw, dtype=dt).reshape(self.encoded_shape)
        for order in reversed(self.transposes):
            arr = arr.transpose(np.argsort(order))
        return arr


@dataclass(frozen=True)
class ShardLayout:
    """How a `sharding_indexed` shard is laid out: inner chunks, their chain, the index (transcode.format)."""

    inner_shape: tuple[int, ...]
    per_shard: tuple[int, ...]  # inner chunks per shard along each dimension
    inner_codecs: list
    index: IndexLayout

    def parse_index(self, raw: bytes) -> np.ndarray:
        """(n_chunks, 2) uint64 offsets and sizes; DecodeError if the length is wrong, ChecksumMismatch if the
        CRC32C is."""
        try:
            return self.index.decode(raw)
        except IndexChecksumError as e:
            raise ChecksumMismatch(str(e)) from None
        except ShardIndexError as e:
            raise DecodeError(str(e)) from None


class ArraySpec:
    """The parts of a (checked) array document needed to find, read and decode its chunks."""

    def __init__(self, path: str, doc: dict) -> None:
        self.path = path
        self.doc = doc
        self.shape = tuple(doc["shape"])
        self.data_type = doc["data_type"]
        self.dtype = numpy_dtype(self.data_type)
        if self.dtype is None:
            raise UnsupportedCodec(f"data type {self.data_type!r} is not supported by the validator")
        self.fill, _ = fill_value(self.data_type, doc["fill_value"])
        self.chunk_shape = tuple(doc["chunk_grid"]["configuration"]["chunk_shape"])
        enc = doc["chunk_key_encoding"]
        self.key_encoding = enc if isinstance(enc, str) else enc.get("name")
        default_sep = "/" if self.key_encoding == "default" else "."
        self.separator = (enc.get("configuration") or {}).get("separator", default_sep) if isinstance(enc, dict) \
            else default_sep
        self.dimension_names = doc.get("dimension_names")
        self.grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunk_shape))
        codecs = doc["codecs"]
        names = [_codec(c)[0] for c in codecs]
        self.shard: ShardLayout | None = None
        self.unsupported: str | None = None
        if "sharding_indexed" in names:
            i = names.index("sharding_indexed")
            if i != 0 or len(codecs) != 1:
                self.unsupported = "codecs around sharding_indexed: shards cannot be read by range"
                return
            cfg = codecs[i]["configuration"]
            inner = tuple(cfg["chunk_shape"])
            per_shard = tuple(c // i for c, i in zip(self.chunk_shape, inner))
            try:
                index = IndexLayout.from_sharding(math.prod(per_shard), cfg)
            except ShardIndexError as e:
                self.unsupported = f"{e} by the validator"
                return
            self.shard = ShardLayout(inner, per_shard, cfg["codecs"], index)

    @property
    def sharded(self) -> bool:
        return self.shard is not None

    @property
    def inner_shape(self) -> tuple[int, ...]:
        return self.shard.inner_shape if self.shard else self.chunk_shape

    def chain(self) -> Chain:
        """The decoder for one (inner) chunk; UnsupportedCodec if the validator cannot decode it."""
        if self.unsupported:
            raise UnsupportedCodec(self.unsupported)
        codecs = self.shard.inner_codecs if self.shard else self.doc["codecs"]
        return Chain(codecs, self.dtype, self.inner_shape)

    def chunk_key(self, coords: tuple[int, ...]) -> str:
        """Object key (relative to the array) of the chunk (or shard) at grid coordinates `coords`."""
        parts = [str(int(c)) for c in coords]
        if self.key_encoding == "default":
            return "c" + (self.separator + self.separator.join(parts) if parts else "")
        return self.separator.join(parts) if parts else "0"

    def parse_chunk_key(self, rel: str) -> tuple[int, ...] | None:
        """Grid coordinates of a chunk key relative to the array, or None if it is not one (or outside the grid)."""
        if self.key_encoding == "default":
            if rel == "c" and not self.shape:
                return ()
            if not rel.startswith("c" + self.separator):
                return None
            parts = rel[2:].split(self.separator)
        else:
            parts = rel.split(self.separator)
        if len(parts) != len(self.shape) or not all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts):
            return None
        coords = tuple(int(p) for p in parts)
        if any(c >= g for c, g in zip(coords, self.grid)):
            return None
        return coords

    def inner_coords(self, shard_coords: tuple[int, ...], i: int) -> tuple[int, ...]:
        """Array-wide inner chunk grid coordinates of inner chunk `i` (C order) of a shard."""
        local = np.unravel_index(i, self.shard.per_shard)
        return tuple(int(s * p + l) for s, p, l in zip(shard_coords, self.shard.per_shard, local))
