"""The fidelity level: every pixel of the store (or of a sample of chunks) equals the legacy tile it came from under
the placement rules (docs/format.md, "Placing tiles"), re-derived through the same `plan` the converter used: the later tile in
canonical order wins an overlap, water (landmask 0) and invalid source scales become NaN, pixels without a tile
keep the fill values. Embeddings are compared at every pixel (the converter copies them also where the scale is
NaN). Counts exact, water-masked, invalid-scale, empty and overlap pixels; lists every mismatch with its tile, year
and position."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from transcode.engine.plan import Placement, make_plan
from transcode.engine.shardbuild import tile_files
from transcode.errors import ArchiveError, StorageError, TransientStorageError, UsageError
from transcode.format.arrays import BANDS, EMBEDDINGS, SCALES, depth_arrays
from transcode.format.attributes import depths_of, grid_of
from transcode.format.grid import ZoneGrid
from transcode.format.keys import group_zone
from transcode.format.sentinels import WATER, valid_scales
from transcode.legacy.tiles import Window, read_landmask
from transcode.validate.content import _from_dict, make_ref
from transcode.validate.nodes import StoreView
from transcode.validate.report import ERROR, INFO, WARNING, FidelityCounts, Finding, ValidationReport
from transcode.validate.shardio import ObjectRef, StoreAccess, read_index, read_selected, source_of, store_of, written
from transcode.validate.structure import StructureResult
from transcode.validate.zarrspec import DecodeError

LEVEL = "fidelity"


@dataclass(frozen=True)
class FidelityUnit:
    """One (embeddings, scales) shard pair and the tile windows that should have filled it."""

    group: str
    year: int
    emb: ObjectRef
    scales: ObjectRef
    shard_row: int
    shard_col: int
    grid: ZoneGrid
    placements: tuple[Placement, ...]
    select: tuple[int, ...] | None = None  # ordinals among the written scales chunks; None: every chunk
    max_mismatches: int = 1000
    depths: tuple[tuple[int, ObjectRef], ...] = ()  # (D, the embeddings_d{D} shard at the same place)


def fidelity_unit(unit: FidelityUnit, access: StoreAccess) -> dict:
    """Compare one shard pair with its tiles; everything becomes a finding but a transient storage failure, which
    says nothing about the store or the source and stops the run."""
    import numcodecs

    numcodecs.blosc.set_nthreads(1)
    out = {"findings": [], "counts": Counter(), "mismatches": [], "per_tile": {}, "reads": Counter()}
    try:
        _compare(unit, access, out)
    except TransientStorageError:
        raise
    except Exception as e:  # noqa: BLE001 - never crash on a corrupted store or source
        out["findings"].append(Finding(ERROR, LEVEL, "unreadable", unit.scales.key,
                                       f"not compared: {type(e).__name__}: {e}").to_dict())
    out["counts"] = dict(out["counts"])
    out["reads"] = dict(out["reads"])
    return out


def _compare(unit: FidelityUnit, access: StoreAccess, out: dict) -> None:
    store, source = store_of(access), source_of(access)
    es, ss = unit.emb.spec(), unit.scales.spec()
    sh, sw = ss.chunk_shape[-2:]
    ch, cw = ss.shard.inner_shape[-2:]
    n_cols = sw // cw
    e_index, raw1 = read_index(store, es.shard, unit.emb)
    s_index, raw2 = read_index(store, ss.shard, unit.scales)
    reads = out["reads"]
    reads["bytes"] += len(raw1) + len(raw2)
    reads["reads"] += 2
    r_base, c_base = unit.shard_row * sh, unit.shard_col * sw
    s_written = written(s_index)
    if unit.select is None:
        chunks = {int(i) for i in s_written} | {int(i) for i in written(e_index)}
        for p in unit.placements:  # every chunk a tile touches, written or not
            rr, cc = p.rows_in(r_base, r_base + sh), p.cols_in(c_base, c_base + sw)
            if rr and cc:
                for i in range((rr[0] - r_base) // ch, (rr[1] - 1 - r_base) // ch + 1):
                    for j in range((cc[0] - c_base) // cw, (cc[1] - 1 - c_base) // cw + 1):
                        chunks.add(i * n_cols + j)
    else:
        chunks = {int(s_written[o]) for o in unit.select if o < len(s_written)}
    by_row: dict[int, list[int]] = defaultdict(list)
    for k in sorted(chunks):
        by_row[k // n_cols].append(k % n_cols)
    files = {p: tile_files(source, p) for p in unit.placements}
    masks: dict[Placement, np.ndarray | None] = {}
    e_chain, s_chain = es.chain(), ss.chain()
    s_fill = np.float32(ss.fill)
    e_fill = es.dtype.type(es.fill)
    counts = out["counts"]
    counts["shards"] += 1
    depth_readers = []
    for d, ref in unit.depths:
        nested = _Nested(store, d, ref, reads)
        if nested.side[0] % ch or nested.side[1] % cw or nested.spec.shard.per_shard[-2:] != (sh // nested.side[0],
                                                                                           sw // nested.side[1]):
            out["findings"].append(Finding(INFO, LEVEL, "not-compared", ref.key, f"not compared with embeddings: its "
                                           f"inner chunks {list(nested.side)} are not whole multiples of the "
                                           f"embeddings' {[ch, cw]} within the same shard").to_dict())
            continue
        depth_readers.append(nested)
    for i, js in sorted(by_row.items()):
        r0 = r_base + i * ch
        c0 = c_base + min(js) * cw
        width = (max(js) - min(js) + 1) * cw
        colmask = np.zeros(width, dtype=bool)
        for j in js:
            colmask[(j - min(js)) * cw:(j - min(js) + 1) * cw] = True
        colmask = np.broadcast_to(colmask, (ch, width))
        # expected, painted in canonical order (later tiles overwrite earlier ones)
        exp_e = np.full((ch, width, BANDS), EMBEDDINGS.fill, dtype=EMBEDDINGS.dtype)
        exp_raw = np.full((ch, width), SCALES.fill, dtype=SCALES.dtype)
        owner = np.full((ch, width), -1, dtype=np.int32)
        cover = np.zeros((ch, width), dtype=np.uint8)
        water = np.zeros((ch, width), dtype=bool)
        for k, p in enumerate(unit.placements):
            rr, cc = p.rows_in(r0, r0 + ch), p.cols_in(c0, c0 + width)
            if rr is None or cc is None:
                continue
            win = Window(rr[0] - p.row, rr[1] - p.row, cc[0] - p.col, cc[1] - p.col)
            dst = (slice(rr[0] - r0, rr[1] - r0), slice(cc[0] - c0, cc[1] - c0))
            ef, sf = files[p]
            ef.read_into(win, exp_e[dst])
            exp_raw[dst] = sf.read(win)
            reads["source_bytes"] += exp_e[dst].nbytes + exp_raw[dst].nbytes
            owner[dst] = k
            cover[dst] += 1
            water[dst] = False
            mask = _mask(source, p, masks, out)
            if mask is not None:
                m = mask[win.row0:win.row1, win.col0:win.col1]
                wv = water[dst]
                wv[:m.shape[0], :m.shape[1]] = m == 0
        has = owner >= 0
        invalid = has & ~valid_scales(exp_raw)
        water &= has
        exp_s = exp_raw.copy()
        exp_s[invalid | water] = WATER
        # the store's chunks of this row (absent chunks are the fill values)
        st_e = np.full((BANDS, ch, width), e_fill, dtype=es.dtype)
        st_s = np.full((ch, width), s_fill, dtype=np.float32)
        want = [i * n_cols + j for j in js]
        for index, ref, chain, target, is_emb in ((s_index, unit.scales, s_chain, st_s, False),
                                                  (e_index, unit.emb, e_chain, st_e, True)):
            for k, data in read_selected(store, ref.key, index, want, reads):
                j = k % n_cols - min(js)
                try:
                    arr = chain.decode(data)
                except DecodeError as e:
                    spec = es if is_emb else ss
                    out["findings"].append(Finding(ERROR, LEVEL, "decode", ref.key, f"inner chunk {k} does not "
                                                   f"decode: {e}", chunk=spec.inner_coords(ref.coords, k)).to_dict())
                    continue
                if is_emb:
                    target[:, :, j * cw:(j + 1) * cw] = arr.reshape(BANDS, ch, cw)
                else:
                    target[:, j * cw:(j + 1) * cw] = arr.reshape(ch, cw)
        counts["chunks"] += len(js)
        for nested in depth_readers:
            nested.compare(i * ch, js, cw, st_e, colmask, r0, c0, out)
        s_eq = (st_s == exp_s) | (np.isnan(st_s) & np.isnan(exp_s))
        fin = np.isfinite(exp_s)
        e_ne = (st_e != exp_e.transpose(2, 0, 1)).any(axis=0)
        bad_s = ~s_eq & colmask
        bad_e = s_eq & e_ne & colmask  # every pixel: the converter copies embeddings also where the scale is NaN
        ok = colmask & ~bad_s & ~bad_e
        counts["exact"] += int((ok & has & fin).sum())
        counts["water_masked"] += int((ok & water).sum())
        counts["invalid_scale"] += int((ok & has & ~water & ~fin).sum())
        counts["empty"] += int((ok & ~has).sum())
        counts["mismatched"] += int(bad_s.sum() + bad_e.sum())
        counts["overlap"] += int(((cover >= 2) & colmask).sum())
        for field, bad in ((SCALES.name, bad_s), (EMBEDDINGS.name, bad_e)):
            if bad.any():
                _record(unit, field, bad, owner, r0, c0, st_s, exp_s, st_e, exp_e, out)
    for nested in depth_readers:
        found = nested.finding()
        if found is not None:
            out["findings"].append(found)


class _Nested:
    """One nested-depth shard (`embeddings_d{D}`, docs/format.md, "Nested depths") compared with the first D bands of
    the embeddings decoded beside it, chunk row by chunk row; its larger inner chunks are decoded once each."""

    def __init__(self, store, depth: int, ref: ObjectRef, reads: Counter) -> None:
        self.store, self.depth, self.ref, self.reads = store, depth, ref, reads
        self.spec = ref.spec()
        self.index, raw = read_index(store, self.spec.shard, ref)
        reads["bytes"] += len(raw)
        reads["reads"] += 1
        self.chain = self.spec.chain()
        self.side = self.spec.shard.inner_shape[-2:]
        self.per_row = self.spec.shard.per_shard[-1]
        self.cache: dict[int, np.ndarray | None] = {}
        self.row = -1
        self.bad = 0
        self.first: tuple[int, int] | None = None

    def _chunk(self, k: int) -> np.ndarray | None:
        if k not in self.cache:
            self.cache[k] = None  # not stored: the fill value (zeros)
            for _, data in read_selected(self.store, self.ref.key, self.index, [k], self.reads):
                self.cache[k] = self.chain.decode(data).reshape(self.depth, *self.side)
        return self.cache[k]

    def compare(self, row: int, js: list[int], cw: int, st_e: np.ndarray, colmask: np.ndarray, r0: int, c0: int,
                out: dict) -> None:
        """Rows row..row+ch of the shard, at the embeddings chunk columns `js` (width cw each)."""
        dh, dw = self.side
        ch = st_e.shape[1]
        if row // dh != self.row:
            self.cache.clear()
            self.row = row // dh
        got = np.zeros((self.depth, ch, st_e.shape[2]), dtype=st_e.dtype)
        off_r = row - self.row * dh
        for j in js:
            col = j * cw
            block = self._chunk(self.row * self.per_row + col // dw)
            if block is not None:
                x = (j - min(js)) * cw
                got[:, :, x:x + cw] = block[:, off_r:off_r + ch, col % dw:col % dw + cw]
        bad = (got != st_e[:self.depth]).any(axis=0) & colmask
        self.reads["depth_pixels"] += int(colmask.sum())
        if bad.any():
            self.bad += int(bad.sum())
            if self.first is None:
                r, c = (int(v) for v in np.argwhere(bad)[0])
                self.first = (r0 + r, c0 + c)

    def finding(self) -> dict | None:
        if not self.bad:
            return None
        return Finding(ERROR, LEVEL, "depth-mismatch", self.ref.key, f"{self.bad} pixels differ from the first "
                       f"{self.depth} bands of embeddings (nested depths are byte-identical prefixes), first at zone "
                       f"row {self.first[0]}, col {self.first[1]}", details={"depth": self.depth, "count": self.bad,
                                                                             "first": list(self.first)}).to_dict()


def _mask(source, p: Placement, masks: dict, out: dict) -> np.ndarray | None:
    if p in masks:
        return masks[p]
    masks[p] = None
    if p.landmask_key is not None:
        try:
            masks[p] = read_landmask(source, p.landmask_key)
        except ArchiveError as e:  # the converter treats an unreadable landmask as all land; so do we
            out["findings"].append(Finding(WARNING, LEVEL, "source-landmask", p.landmask_key,
                                           f"landmask unreadable, compared as all land like the converter: {e}"
                                           ).to_dict())
    return masks[p]


def _record(unit: FidelityUnit, field: str, bad: np.ndarray, owner, r0, c0, st_s, exp_s, st_e, exp_e, out) -> None:
    """Per-tile counts (all of them, vectorised) and the individual mismatches (up to the cap) of one field in one
    chunk row."""
    key = unit.scales.key if field == SCALES.name else unit.emb.key
    rs, cs = np.nonzero(bad)
    owners = owner[rs, cs]
    for k in np.unique(owners):
        sel = owners == k
        p = unit.placements[int(k)] if k >= 0 else None
        rows, cols = r0 + rs[sel], c0 + cs[sel]
        tile = p.tile if p else None
        agg = out["per_tile"].get(f"{key}|{tile}|{field}")
        if agg is None:
            first = {"row": int(rows[0]), "col": int(cols[0]), "tile_row": int(rows[0]) - p.row if p else None,
                     "tile_col": int(cols[0]) - p.col if p else None}
            agg = out["per_tile"][f"{key}|{tile}|{field}"] = {
                "key": key, "tile": tile, "year": unit.year, "group": unit.group, "field": field, "count": 0,
                "first": first, "tile_rows": None, "tile_cols": None}
        agg["count"] += int(sel.sum())
        if field == SCALES.name:
            agg["store_fill"] = agg.get("store_fill", 0) + int(np.isposinf(st_s[rs[sel], cs[sel]]).sum())
        if p:
            lo_r, hi_r = int(rows.min()) - p.row, int(rows.max()) - p.row
            lo_c, hi_c = int(cols.min()) - p.col, int(cols.max()) - p.col
            old_r, old_c = agg["tile_rows"] or [lo_r, hi_r], agg["tile_cols"] or [lo_c, hi_c]
            agg["tile_rows"] = [min(old_r[0], lo_r), max(old_r[1], hi_r)]
            agg["tile_cols"] = [min(old_c[0], lo_c), max(old_c[1], hi_c)]
    room = unit.max_mismatches - len(out["mismatches"])
    for r, c in zip(rs[:max(0, room)], cs[:max(0, room)]):
        k = int(owner[r, c])
        p = unit.placements[k] if k >= 0 else None
        row, col = r0 + int(r), c0 + int(c)
        m = {"tile": p.tile if p else None, "year": unit.year, "group": unit.group, "key": key, "field": field,
             "row": row, "col": col, "tile_row": row - p.row if p else None, "tile_col": col - p.col if p else None,
             "x": unit.grid.x_centre(col), "y": unit.grid.y_centre(row)}
        if field == SCALES.name:
            m["store"], m["expected"] = float(st_s[r, c]), float(exp_s[r, c])
        else:
            diff = np.flatnonzero(st_e[:, r, c] != exp_e[r, c, :])
            b = int(diff[0])
            m["store"], m["expected"] = int(st_e[b, r, c]), int(exp_e[r, c, b])
            m["band"] = b
            m["bands_differing"] = int(diff.size)
        out["mismatches"].append(m)


# ------------------------------------------------------------------------------------------ orchestration

def _zone_setup(view: StoreView, report: ValidationReport) -> dict[str, dict]:
    """Per zone group: grid, time axis, shard and chunk shapes (from the store's own metadata)."""
    zones = {}
    for g in view.children(""):
        zone = group_zone(g.name) if g.is_group else None
        if zone is None:
            continue
        emb, sc = view.child(g.path, EMBEDDINGS.name), view.child(g.path, SCALES.name)
        time = view.time_values.get(g.path)
        try:
            grid = grid_of(zone, g.attrs)
            ok = emb.spec.sharded and sc.spec.sharded and time is not None
        except Exception:  # noqa: BLE001 - a zone whose metadata is unusable is not compared
            ok = False
        if not ok:
            report.add(Finding(WARNING, LEVEL, "not-compared", g.key, "zone not compared: its grid, time axis or shard "
                               "layout is unusable (metadata findings)"))
            continue
        zones[g.path] = {"zone": zone, "grid": grid, "time": list(time), "shard": tuple(sc.spec.chunk_shape[-2:]),
                         "chunk": tuple(sc.spec.shard.inner_shape[-2:])}
    return zones


def check_fidelity(view: StoreView, structure: StructureResult, report: ValidationReport, access: StoreAccess,
                   archive, *, sample: int | None, seed: int, workers: int, progress: bool,
                   max_mismatches: int = 1000) -> None:
    """Compare the store with the legacy archive (listed by `open_archive`) at `access.source_url`."""
    from transcode.engine.executors import make_executor
    from transcode.legacy.inventory import build_inventory
    from transcode.validate.content import sample_chunks

    try:
        inv = build_inventory(archive, progress=progress)
    except TransientStorageError:
        raise
    except (ArchiveError, StorageError) as e:
        raise UsageError(access.source_url, f"source archive unusable for --level fidelity: {e}") from e
    zones = _zone_setup(view, report)
    tasks = {}
    skipped = []
    for key in sorted({(z["shard"], z["chunk"], tuple(z["time"])) for z in zones.values()}):
        group = {p: z for p, z in zones.items() if (z["shard"], z["chunk"], tuple(z["time"])) == key}
        plan = make_plan(inv, zones=[z["zone"] for z in group.values()], shard=key[0], chunk=key[1],
                         time=list(key[2]), grids={z["zone"]: z["grid"] for z in group.values()})
        skipped += plan.skipped
        for t in plan.iter_tasks():
            if t.group in group:
                tasks[(t.group, t.t, t.shard_row, t.shard_col)] = t
    for p in skipped:
        report.add(Finding(INFO, LEVEL, "source-skipped", p.path, f"source tile {p.tile} {p.year} is unusable and "
                           f"not expected in the store (the converter skips it too): {p.message}"))
    manifest = None  # object checksums are the content level's business
    try:
        depths = depths_of(view.nodes[""].attrs)
    except ValueError:
        depths = ()  # reported at the metadata level
    units: list[tuple[FidelityUnit, int]] = []
    present = set()
    for ek, sk in structure.pairs:
        e, s = structure.shards[ek], structure.shards[sk]
        group = view.nodes[s.array].parent or ""
        if group not in zones:
            continue
        t, sr, sc = s.coords
        present.add((group, t, sr, sc))
        if not (e.sound and s.sound):
            report.add(Finding(INFO, LEVEL, "not-compared", sk, "not compared: a shard index is unusable "
                               "(structure finding)"))
            continue
        z = zones[group]
        task = tasks.get((group, t, sr, sc))
        year = z["time"][t] if t < len(z["time"]) else None
        nested = []
        for d in depths:
            dk = depth_arrays(d)[0].shard_key(group, t, sr, sc)
            dsh = structure.shards.get(dk)
            if dsh is not None and dsh.sound:  # a missing or broken one is a structure finding
                nested.append((d, make_ref(view, dsh.array, dk, dsh.size, dsh.coords, manifest)))
        units.append((FidelityUnit(group, year, make_ref(view, e.array, ek, e.size, e.coords, manifest),
                                   make_ref(view, s.array, sk, s.size, s.coords, manifest), sr, sc,
                                   z["grid"], task.placements if task else (),
                                   max_mismatches=max_mismatches, depths=tuple(nested)), s.written or 0))
    missing: dict[tuple, list] = defaultdict(list)
    for (group, t, sr, sc), task in sorted(tasks.items()):
        if (group, t, sr, sc) not in present:
            missing[(group, task.year)].append(task)
    for (group, year), ts in sorted(missing.items()):
        tiles = sorted({p.tile for t in ts for p in t.placements})
        report.add(Finding(WARNING, LEVEL, "not-converted", ts[0].key(SCALES.name), f"{len(ts)} shards of {group} {year} "
                           f"that the source fills ({len(tiles)} tiles, e.g. {tiles[0]}) are not in the store: "
                           "no data yet (+inf), not compared", details={"shards": [t.key(SCALES.name) for t in ts][:100],
                                                                       "tiles": tiles[:100]}))
    if sample:
        todo = [replace(u, select=ords) for u, ords in sample_chunks(units, sample, seed)]
    else:
        todo = [u for u, _ in units]
    executor = make_executor(workers)
    job = access if executor.name == "inline" else access.for_processes()
    counts = FidelityCounts()
    mismatches: list[dict] = []
    per_tile: dict[str, dict] = {}
    bar = tqdm(total=len(todo), desc="fidelity", unit="shard", disable=not progress)
    try:
        for res in executor.run(fidelity_unit, todo, job):
            for f in res["findings"]:
                report.add(_from_dict(f))
            counts.add(res["counts"])
            mismatches += res["mismatches"]
            for k, agg in res["per_tile"].items():
                per_tile[k] = agg
            report.counters["bytes_read"] += res["reads"].get("bytes", 0)
            report.counters["source_bytes_read"] += res["reads"].get("source_bytes", 0)
            if res["reads"].get("depth_pixels"):
                report.counters["depth_pixels_compared"] += res["reads"]["depth_pixels"]
            bar.update(1)
    finally:
        bar.close()
        executor.close()
    for agg in sorted(per_tile.values(), key=lambda a: (a["key"], a["tile"] or "", a["field"])):
        first = agg["first"]
        where = (f"tile {agg['tile']} {agg['year']} px (row {first['tile_row']}, col {first['tile_col']})"
                 if agg["tile"] else f"{agg['group']} px (row {first['row']}, col {first['col']}), where no tile lies")
        span = (f" within tile rows {agg['tile_rows'][0]}..{agg['tile_rows'][1]}, cols {agg['tile_cols'][0]}.."
                f"{agg['tile_cols'][1]}" if agg["tile"] else "")
        hint = (": the store holds no data there (+inf), so the tile came after the conversion or was lost"
                if agg.get("store_fill") == agg["count"] and agg["tile"] else "")
        report.add(Finding(ERROR, LEVEL, "pixel-mismatch", agg["key"], f"{agg['count']} pixels' {agg['field']} differ "
                           f"from the source{span}; first at {where}{hint}",
                           details={"tile": agg["tile"], "year": agg["year"], "field": agg["field"],
                                    "count": agg["count"], "first": first}))
    mismatches.sort(key=lambda m: (m["group"], m["year"] or 0, m["row"], m["col"], m["field"]))
    counts.tile_years = len({(p.year, p.tile) for t in tasks.values() for p in t.placements})
    report.fidelity = {"source": access.source_url, "sampled_chunks": sample, "compared": counts.compared,
                       **{k: getattr(counts, k) for k in ("exact", "water_masked", "invalid_scale", "empty",
                                                          "mismatched", "overlap", "chunks", "shards", "tile_years")},
                       "mismatches": mismatches[:max_mismatches],
                       "mismatches_truncated": len(mismatches) > max_mismatches or counts.mismatched > len(mismatches)}
