"""The stretch statistics of each zone group (docs/format.md, "Stretch statistics"): the coverage mask against the
shards present (structure), and the count, sums, products and sample against themselves and against the pixels the
content level decoded (content). Reads only the small per-year chunks of the seven arrays."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from transcode.errors import ObjectNotFoundError, StorageError, TransientStorageError
from transcode.format.arrays import (
    EMBEDDINGS,
    STRETCH_ARRAYS,
    STRETCH_SAMPLE,
    STRETCH_SAMPLE_COUNT,
    STRETCH_SAMPLE_SCALES,
    STRETCH_STATS_COUNT,
    STRETCH_STATS_PROD,
    STRETCH_STATS_SHARDS,
    STRETCH_STATS_SUM,
)
from transcode.format.keys import group_zone
from transcode.format.sentinels import valid_scales
from transcode.storage import join_key
from transcode.validate.nodes import Node, StoreView
from transcode.validate.report import ERROR, INFO, WARNING, Finding, ValidationReport
from transcode.validate.zarrspec import DecodeError, UnsupportedCodec

REBUILDING = -1  # stretch_stats_count while the statistics of a (zone, year) are invalid or being rebuilt
SYMMETRY_RTOL = 1e-6  # M is a sum of x x^T: symmetric up to the rounding of its float32 block products
MAX_LISTED = 10  # shards listed per finding


def read_chunk(view: StoreView, node: Node, coords: Iterable[int], counters: Counter) -> np.ndarray | None:
    """One chunk of a plain (unsharded) array, decoded to the chunk's shape; the fill value when not stored; None
    when its codecs are not ones this validator decodes. StorageError/DecodeError when it cannot be read."""
    spec = node.spec
    if spec is None or spec.sharded or spec.unsupported:
        return None
    key = join_key(node.path, spec.chunk_key(tuple(coords)))
    try:
        raw = view.storage.read(key)
    except ObjectNotFoundError:
        return np.full(spec.chunk_shape, spec.fill, dtype=spec.dtype)
    counters["bytes_read"] += len(raw)
    counters["stretch_chunks"] += 1
    return spec.chain().decode(raw).reshape(spec.chunk_shape)


@dataclass
class ZoneStretch:
    """The stretch arrays of one zone group, read a year at a time."""

    view: StoreView
    group: str
    nodes: dict[str, Node]
    counters: Counter
    years: list[int] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.nodes[STRETCH_STATS_COUNT.name].spec.shape[0]

    def key(self, name: str, t: int) -> str:
        node = self.nodes[name]
        return join_key(node.path, node.spec.chunk_key((t,) + (0,) * (len(node.spec.shape) - 1)))

    def read(self, name: str, t: int) -> np.ndarray:
        """The chunk of year index t of one stretch array, without its time axis."""
        arr = read_chunk(self.view, self.nodes[name], (t,) + (0,) * (len(self.nodes[name].spec.shape) - 1),
                         self.counters)
        if arr is None:
            raise UnsupportedCodec(f"{name}: codecs not decoded by this validator")
        return arr[0]

    def year(self, t: int) -> int | str:
        return self.years[t] if t < len(self.years) else f"index {t}"


def zone_stretch(view: StoreView, group: Node, counters: Counter) -> ZoneStretch | None:
    """The zone's stretch arrays when all seven are usable plain arrays of the declared dimensions (the metadata level
    reports the others), else None."""
    nodes = {}
    for decl in STRETCH_ARRAYS:
        n = view.child(group.path, decl.name)
        if n is None or not n.is_array or n.spec is None or n.spec.sharded or n.dims != list(decl.dims) \
                or len(n.spec.shape) != len(decl.dims) or n.spec.chunk_shape[0] != 1:
            return None
        nodes[decl.name] = n
    if len({n.spec.shape[0] for n in nodes.values()}) != 1:
        return None
    return ZoneStretch(view, group.path, nodes, counters, list(view.time_values.get(group.path, [])))


def zones(view: StoreView, counters: Counter) -> list[ZoneStretch]:
    """Every zone group's usable stretch arrays; chunks read are counted in `counters`."""
    out = []
    for g in view.groups():
        if group_zone(g.name) is not None and (g.parent or "") == "":
            z = zone_stretch(view, g, counters)
            if z is not None:
                out.append(z)
    return out


