"""The structure level: every object belongs to a node or is a valid chunk/shard key (else an orphan); every shard
index is read with ONE ranged read of its tail, its CRC32C checked, its chunks inside the object and not
overlapping; embeddings and scales shards pair up; missing shards are coverage, per zone and year, not errors."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from transcode.errors import StorageError, TransientStorageError
from transcode.format.arrays import EMBEDDINGS, SCALES, TIME, ArrayDecl, sharded_arrays
from transcode.format.attributes import depths_of
from transcode.format.keys import group_zone
from transcode.format.shardindex import EMPTY, outside, present
from transcode.format.sidecar import in_sidecar
from transcode.storage import Storage, join_key
from transcode.validate.nodes import Node, StoreView
from transcode.validate.report import ERROR, INFO, WARNING, Finding, ValidationReport
from transcode.validate.stretch import check_coverage
from transcode.validate.zarrspec import ArraySpec, ChecksumMismatch, DecodeError, ShardLayout

LEVEL = "structure"
MAX_PER_SHARD = 10  # chunk findings listed per shard before summarising the rest


@dataclass
class ShardObject:
    """One shard object as listed, and what its index said."""

    array: str
    key: str
    size: int
    coords: tuple[int, ...]
    written: int | None = None  # inner chunks present; None when the index is unusable
    sound: bool = False  # index read, CRC good, every chunk inside the object, no overlap


@dataclass
class StructureResult:
    """Objects of the store by role."""

    shards: dict[str, ShardObject] = field(default_factory=dict)  # key -> shard
    chunks: dict[str, list[tuple[str, int, tuple]]] = field(default_factory=lambda: defaultdict(list))
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (embeddings shard key, scales shard key)


def check_index(index: np.ndarray, layout: ShardLayout, size: int) -> list[tuple[str, str, int | None, str]]:
    """Problems of a decoded shard index: (severity, code, inner chunk or None, message)."""
    out: list[tuple[str, str, int | None, str]] = []
    off, n = index[:, 0], index[:, 1]
    half = (off == EMPTY) != (n == EMPTY)
    for i in np.flatnonzero(half):
        out.append((ERROR, "shard-index", int(i), "index entry has one of offset/size set to 2^64-1 but not both"))
    lo, hi = layout.index.data_range(size)
    stored = np.flatnonzero(present(index) & ~half)
    o, m = off[stored], n[stored]
    beyond = outside(index[stored], lo, hi)
    for j in np.flatnonzero(beyond):
        i = int(stored[j])
        out.append((ERROR, "shard-bounds", i, (f"chunk bytes {int(o[j])}..{int(o[j]) + int(m[j]) - 1} lie outside the "
                    f"object's chunk region {lo}..{hi - 1} (object {size} bytes: truncated or bad index)")))
    for j in np.flatnonzero(m == 0):
        out.append((ERROR, "shard-index", int(stored[j]),
                    "index entry of size 0: no codec encodes a chunk in 0 bytes"))
    inside = ~beyond
    if inside.sum() > 1:
        order = np.argsort(o[inside], kind="stable")
        idx = stored[inside][order]
        starts, ends = o[inside][order], o[inside][order] + m[inside][order]
        prev_end = np.maximum.accumulate(ends)[:-1]
        for j in np.flatnonzero(starts[1:] < prev_end):
            out.append((ERROR, "shard-overlap", int(idx[j + 1]), (f"chunk bytes {int(starts[j + 1])}.."
                        f"{int(ends[j + 1]) - 1} overlap an earlier chunk of the shard")))
    if inside.any() and not out:
        used = int(m[inside].sum())
        gap = (hi - lo) - used
        if gap > 0:
            out.append((INFO, "shard-gap", None, f"{gap} bytes of the chunk region are referenced by no chunk"))
    return out


def _shard_task(storage: Storage, spec: ArraySpec, shard: ShardObject) -> tuple[list[Finding], np.ndarray | None, int]:
    """Read one index tail (one ranged read) and check it; (findings, presence mask or None, bytes read)."""
    layout = spec.shard
    findings: list[Finding] = []
    start, length = layout.index.index_range(shard.size)
    if shard.size < layout.index.nbytes:
        findings.append(Finding(ERROR, LEVEL, "shard-truncated", shard.key, f"object is {shard.size} bytes, shorter "
                                f"than its {layout.index.nbytes}-byte shard index"))
        return findings, None, 0
    try:
        raw = storage.read_range(shard.key, start, length)
    except TransientStorageError:
        raise  # says nothing about the shard: the run stops rather than report it broken
    except StorageError as e:
        findings.append(Finding(ERROR, LEVEL, "shard-unreadable", shard.key,
                                f"cannot read the shard index: {e.reason}"))
        return findings, None, 0
    try:
        index = layout.parse_index(raw)
    except DecodeError as e:
        code = "shard-crc" if isinstance(e, ChecksumMismatch) else "shard-index"
        findings.append(Finding(ERROR, LEVEL, code, shard.key,
                                f"shard index unusable: {e} (truncated or overwritten shard)",
                                details={"index_offset": start, "index_bytes": length}))
        return findings, None, len(raw)
    problems = check_index(index, layout, shard.size)
    for sev, code, i, msg in problems[:MAX_PER_SHARD]:
        findings.append(Finding(sev, LEVEL, code, shard.key, msg,
                                chunk=spec.inner_coords(shard.coords, i) if i is not None else None))
    if len(problems) > MAX_PER_SHARD:
        findings.append(Finding(ERROR, LEVEL, "shard-index", shard.key,
                                f"... and {len(problems) - MAX_PER_SHARD} more index problems in this shard"))
    stored = present(index)
    shard.written = int(stored.sum())
    shard.sound = not any(sev == ERROR for sev, *_ in problems)
    if shard.written == 0:
        findings.append(Finding(WARNING, LEVEL, "shard-empty", shard.key, "shard holds no chunk (shards without "
                                "data are never written)"))
    return findings, stored, len(raw)


def check_structure(view: StoreView, profile: str, report: ValidationReport, workers: int = 1,
                    progress: bool = False, time_values: dict[str, list[int]] | None = None) -> StructureResult:
    """List the store once, classify every object, read every shard index; findings go into `report`."""
    storage = view.storage
    result = StructureResult()
    arrays = {n.path: n for n in view.arrays()}
    orphans_by_owner: dict[str, list[str]] = defaultdict(list)
    listed = Counter()
    try:
        objects = storage.list()
        for obj in tqdm(objects, desc="listing", unit="obj", disable=not progress):
            listed["objects"] += 1
            listed["bytes"] += obj.size
            key = obj.key
            if in_sidecar(key):
                listed["sidecar"] += 1
                continue
            parts = key.split("/")
            name = parts[-1]
            parent = "/".join(parts[:-1])
            if name == "zarr.json" and parent in view.nodes:
                listed["metadata"] += 1
                continue
            owner = None
            for k in range(len(parts) - 1, 0, -1):
                p = "/".join(parts[:k])
                if p in arrays or p in view.nodes:
                    owner = p
                    break
            node = arrays.get(owner) if owner is not None else None
            if node is not None and node.spec is not None:
                rel = key[len(owner) + 1:]
                coords = node.spec.parse_chunk_key(rel)
                if coords is not None:
                    if node.spec.sharded:
                        result.shards[key] = ShardObject(owner, key, obj.size, coords)
                    else:
                        result.chunks[owner].append((key, obj.size, coords))
                    continue
                why = f"not a chunk key of array /{owner} (grid {list(node.spec.grid)})"
            elif owner is not None and owner in view.nodes and (view.nodes[owner].doc is None or
                                                                 view.nodes[owner].is_array):
                orphans_by_owner[owner].append(key)  # the node's zarr.json is broken: reported at metadata
                continue
            elif name.startswith(".") and name.endswith(".partial"):
                why = "temporary object left by an interrupted write"
            elif name == "zarr.json":
                why = "zarr.json of a node not reachable from the root (its parent directory has no zarr.json)"
            else:
                why = "belongs to no node"
            report.add(Finding(WARNING, LEVEL, "orphan", key, f"orphan object ({obj.size} bytes): {why}"))
    except TransientStorageError:
        raise
    except StorageError as e:
        report.add(Finding(ERROR, LEVEL, "unreadable", "", f"cannot list the store: {e.reason}"))
    for owner, keys in sorted(orphans_by_owner.items()):
        report.add(Finding(WARNING, LEVEL, "unchecked", keys[0], f"{len(keys)} objects under /{owner} not checked: "
                           f"its zarr.json is unusable (see metadata findings)", details={"node": owner}))
    report.counters["objects_listed"] += listed["objects"]
    report.counters["bytes_listed"] += listed["bytes"]

    # shard indexes: one ranged read each; tessera pairs are read together so chunk presence can be compared
    groups = {n.parent or "" for n in arrays.values()}
    tessera = profile in ("tessera", "interop")
    paired: set[str] = set()
    jobs: list[tuple] = []
    by_array: dict[str, list[ShardObject]] = defaultdict(list)
    for sh in result.shards.values():
        by_array[sh.array].append(sh)
    try:
        depths = depths_of(view.nodes[""].attrs) if "" in view.nodes else ()
    except ValueError:
        depths = ()  # geoemb:depths unusable: reported at the metadata level
    if tessera:
        for g in sorted(groups):
            if group_zone(g) is not None:
                paired |= _pair_shards(g, arrays, by_array, result, jobs, report, depths)
    for key, sh in result.shards.items():
        if key not in paired:
            jobs.append(("single", arrays[sh.array].spec, sh))
    lock = threading.Lock()
    unpaired: Counter = Counter()  # inner chunks stored in one array of a pair but not in the other

    def run(job) -> list[Finding]:
        one_sided: dict[str, int] = {}
        try:
            if job[0] == "single":
                found, _, n = _shard_task(storage, job[1], job[2])
                nread = 1
            else:
                _, es, eo, ss, so = job
                f1, m1, n1 = _shard_task(storage, es, eo)
                f2, m2, n2 = _shard_task(storage, ss, so)
                found, n, nread = f1 + f2, n1 + n2, 2
                if m1 is not None and m2 is not None:
                    one_sided = {"embeddings": int((m2 & ~m1).sum()),  # read as zeros: the content level judges
                                 "scales": int((m1 & ~m2).sum())}  # read as +inf (no data): likewise
        except TransientStorageError:
            raise
        except Exception as e:  # noqa: BLE001 - never crash on a corrupted store
            found, n, nread = [Finding(ERROR, LEVEL, "internal", job[2].key, f"shard not checked: "
                                       f"{type(e).__name__}: {e}")], 0, 0
        with lock:
            unpaired.update(one_sided)
            report.counters["shard_indexes"] += nread
            report.counters["bytes_read"] += n
        return found

    bar = tqdm(total=sum(1 if j[0] == "single" else 2 for j in jobs), desc="shard indexes", unit="shard",
               disable=not progress)
    with ThreadPoolExecutor(max_workers=max(4, min(32, 8 * workers))) as pool:
        for job, found in zip(jobs, pool.map(run, jobs)):
            report.extend(found)
            bar.update(1 if job[0] == "single" else 2)
    bar.close()
    _report_unpaired(unpaired, report)
    if tessera:
        check_coverage(view, ((sh.array, sh.coords) for sh in result.shards.values()), report)
    report.coverage = coverage(view, result, time_values or {})
    return result


def _report_unpaired(unpaired: Counter, report: ValidationReport) -> None:
    """Inner chunks stored in only one array of an embeddings/scales pair. Legitimate (docs/format.md, "Chunking and
    sharding"): zarr-python leaves out chunks equal to the fill value, so geotessera omits all-zero embeddings
    chunks beside water scales and, writing an all-zero shard whole, stores zero chunks where scales are +inf. The
    content level decodes them and reports any that is not what the absent side reads as."""
    if unpaired["embeddings"]:
        report.add(Finding(INFO, LEVEL, "chunk-pairing", "", f"{unpaired['embeddings']} inner chunks of embeddings "
                           "are not stored beside a stored scales chunk: they read as zeros (all-zero chunks "
                           "left out); the content level checks that their pixels are water or empty",
                           details={"chunks": unpaired["embeddings"], "absent": EMBEDDINGS.name}))
    if unpaired["scales"]:
        report.add(Finding(INFO, LEVEL, "chunk-pairing", "", f"{unpaired['scales']} inner chunks of scales are not "
                           "stored beside a stored embeddings chunk: their pixels read as +inf (no data); the "
                           "content level checks that those embeddings are zeros",
                           details={"chunks": unpaired["scales"], "absent": SCALES.name}))
    if unpaired["embeddings"] or unpaired["scales"]:
        report.counters["unpaired_chunks"] += unpaired["embeddings"] + unpaired["scales"]


def _pair_shards(group: str, arrays: dict[str, Node], by_array: dict[str, list[ShardObject]],
                 result: StructureResult, jobs: list[tuple], report: ValidationReport,
                 depths: tuple[int, ...] = ()) -> set[str]:
    """Every sharded array of a zone group has a shard at the same (year, shard row, shard column) as each other
    one (a shard set is written together); embeddings and scales shards are read as pairs so their chunk presence
    can be compared. Returns the keys of the shards queued as pairs."""
    decls = sharded_arrays(depths)  # embeddings, scales and the nested depths: written together, shard by shard
    nodes = [arrays.get(join_key(group, d.name)) for d in decls]
    if not all(_shardable(n, d) for n, d in zip(nodes, decls)) or \
            len({d.spatial(n.spec.chunk_shape) for n, d in zip(nodes, decls)}) > 1:
        return set()  # the metadata level reports arrays that are missing or whose shards cannot pair
    sets: dict[tuple[int, int, int], dict[str, ShardObject]] = defaultdict(dict)
    for n, d in zip(nodes, decls):
        t = d.dims.index(TIME.name)
        for sh in by_array[n.path]:
            sets[(sh.coords[t], *d.spatial(sh.coords))][d.name] = sh
    paired: set[str] = set()
    emb, sc = nodes[decls.index(EMBEDDINGS)], nodes[decls.index(SCALES)]
    chunks_pair = EMBEDDINGS.spatial(emb.spec.shard.inner_shape) == SCALES.spatial(sc.spec.shard.inner_shape)
    for (t, row, col), members in sets.items():  # in listing order of the first array's shards
        for d in decls:
            if d.name in members:
                continue
            other = d.shard_key(group, t, row, col)
            for name, sh in members.items():
                report.add(Finding(ERROR, LEVEL, "shard-pairing", sh.key, f"{name} shard has no {d.name} shard "
                                   f"beside it ({other})", details={"missing": other}))
        e, s = members.get(EMBEDDINGS.name), members.get(SCALES.name)
        if e is not None and s is not None and chunks_pair:
            jobs.append(("pair", emb.spec, e, sc.spec, s))
            paired |= {e.key, s.key}
            result.pairs.append((e.key, s.key))
    return paired


def _shardable(node: Node | None, decl: ArrayDecl) -> bool:
    return node is not None and node.spec is not None and node.spec.sharded and len(node.spec.shape) == len(decl.dims)



def coverage(view: StoreView, result: StructureResult, time_values: dict[str, list[int]]) -> list[dict]:
    """Present / possible shards (or chunks) of every array with two or more dimensions, per time step."""
    out = []
    present: dict[str, Counter] = defaultdict(Counter)
    for sh in result.shards.values():
        present[sh.array][sh.coords[0]] += 1
    for path, chunks in result.chunks.items():
        for _, _, coords in chunks:
            present[path][coords[0] if coords else 0] += 1
    for node in sorted(view.arrays(), key=lambda n: n.path):
        spec = node.spec
        if spec is None or len(spec.shape) < 2:
            continue
        group = node.parent or ""
        by_time = bool(spec.dimension_names) and spec.dimension_names[0] == "time" and spec.chunk_shape[0] == 1
        years = time_values.get(group)
        per_step = int(np.prod(spec.grid[1:], dtype=np.int64)) if by_time else int(np.prod(spec.grid, dtype=np.int64))
        steps = range(spec.grid[0]) if by_time else [None]
        for t in steps:
            n = present[node.path][t] if t is not None else sum(present[node.path].values())
            total = per_step
            year = years[t] if years is not None and t is not None and t < len(years) else None
            out.append({"array": node.path, "time_index": t, "year": year, "sharded": spec.sharded,
                        "present": int(n), "total": int(total), "fraction": (n / total) if total else 0.0})
    return out
