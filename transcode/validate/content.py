"""The content level: every chunk (or a sample) decodes with the declared codec chain; whole objects match the
CRC32C the store manifest recorded; scales obey the sentinel rules (docs/format.md, "Scale sentinels");
statistics of the valid pixels per zone and year."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from transcode.errors import StoreError, TransientStorageError
from transcode.format.arrays import SCALES
from transcode.format.sentinels import stray_scales, valid_scales
from transcode.format.sidecar import in_sidecar
from transcode.validate.report import ERROR, INFO, WARNING, Finding, ValidationReport
from transcode.validate.shardio import ObjectRef, StoreAccess, read_index, read_selected, read_whole, store_of, written
from transcode.validate.zarrspec import DecodeError, UnsupportedCodec

if TYPE_CHECKING:  # worker processes import this module: keep it light
    from transcode.validate.nodes import StoreView
    from transcode.validate.structure import StructureResult

LEVEL = "content"
MAX_PER_OBJECT = 3  # decode findings listed per object before one summary


@dataclass(frozen=True)
class ContentUnit:
    """One object, or an (embeddings, scales) shard pair, to decode whole or at the chosen written chunks."""

    group: str
    year: int | None
    objects: tuple[ObjectRef, ...]
    select: tuple[int, ...] | None = None  # ordinals among the written chunks of the last object; None: all
    scales_rules: bool = False


def _new_stats() -> dict:
    return {"chunks": 0, "valid": 0, "nan": 0, "fill": 0, "bad": 0, "scale_sum": 0.0, "scale_min": math.inf,
            "scale_max": -math.inf, "v_sum": 0.0, "v_sumsq": 0.0, "v_n": 0, "i8_min": 127, "i8_max": -128}


def _merge(a: dict, b: dict) -> None:
    for k, v in b.items():
        if k.endswith("_min"):
            a[k] = min(a[k], v)
        elif k.endswith("_max"):
            a[k] = max(a[k], v)
        else:
            a[k] += v


def _finding(sev: str, code: str, key: str, msg: str, **kw) -> dict:
    return Finding(sev, LEVEL, code, key, msg, **kw).to_dict()


class _Findings:
    """Decode findings of one object: the first few listed, the rest counted."""

    def __init__(self, out: list[dict]) -> None:
        self.out = out
        self.counts: Counter = Counter()
        self.first: dict = {}

    def add(self, key: str, chunk, message: str, code: str = "decode") -> None:
        self.counts[(key, code)] += 1
        if self.counts[(key, code)] <= MAX_PER_OBJECT:
            self.out.append(_finding(ERROR, code, key, message, chunk=chunk))

    def close(self) -> None:
        for (key, code), n in self.counts.items():
            if n > MAX_PER_OBJECT:
                self.out.append(_finding(ERROR, code, key, f"... {n} chunks in all fail this way in this object"))


def _check_crc(ref: ObjectRef, counter: dict, out: list[dict]) -> None:
    got = counter.pop("crc32c", None)
    if got is None or ref.crc32c is None:
        return
    if ref.manifest_size is not None and ref.manifest_size != ref.size:
        out.append(_finding(ERROR, "object-checksum", ref.key, f"object is {ref.size} bytes, the store manifest "
                            f"recorded {ref.manifest_size}"))
    elif got != ref.crc32c:
        out.append(_finding(ERROR, "object-checksum", ref.key, f"CRC32C of the object is {got}, the store manifest "
                            f"recorded {ref.crc32c}: its bytes changed after it was written"))


def _decoded_chunks(storage, ref: ObjectRef, spec, select, counter, errors: _Findings, full: bool,
                    stored: set | None = None):
    """(inner index or None, array) of every decodable chunk of the object (or the selected written ones); the
    indices of the inner chunks its index holds go into `stored` when given."""
    chain = spec.chain()
    if spec.shard is None:
        data = storage.read(ref.key)
        counter["bytes"] += len(data)
        counter["reads"] += 1
        import crc32c as _crc

        counter["crc32c"] = f"{_crc.crc32c(data):08x}"
        try:
            yield None, chain.decode(data)
        except DecodeError as e:
            errors.add(ref.key, ref.coords, f"chunk does not decode: {e}")
        return
    index, raw = read_index(storage, spec.shard, ref)
    counter["reads"] += 1
    counter["bytes"] += len(raw)
    if stored is not None:
        stored.update(int(i) for i in written(index))
    if select is None and full:
        pieces = read_whole(storage, spec.shard, ref, index, raw, counter)
    else:
        present = written(index)
        chosen = present if select is None else present[[s for s in select if s < len(present)]]
        pieces = read_selected(storage, ref.key, index, chosen, counter)
    for i, data in pieces:
        try:
            yield i, chain.decode(data)
        except DecodeError as e:
            errors.add(ref.key, spec.inner_coords(ref.coords, i), f"inner chunk {i} does not decode: {e}")


def content_unit(unit: ContentUnit, access: StoreAccess) -> dict:
    """Decode one unit; everything becomes a finding but a transient storage failure, which says nothing about
    the store and stops the run."""
    import numcodecs

    numcodecs.blosc.set_nthreads(1)  # parallelism comes from workers
    out: list[dict] = []
    counter: dict = Counter()
    stats = None
    errors = _Findings(out)
    try:
        storage = store_of(access)
        if len(unit.objects) == 2:
            stats = _pair(storage, unit, counter, errors, out)
        else:
            ref = unit.objects[0]
            spec = ref.spec()
            n = 0
            for _, arr in _decoded_chunks(storage, ref, spec, unit.select, counter, errors, full=unit.select is None):
                n += 1
                counter["decoded_bytes"] += arr.nbytes
                if unit.scales_rules:
                    _sentinels(arr, ref.key, None, out)
            counter["chunks"] += n
            _check_crc(ref, counter, out)
    except UnsupportedCodec as e:
        out.append(_finding(WARNING, "unsupported", unit.objects[-1].key, f"not decoded: {e}"))
    except TransientStorageError:
        raise
    except Exception as e:  # noqa: BLE001 - never crash on a corrupted store
        out.append(_finding(ERROR, "unreadable", unit.objects[-1].key, f"cannot be read: {type(e).__name__}: {e}"))
    errors.close()
    return {"findings": out, "stats": stats, "group": unit.group, "year": unit.year, "key": unit.objects[-1].key,
            "shard": unit.objects[-1].coords, "counters": {k: v for k, v in counter.items() if k != "crc32c"}}


def _sentinels(s: np.ndarray, key: str, chunk, out: list[dict]) -> int:
    """Scale sentinel rules: finite values in (0, 1), NaN, +inf; anything else is an error. Returns the count."""
    bad = stray_scales(s)
    n = int(bad.sum())
    if n:
        first = tuple(int(v) for v in np.argwhere(bad)[0])
        out.append(_finding(ERROR, "sentinel", key, f"{n} scales are neither valid (0 < s < 1), NaN nor +inf, e.g. "
                            f"{float(s[first])!r} at {list(first)} of the chunk", chunk=chunk,
                            details={"count": n, "first": list(first), "value": float(s[first])}))
    return n


def _pair(storage, unit: ContentUnit, counter, errors: _Findings, out: list[dict]) -> dict:
    emb_ref, sc_ref = unit.objects
    emb_spec, sc_spec = emb_ref.spec(), sc_ref.spec()
    full = unit.select is None
    scales: dict[int, np.ndarray] = {}
    stats = _new_stats()
    bad_total = 0
    bad_first = None
    for i, s in _decoded_chunks(storage, sc_ref, sc_spec, unit.select, counter, errors, full):
        counter["decoded_bytes"] += s.nbytes
        s = s.reshape(s.shape[-2:])
        bad = stray_scales(s)
        nb = int(bad.sum())
        if nb:
            bad_total += nb
            if bad_first is None:
                yx = tuple(int(v) for v in np.argwhere(bad)[0])
                bad_first = (sc_spec.inner_coords(sc_ref.coords, i), yx, float(s[yx]))
        scales[i] = s
    _check_crc(sc_ref, counter, out)
    if bad_total:
        chunk, yx, value = bad_first
        out.append(_finding(ERROR, "sentinel", sc_ref.key, f"{bad_total} scales are neither valid (0 < s < 1), NaN "
                            f"nor +inf (docs/format.md, 'Scale sentinels'), e.g. {value!r} at chunk pixel "
                            f"{list(yx)}", chunk=chunk,
                            details={"count": bad_total, "first_pixel": list(yx), "value": value}))
    # the embeddings chunks at the same positions (all of them when checking the whole pair)
    stored: set[int] = set()
    if full:
        emb_iter = _decoded_chunks(storage, emb_ref, emb_spec, None, counter, errors, True, stored)
    else:
        index, raw = read_index(storage, emb_spec.shard, emb_ref)
        counter["reads"] += 1
        counter["bytes"] += len(raw)
        stored.update(int(i) for i in written(index))
        chain = emb_spec.chain()

        def selected():
            for i, data in read_selected(storage, emb_ref.key, index, sorted(scales), counter):
                try:
                    yield i, chain.decode(data)
                except DecodeError as e:
                    errors.add(emb_ref.key, emb_spec.inner_coords(emb_ref.coords, i), f"inner chunk {i} does not "
                               f"decode: {e}")
        emb_iter = selected()
    n = 0
    unpaired = _Unpaired(emb_ref, emb_spec, out)
    for i, e in emb_iter:
        counter["decoded_bytes"] += e.nbytes
        n += 1
        s = scales.get(i)
        if s is None:
            unpaired.without_scales(i, e, stats)
            continue
        _stats(stats, e.reshape((e.shape[-3],) + s.shape), s)
    for i in sorted(set(scales) - stored):
        unpaired.without_embeddings(i, scales[i], stats)
    unpaired.close()
    counter["chunks"] += n + len(scales)
    _check_crc(emb_ref, counter, out)
    return stats


class _Unpaired:
    """Inner chunks stored in one array of a pair only (docs/format.md, "Chunking and sharding"): an absent
    embeddings chunk reads as zeros, legitimate where none of its pixels is valid (water or no data); an absent
    scales chunk reads as +inf, legitimate where the embeddings stored beside it are zeros."""

    def __init__(self, emb_ref: ObjectRef, spec, out: list[dict]) -> None:
        self.emb_ref, self.spec, self.out = emb_ref, spec, out
        self.lost: list[tuple[int, int]] = []  # (inner chunk, valid pixels) read as zero embeddings
        self.stray: list[int] = []  # inner chunks of non-zero embeddings where every scale is +inf

    def without_embeddings(self, i: int, s: np.ndarray, stats: dict) -> None:
        nv = int(valid_scales(s).sum())
        if nv:
            self.lost.append((i, nv))
        _stats(stats, np.zeros((self.spec.shard.inner_shape[-3],) + s.shape, np.int8), s)

    def without_scales(self, i: int, e: np.ndarray, stats: dict) -> None:
        if e.any():
            self.stray.append(i)
        _stats(stats, e, np.full(e.shape[-2:], np.inf, np.float32))

    def close(self) -> None:
        if self.lost:
            i, nv = self.lost[0]
            self.out.append(_finding(ERROR, "zero-embeddings", self.emb_ref.key, f"{len(self.lost)} inner chunks are "
                                     f"not stored (they read as zeros) beside scales chunks with valid pixels "
                                     f"({sum(n for _, n in self.lost)} pixels in all): data lost, or embeddings "
                                     f"that are all zero where the scales say data", chunk=self.spec.inner_coords(
                                         self.emb_ref.coords, i), details={"chunks": len(self.lost), "first_valid": nv}))
        if self.stray:
            self.out.append(_finding(WARNING, "unpaired-chunk", self.emb_ref.key, f"{len(self.stray)} inner chunks "
                                     f"hold non-zero embeddings where no scales chunk is stored (every scale reads "
                                     f"+inf, no data): values without meaning", chunk=self.spec.inner_coords(
                                         self.emb_ref.coords, self.stray[0]), details={"chunks": len(self.stray)}))


def _stats(st: dict, e: np.ndarray, s: np.ndarray) -> None:
    """Accumulate statistics of one chunk pair: e (band, y, x) int8, s (y, x) float32. The band sums are exact
    integers per pixel, so sum(e*s) = sum_p s_p * sum_b e_bp needs no float temporary of the whole chunk."""
    valid = valid_scales(s)
    nan = np.isnan(s)
    fill = np.isposinf(s)
    st["chunks"] += 1
    nv = int(valid.sum())
    n_nan, n_fill = int(nan.sum()), int(fill.sum())
    st["valid"] += nv
    st["nan"] += n_nan
    st["fill"] += n_fill
    st["bad"] += int(s.size - nv - n_nan - n_fill)
    if not nv:
        return
    sv = s[valid].astype("float64")
    st["scale_sum"] += float(sv.sum())
    st["scale_min"] = min(st["scale_min"], float(sv.min()))
    st["scale_max"] = max(st["scale_max"], float(sv.max()))
    wide = e.astype(np.int16)
    s1 = wide.sum(axis=0, dtype=np.int32)[valid].astype("float64")
    np.multiply(wide, wide, out=wide)  # squares of int8 values fit in int16
    s2 = wide.sum(axis=0, dtype=np.int32)[valid].astype("float64")
    st["i8_min"] = min(st["i8_min"], int(e.min(axis=0)[valid].min()))
    st["i8_max"] = max(st["i8_max"], int(e.max(axis=0)[valid].max()))
    st["v_sum"] += float(np.dot(sv, s1))
    st["v_sumsq"] += float(np.dot(sv * sv, s2))
    st["v_n"] += nv * e.shape[0]


# ------------------------------------------------------------------------------------------ orchestration

def read_manifest_index(storage, report: ValidationReport) -> dict[str, tuple[int, str]] | None:
    """key -> (size, crc32c) from the store manifest, or None when there is none (an info finding)."""
    from transcode.format.manifest import MANIFEST_KEY, read_manifest  # pyarrow: only when a manifest is read

    try:
        rows = read_manifest(storage)
    except StoreError:
        report.add(Finding(INFO, LEVEL, "no-manifest", MANIFEST_KEY, "no store manifest: object checksums are not "
                           "compared (only decoding is)"))
        return None
    except TransientStorageError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt manifest is a finding, not a crash
        report.add(Finding(ERROR, LEVEL, "manifest", MANIFEST_KEY,
                           f"store manifest unreadable: {type(e).__name__}: {e}"))
        return None
    return {r.key: (int(r.size), str(r.crc32c)) for r in rows}


def _manifest_completeness(view: StoreView, structure: StructureResult, manifest: dict, report: ValidationReport,
                           limit: int = 20) -> None:
    """Objects the manifest lists but the store lacks (lost data: errors), and data objects it does not list."""
    data = set(structure.shards) | {k for chunks in structure.chunks.values() for k, _, _ in chunks}
    docs = {n.key for n in view.nodes.values() if n.raw is not None}
    judged = {p for p, n in view.nodes.items() if n.is_group or n.spec is not None}  # nodes whose objects we know

    def owner_known(key: str) -> bool:
        parts = key.split("/")
        for k in range(len(parts) - 1, -1, -1):
            p = "/".join(parts[:k])
            if p in view.nodes:
                return p in judged
        return False

    lacking = sorted(k for k in manifest if k not in data and k not in docs and not in_sidecar(k)
                     and owner_known(k))
    for k in lacking[:limit]:
        report.add(Finding(ERROR, LEVEL, "manifest", k, f"the store manifest lists this object ({manifest[k][0]} "
                           "bytes) but the store lacks it: data lost after writing"))
    if len(lacking) > limit:
        report.add(Finding(ERROR, LEVEL, "manifest", lacking[limit], f"... {len(lacking)} objects in all are listed "
                           "by the manifest but missing"))
    unlisted = sorted(k for k in data if k not in manifest)
    for k in unlisted[:limit]:
        report.add(Finding(WARNING, LEVEL, "manifest", k, "not in the store manifest (written after it, or by "
                           "another tool): its checksum cannot be compared"))
    if len(unlisted) > limit:
        report.add(Finding(WARNING, LEVEL, "manifest", unlisted[limit], f"... {len(unlisted)} data objects in all "
                           "are not in the manifest"))


def make_ref(view: StoreView, array: str, key: str, size: int, coords, manifest) -> ObjectRef:
    m = manifest.get(key) if manifest else None
    return ObjectRef(array, view.nodes[array].doc, key, size, tuple(coords), m[1] if m else None, m[0] if m else None)


def population(view: StoreView, structure: StructureResult, profile: str, manifest, report: ValidationReport,
               level: str = LEVEL) -> list[tuple[ContentUnit, int]]:
    """Every unit of the store with its count of written chunks (the sampling weight)."""
    tessera = profile in ("tessera", "interop")
    units: list[tuple[ContentUnit, int]] = []
    paired = set()
    for ek, sk in structure.pairs:
        paired |= {ek, sk}
        e, s = structure.shards[ek], structure.shards[sk]
        if not (e.sound and s.sound):
            bad = e if not e.sound else s
            report.add(Finding(INFO, level, "not-decoded", bad.key, "not decoded: its shard index is unusable "
                               "(structure finding)"))
            continue
        group = view.nodes[s.array].parent or ""
        years = _years(view, group)
        year = years[s.coords[0]] if years is not None and s.coords[0] < len(years) else None
        units.append((ContentUnit(group, year, (make_ref(view, e.array, ek, e.size, e.coords, manifest),
                                                make_ref(view, s.array, sk, s.size, s.coords, manifest))), s.written))
    for key, sh in sorted(structure.shards.items()):
        if key in paired:
            continue
        if not sh.sound:
            report.add(Finding(INFO, level, "not-decoded", key, "not decoded: its shard index is unusable "
                               "(structure finding)"))
            continue
        node = view.nodes[sh.array]
        units.append((ContentUnit(node.parent or "", None, (make_ref(view, sh.array, key, sh.size, sh.coords,
                                                                     manifest),),
                                  scales_rules=tessera and node.name == SCALES.name), sh.written or 0))
    for array, chunks in sorted(structure.chunks.items()):
        node = view.nodes[array]
        for key, size, coords in chunks:
            units.append((ContentUnit(node.parent or "", None, (make_ref(view, array, key, size, coords, manifest),),
                                      scales_rules=tessera and node.name == SCALES.name), 1))
    return units


def _years(view: StoreView, group: str) -> list[int] | None:
    return view.time_values.get(group)


def _is_sharded(ref: ObjectRef) -> bool:
    codecs = ref.doc.get("codecs")
    return isinstance(codecs, list) and bool(codecs) and isinstance(codecs[0], dict) \
        and codecs[0].get("name") == "sharding_indexed"


def sample_chunks(units: list[tuple], n: int, seed: int) -> list[tuple]:
    """`n` written chunks drawn uniformly (seeded) from (unit, written chunks) pairs: [(unit, chunk ordinals)]."""
    pool = [(u, w) for u, w in units if w > 0]
    weights = np.array([w for _, w in pool], dtype=np.int64)
    total = int(weights.sum())
    if total == 0:
        return []
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
    bounds = np.cumsum(weights)
    which = np.searchsorted(bounds, picks, side="right")
    chosen: dict[int, list[int]] = defaultdict(list)
    for p, u in zip(picks, which):
        chosen[int(u)].append(int(p) - (int(bounds[u - 1]) if u else 0))
    return [(pool[u][0], tuple(ords)) for u, ords in sorted(chosen.items())]


def sample_units(units: list[tuple[ContentUnit, int]], n: int, seed: int) -> list[ContentUnit]:
    """Content units restricted to `n` sampled written chunks."""
    return [ContentUnit(u.group, u.year, u.objects, ords if _is_sharded(u.objects[-1]) else None, u.scales_rules)
            for u, ords in sample_chunks(units, n, seed)]


def check_content(view: StoreView, structure: StructureResult, profile: str, report: ValidationReport,
                  access: StoreAccess, *, sample: int | None, seed: int, workers: int, progress: bool) -> None:
    """Decode every chunk (or a sample) on `workers` processes; findings, statistics and counters into `report`."""
    from tqdm import tqdm

    from transcode.engine.executors import make_executor

    manifest = read_manifest_index(view.storage, report) if profile in ("tessera", "interop") else None
    if manifest is not None:
        _manifest_completeness(view, structure, manifest, report)
    units = population(view, structure, profile, manifest, report)
    todo = sample_units(units, sample, seed) if sample else [u for u, _ in units]
    executor = make_executor(workers)
    job = access if executor.name == "inline" else access.for_processes()
    parts: list[tuple] = []  # (group, year, unit key, stats): merged in a fixed order, so sums do not depend on
    valid: dict[tuple[str, int, int, int], int] = {}  # (group, year index, shard row, shard col) -> valid pixels
    bar = tqdm(total=len(todo), desc="content", unit="object", disable=not progress)  # which worker finished first
    try:
        for res in executor.run(content_unit, todo, job):
            for f in res["findings"]:
                report.add(_from_dict(f))
            for k, v in res["counters"].items():
                report.counters[{"bytes": "bytes_read", "reads": "content_reads", "chunks": "chunks_decoded"}
                                .get(k, k)] += int(v)
            if res["stats"] is not None:
                parts.append((res["group"], res["year"] or 0, res["key"], res["stats"]))
                if not any(f["severity"] == ERROR for f in res["findings"]):  # pixels not all read: not counted
                    valid[(res["group"], *res["shard"])] = res["stats"]["valid"]
            bar.update(1)
    finally:
        bar.close()
        executor.close()
    if profile in ("tessera", "interop"):  # the count is compared with the pixels only when every shard was read
        from transcode.validate.stretch import check_statistics

        check_statistics(view, report, None if sample else valid)
    report.counters["content_units"] += len(todo)
    stats: dict[tuple, dict] = {}
    for group, year, _, st in sorted(parts, key=lambda p: p[:3]):
        _merge(stats.setdefault((group, year), _new_stats()), st)
    report.statistics = [_stats_entry(g, y or None, st) for (g, y), st in sorted(stats.items())]


def _stats_entry(group: str, year, st: dict) -> dict:
    n = st["v_n"]
    mean = st["v_sum"] / n if n else None
    var = max(0.0, st["v_sumsq"] / n - mean * mean) if n else None
    return {"group": group, "year": year, "chunks": st["chunks"], "valid_pixels": st["valid"],
            "nan_pixels": st["nan"], "fill_pixels": st["fill"], "bad_scale_pixels": st["bad"],
            "scale_min": st["scale_min"] if st["valid"] else None,
            "scale_max": st["scale_max"] if st["valid"] else None,
            "scale_mean": st["scale_sum"] / st["valid"] if st["valid"] else None,
            "value_mean": mean, "value_std": math.sqrt(var) if var is not None else None,
            "int8_min": st["i8_min"] if st["valid"] else None, "int8_max": st["i8_max"] if st["valid"] else None}


def _from_dict(d: dict) -> Finding:
    return Finding(d["severity"], d["level"], d["code"], d["key"], d["message"], d.get("attribute"), d.get("pointer"),
                   tuple(d["chunk"]) if "chunk" in d else None, d.get("details"))


__all__ = ["ContentUnit", "check_content", "content_unit"]