def _guard(add: Callable, level: str, key: str, fn: Callable[[], None]) -> None:
    """Run one zone-year's checks; an unreadable chunk becomes a finding, never a crash."""
    try:
        fn()
    except TransientStorageError:
        raise
    except (StorageError, DecodeError, UnsupportedCodec) as e:
        add(Finding(ERROR if not isinstance(e, UnsupportedCodec) else INFO, level, "stretch-unreadable", key,
                    f"stretch statistics not checked: {e}"))


# ------------------------------------------------------------------------------------------ structure

def check_coverage(view: StoreView, shards: Iterable[tuple[str, tuple[int, ...]]], report: ValidationReport) -> None:
    """The coverage mask against the embeddings shards present: a shard marked folded in that the store lacks is an
    error (statistics of pixels that are not there); a shard present but not marked leaves the statistics
    incomplete (a warning), unless the year's statistics are not collected or being rebuilt (count -1: said in one
    info finding whatever the mask holds)."""
    present: dict[tuple[str, int], set[tuple[int, int]]] = {}
    t_axis = EMBEDDINGS.dims.index("time")
    for array, coords in shards:
        group, name = array.rsplit("/", 1) if "/" in array else ("", array)
        if name == EMBEDDINGS.name:
            present.setdefault((group, coords[t_axis]), set()).add(tuple(EMBEDDINGS.spatial(coords)))
    idle: dict[str, list[str]] = {}  # why -> the (zone, year)s with shards whose statistics are idle
    for z in zones(view, report.counters):
        for t in range(z.steps):
            _guard(report.add, "structure", z.key(STRETCH_STATS_SHARDS.name, t),
                   lambda z=z, t=t: _coverage_year(z, t, present.get((z.group, t), set()), report, idle))
    for why, where in sorted(idle.items()):
        report.add(Finding(INFO, "structure", "stretch-coverage", "", f"stretch statistics {why} for {len(where)} "
                           f"(zone, year)s with shards, e.g. {where[0]}: geotessera's zarr-stretch needs them "
                           "collected", details={"zone_years": where[:100]}))


def _coverage_year(z: ZoneStretch, t: int, present: set[tuple[int, int]], report: ValidationReport,
                   idle: dict[str, list[str]]) -> None:
    mask = z.read(STRETCH_STATS_SHARDS.name, t)
    count = int(z.read(STRETCH_STATS_COUNT.name, t)[()])
    key = z.key(STRETCH_STATS_SHARDS.name, t)
    year = z.year(t)
    odd = np.argwhere((mask != 0) & (mask != 1))
    if odd.size:
        report.add(Finding(ERROR, "structure", "stretch-coverage", key, f"{len(odd)} entries of the coverage mask of "
                           f"{year} are neither 0 nor 1, e.g. {int(mask[tuple(odd[0])])} at shard {list(odd[0])}"))
    marked = {(int(r), int(c)) for r, c in np.argwhere(mask != 0)}
    ghost = sorted(marked - present)
    if ghost:
        report.add(Finding(ERROR, "structure", "stretch-coverage", key, f"{len(ghost)} shards of {year} are marked as "
                           f"folded into the statistics but the store has no embeddings shard there, e.g. (row, col) "
                           f"{ghost[0]}", details={"shards": [list(s) for s in ghost[:MAX_LISTED]]}))
    unseen = sorted(present - marked)
    if present and count == REBUILDING:  # invalid whatever the mask says (the mask is rebuilt with the rest)
        idle.setdefault("being rebuilt", []).append(f"{z.group} {year}")
        return
    if not unseen:
        return
    if count == 0 and not marked:
        idle.setdefault("not collected", []).append(f"{z.group} {year}")
        return
    report.add(Finding(WARNING, "structure", "stretch-coverage", key, f"{len(unseen)} embeddings shards of {year} are "
                       f"not folded into the stretch statistics (coverage mask 0): the statistics are incomplete, "
                       f"e.g. (row, col) {unseen[0]}", details={"shards": [list(s) for s in unseen[:MAX_LISTED]]}))


# ------------------------------------------------------------------------------------------ content

def check_statistics(view: StoreView, report: ValidationReport,
                     valid: dict[tuple[str, int, int, int], int] | None) -> None:
    """Count, sample, sums and products of every (zone, year) against themselves; with `valid` (the valid pixels of
    every shard, by (group, year index, shard row, shard col), when the content level decoded every shard) the
    count against the valid pixels of the shards the coverage mask marks."""
    for z in zones(view, report.counters):
        for t in range(z.steps):
            _guard(report.add, "content", z.key(STRETCH_STATS_COUNT.name, t),
                   lambda z=z, t=t: _statistics_year(z, t, report, valid))


