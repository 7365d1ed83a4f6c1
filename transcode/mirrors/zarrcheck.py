"""Zarr-aware evidence: zarr.json documents (and other small objects) read whole and compared byte for byte, with
the JSON difference spelled out; a shard's index fetched with one ranged GET and compared, bodies untouched."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable

import crc32c
import numpy as np

from transcode.format.shardindex import IndexLayout, ShardIndexError, outside
from transcode.mirrors.evidence import KeyCase, Policy
from transcode.storage import Storage, StorageError

SMALL = 256 * 1024  # objects up to this size cost one GET to read whole


class ZarrLayout:
    """Shard index layouts of the store's arrays, from the root zarr.json's consolidated metadata (or each array's
    own zarr.json, read once when a chunk key of an unknown array shows up)."""

    def __init__(self, read: Callable[[str], bytes | None]) -> None:
        self._read = read
        self._specs: dict[str, IndexLayout | None] = {}
        root = self._json("zarr.json")
        nodes = ((root or {}).get("consolidated_metadata") or {}).get("metadata") or {}
        for path, meta in nodes.items():
            self._specs[path] = shard_spec(meta)

    def _json(self, key: str) -> dict | None:
        raw = self._read(key)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def shard(self, key: str) -> IndexLayout | None:
        """The index layout when `key` is a chunk (shard) key of a sharded array, else None."""
        start = 0
        while True:
            idx = key.find("/c/", start)
            if idx < 0:
                return None
            path = key[:idx]
            if path not in self._specs:
                self._specs[path] = shard_spec(self._json(f"{path}/zarr.json") or {})
            spec = self._specs[path]
            if spec is not None:
                return spec
            start = idx + 1


def shard_spec(meta: dict) -> IndexLayout | None:
    """The shard index layout of an array's metadata when it uses `sharding_indexed` with the default chunk key
    encoding, else None."""
    if meta.get("node_type") != "array":
        return None
    codecs = meta.get("codecs") or []
    enc = meta.get("chunk_key_encoding") or {}
    if not codecs or codecs[0].get("name") != "sharding_indexed" or enc.get("name", "default") != "default":
        return None
    if (enc.get("configuration") or {}).get("separator", "/") != "/":
        return None
    try:
        cfg = codecs[0]["configuration"]
        shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
        inner = cfg["chunk_shape"]
        return IndexLayout.from_sharding(math.prod(-(-s // c) for s, c in zip(shard, inner)), cfg)
    except (KeyError, TypeError, ZeroDivisionError, AttributeError, ShardIndexError):
        return None


def check_index(raw: bytes, spec: IndexLayout, size: int) -> str | None:
    """Why a shard index is broken (bad CRC32C, chunks outside the object), or None when sound."""
    try:
        index = spec.decode(raw)
    except ShardIndexError as e:
        return f"shard {e}"
    bad = np.flatnonzero(outside(index, *spec.data_range(size)))
    if bad.size:
        c = int(bad[0])
        return f"shard index entry {c} ({int(index[c, 0])}+{int(index[c, 1])}) lies outside the chunk data"
    return None


def index_difference(a: bytes, b: bytes, spec: IndexLayout) -> str:
    """Which inner chunk entry first differs between two shard indexes."""
    ea, eb = spec.entries(a), spec.entries(b)
    for c in range(spec.n_chunks):
        if c >= len(ea) or c >= len(eb) or tuple(ea[c]) != tuple(eb[c]):
            oa, na = (int(v) for v in ea[c]) if c < len(ea) else (None, None)
            ob, nb = (int(v) for v in eb[c]) if c < len(eb) else (None, None)
            return f"inner chunk {c}: offset/bytes {oa}/{na} vs {ob}/{nb}"
    return "index checksum differs"



def json_difference(a: bytes, b: bytes) -> str:
    """Where two zarr.json documents differ, as a JSON path."""
    try:
        ja, jb = json.loads(a), json.loads(b)
    except ValueError:
        return "not valid JSON on one side"
    if ja == jb:
        return "same JSON, different bytes (formatting)"
    return "JSON differs at " + (_first_path(ja, jb, "") or "the top level")


def _first_path(a, b, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return p + (" (only on one side)")
            if a[k] != b[k]:
                return _first_path(a[k], b[k], p)
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_path(x, y, f"{path}[{i}]")
        return None
    sa, sb = json.dumps(a)[:60], json.dumps(b)[:60]
    return f"{path}: {sa} vs {sb}"


def representatives(case: KeyCase, size: int | None, only: list[int] | None = None) -> list[int]:
    """One right-sized copy per class of proven-equal copies (the lowest mirror index)."""
    seen: dict[int, int] = {}
    for i in only if only is not None else case.present:
        c = case.copies[i]
        if c is not None and c.size == size:
            seen.setdefault(case.find(i), i)
    return sorted(seen.values())


def zarr_evidence(case: KeyCase, pol: Policy, storages: list[Storage], layout: ZarrLayout | None, size: int,
                  read: Callable[[int, str, int, int], bytes]) -> None:
    """Add zarr-level proofs for one key: whole small objects, or shard indexes. `read(i, key, start, n)`
    is a ranged read of mirror i (retried, counted)."""
    reps = representatives(case, size)
    r = case.record if pol.uses_manifest(case.key) else None
    if not reps or (len(reps) == 1 and r is None):
        return
    name = case.key.rsplit("/", 1)[-1]
    if size <= SMALL:
        blobs = {i: read(i, case.key, 0, size) for i in reps}
        for i, data in blobs.items():
            if len(data) != size:
                raise StorageError(storages[i].describe(case.key), "object changed while being verified")
        for x, i in enumerate(reps):
            for j in reps[x + 1:]:
                if blobs[i] == blobs[j]:
                    case.equal(i, j)
                else:
                    why = json_difference(blobs[i], blobs[j]) if name == "zarr.json" else "bytes differ"
                    case.differ(i, j, "zarr", f"{why} ({pol.names[i]} vs {pol.names[j]})")
        if r is not None:
            sums = {i: (hashlib.md5(d).hexdigest(), f"{crc32c.crc32c(d):08x}") for i, d in blobs.items()}
            good = [i for i, sm in sums.items() if sm == (r.md5, r.crc32c)]
            for i, (md5, _) in sums.items():
                if i in good:
                    case.equal(i, case.n)
                    continue
                why = f"MD5 {md5} != {r.md5} in the store manifest"
                if good and name == "zarr.json":
                    why = f"{json_difference(blobs[good[0]], blobs[i])} ({pol.names[i]} vs {pol.names[good[0]]}, " \
                          "which matches the store manifest)"
                case.differ(i, case.n, "zarr", why)
        return
    spec = layout.shard(case.key) if layout is not None else None
    if spec is None or size < spec.nbytes:
        for i in reps:
            case.note(i, "not a shard and too big to read at the zarr level")
        return
    start, length = spec.index_range(size)
    idx = {i: read(i, case.key, start, length) for i in reps}
    broken = {i: check_index(raw, spec, size) for i, raw in idx.items()}
    for x, i in enumerate(reps):
        for j in reps[x + 1:]:
            if idx[i] != idx[j]:
                case.differ(i, j, "zarr", f"shard index differs: {index_difference(idx[i], idx[j], spec)} "
                                          f"({pol.names[i]} vs {pol.names[j]})")
    for i, why in broken.items():
        if why is not None:
            if r is not None:
                case.differ(i, case.n, "zarr", why)
            case.note(i, why)
        else:
            case.note(i, "shard index equal (chunk bodies not compared)")