def _statistics_year(z: ZoneStretch, t: int, report: ValidationReport,
                     valid: dict[tuple[str, int, int, int], int] | None) -> None:
    def add(sev: str, name: str, msg: str, **kw) -> None:
        report.add(Finding(sev, "content", "stretch-statistics", z.key(name, t), msg, **kw))

    year = z.year(t)
    n = int(z.read(STRETCH_STATS_COUNT.name, t)[()])
    k = int(z.read(STRETCH_SAMPLE_COUNT.name, t)[()])
    slots = z.nodes[STRETCH_SAMPLE.name].spec.shape[1]
    if n < REBUILDING:
        add(ERROR, STRETCH_STATS_COUNT.name, f"pixel count {n} of {year}: a count is >= 0, or {REBUILDING} while the "
            "statistics are invalid or being rebuilt")
    if not 0 <= k <= slots or (n >= 0 and k > n):
        add(ERROR, STRETCH_SAMPLE_COUNT.name, f"{k} sampled pixels of {year}: the sample holds 0..{slots} pixels and "
            f"no more than the {n} pixels counted")
    else:
        _sample(z, t, k, add, year)
    if n < 0:
        return
    s = z.read(STRETCH_STATS_SUM.name, t)
    m = z.read(STRETCH_STATS_PROD.name, t)
    if not (np.isfinite(s).all() and np.isfinite(m).all()):
        add(ERROR, STRETCH_STATS_SUM.name, f"the sums or products of {year} are not finite (pixels with sentinel "
            "scales folded in?)")
        return
    if n == 0 and (s.any() or m.any()):
        add(ERROR, STRETCH_STATS_SUM.name, f"no pixels counted in {year} but the sums or products are not zero")
    scale = float(np.abs(m).max()) if m.size else 0.0
    if not np.allclose(m, m.T, rtol=0, atol=SYMMETRY_RTOL * max(scale, 1e-30)):
        add(ERROR, STRETCH_STATS_PROD.name, f"the sum of products of {year} is not symmetric (M = sum x x^T)")
    diag = np.diag(m)
    if (diag < -SYMMETRY_RTOL * max(scale, 1e-30)).any() or (
            n > 0 and (s * s > n * diag * (1 + 1e-6) + SYMMETRY_RTOL * max(scale, 1e-30)).any()):
        add(ERROR, STRETCH_STATS_PROD.name, f"the sums and products of {year} are inconsistent: a square sum exceeds "
            "N times its diagonal product (Cauchy-Schwarz), or a diagonal product is negative")
    if valid is not None:
        _count(z, t, n, valid, add, year)


def _sample(z: ZoneStretch, t: int, k: int, add: Callable, year) -> None:
    sample = z.read(STRETCH_SAMPLE.name, t)
    scales = z.read(STRETCH_SAMPLE_SCALES.name, t)
    bad = ~valid_scales(scales[:k])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        add(ERROR, STRETCH_SAMPLE_SCALES.name, f"{int(bad.sum())} of the {k} sampled pixels of {year} have no valid "
            f"scale (0 < s < 1), e.g. slot {i}: {float(scales[i])!r}")
    rest = ~np.isposinf(scales[k:]) | sample[k:].any(axis=1)
    if rest.any():
        i = k + int(np.flatnonzero(rest)[0])
        add(ERROR, STRETCH_SAMPLE.name, f"{int(rest.sum())} unfilled sample slots of {year} (past the {k} filled) are "
            f"not zeros with scale +inf, e.g. slot {i}")


def _count(z: ZoneStretch, t: int, n: int, valid: dict[tuple[str, int, int, int], int], add: Callable,
           year) -> None:
    mask = z.read(STRETCH_STATS_SHARDS.name, t)
    marked = [(int(r), int(c)) for r, c in np.argwhere(mask == 1)]
    if any((z.group, t, r, c) not in valid for r, c in marked):
        return  # a marked shard missing or not decoded: reported elsewhere
    want = sum(valid[(z.group, t, r, c)] for r, c in marked)
    if want != n:
        add(ERROR, STRETCH_STATS_COUNT.name, f"{n} pixels counted in {year}, but the {len(marked)} shards the coverage "
            f"mask marks hold {want} valid pixels", details={"count": n, "valid_pixels": want})
