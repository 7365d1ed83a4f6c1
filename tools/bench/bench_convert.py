#!/usr/bin/env python3
"""Benchmark `convert` against (a) a baseline that builds each shard in memory and writes it with zarr-python's
sharded array assignment and (b) the codec-bound limit (only compressing the same inner chunks, same codec,
same number of processes); (c) also times only the MD5 of the shard objects convert wrote (the store manifest
records it), to show what share of the gap to (b) is hashing; (d) `convert --no-stretch-stats`, for the cost of
the stretch statistics (convert collects them by default); (e) where tensorstore is installed, a second baseline that
writes each whole shard with tensorstore's zarr3 driver. Same data, same workers, one run. Reports medians
and peak RSS per process.

  python3 tools/bench/bench_convert.py --workdir /tmp/bench --runs 3 --workers 2 --years 1,2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import psutil

from transcode.format.arrays import BANDS, EMBEDDINGS, SCALES

# a dense block of 4 x 8 equatorial tiles in zone 31 (each ~1105x1113 px, ~158 MB): two full 4096 x 4096 shards
# and slivers per year, so two workers get equal work
TILES = [f"grid_{lon / 100:.2f}_{lat / 100:.2f}" for lat in (35, 25, 15, 5) for lon in range(305, 385, 10)]
LAST_YEAR = 2024
MAX_YEARS = 2


class PeakRSS:
    """Poll a process tree and keep the peak resident set size and the last CPU seconds (user + system) seen of
    every process in it (the CPU of a process is that of its last poll: up to `interval` of it may be missed)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.peaks: dict[int, int] = {pid: 0}  # the root first
        self.cpu: dict[int, float] = {pid: 0.0}
        self.interval = interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    times = p.cpu_times()
                except psutil.Error:
                    continue
                self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), rss)
                self.cpu[p.pid] = times.user + times.system
            time.sleep(self.interval)

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._t.join()
        return self.peaks


def _version(dist: str) -> str:
    """Installed version of a distribution."""
    from importlib.metadata import version

    return version(dist)


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: other work sharing the cores shows here."""
    return [round(v, 2) for v in os.getloadavg()]


def timed(cmd: list[str], cpu: dict[int, float] | None = None) -> tuple[float, dict, dict[int, int]]:
    """Run a command, return (seconds, its JSON output, peak RSS per process of its tree, the command's own first);
    with `cpu`, fill it with the CPU seconds of every process of the tree (same order)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mon = PeakRSS(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    peaks = mon.stop()
    if cpu is not None:
        cpu.update(mon.cpu)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, json.loads(out) if out.strip() else {}, peaks


# ------------------------------------------------------------------ worker-side code (run in subprocesses)

def _plan(inventory: str, years: list[int]):
    from transcode.engine.plan import make_plan
    from transcode.legacy.inventory import read_inventory

    return make_plan(read_inventory(inventory), years=years)


def _shard_arrays(shard):
    """One shard of embeddings and of scales in memory, at their fill values."""
    sh, sw = shard
    return (np.full((1, BANDS, sh, sw), EMBEDDINGS.fill, EMBEDDINGS.dtype),
            np.full((1, sh, sw), SCALES.fill, SCALES.dtype))


def _paint(task, source, shard, emb, sc):
    """Fill the whole shard arrays (baseline) with the same reading and sentinel rules as convert."""
    from transcode.engine.shardbuild import sanitize_scales, tile_files
    from transcode.legacy.tiles import Window, read_landmask

    sh, sw = shard
    r_base, c_base = task.shard_row * sh, task.shard_col * sw
    for p in task.placements:
        rr, cc = p.rows_in(r_base, r_base + sh), p.cols_in(c_base, c_base + sw)
        win = Window(rr[0] - p.row, rr[1] - p.row, cc[0] - p.col, cc[1] - p.col)
        ef, sf = tile_files(source, p)
        e, s = ef.read(win), sf.read(win)
        mask = read_landmask(source, p.landmask_key) if p.landmask_key else None
        sanitize_scales(s, None if mask is None else mask[win.row0:win.row1, win.col0:win.col1])
        ys, xs = slice(rr[0] - r_base, rr[1] - r_base), slice(cc[0] - c_base, cc[1] - c_base)
        emb[0, :, ys, xs] = e.transpose(2, 0, 1)
        sc[0, ys, xs] = s


def baseline_shard(task, source_dir: str, store_dir: str, shard) -> int:
    """The incumbent's approach: the whole shard in memory, then zarr-python sharded assignment."""
    import zarr

    from transcode.storage import LocalStorage

    emb, sc = _shard_arrays(shard)
    _paint(task, LocalStorage(source_dir), shard, emb, sc)
    sh, sw = shard
    g = zarr.open_group(store_dir, mode="r+")
    r0, c0 = task.shard_row * sh, task.shard_col * sw
    g[f"{task.group}/{EMBEDDINGS.name}"][task.t:task.t + 1, :, r0:r0 + sh, c0:c0 + sw] = emb
    g[f"{task.group}/{SCALES.name}"][task.t:task.t + 1, r0:r0 + sh, c0:c0 + sw] = sc
    return 0


def tensorstore_shard(task, source_dir: str, store_dir: str, shard) -> int:
    """What a tensorstore user would write: the whole shard in memory, then one write of the shard's region per array
    (tensorstore's zarr3 driver, default context: it encodes inner chunks with its own thread pools)."""
    import tensorstore as ts

    from transcode.storage import LocalStorage

    emb, sc = _shard_arrays(shard)
    _paint(task, LocalStorage(source_dir), shard, emb, sc)
    sh, sw = shard
    r0, c0 = task.shard_row * sh, task.shard_col * sw
    for name, data, region in ((EMBEDDINGS.name, emb, (slice(task.t, task.t + 1), slice(None), slice(r0, r0 + sh),
                                                      slice(c0, c0 + sw))),
                               (SCALES.name, sc, (slice(task.t, task.t + 1), slice(r0, r0 + sh), slice(c0, c0 + sw)))):
        arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{store_dir}/{task.group}/{name}"}},
                      open=True).result()
        arr[region].write(data).result()
    return 0


def codec_shard(task, source_dir: str, shard, chunk) -> float:
    """Seconds spent only compressing this shard's non-empty inner chunks with the default codecs."""
    import numcodecs

    from transcode.codecs.spec import parse_codec_options
    from transcode.storage import LocalStorage

    numcodecs.blosc.set_nthreads(1)
    codecs = parse_codec_options(None)
    enc_e = codecs[EMBEDDINGS.codec].encoder(EMBEDDINGS.dtype)
    enc_s = codecs[SCALES.codec].encoder(SCALES.dtype)
    sh, sw = shard
    ch, cw = chunk
    emb, sc = _shard_arrays(shard)
    _paint(task, LocalStorage(source_dir), shard, emb, sc)
    spent = 0.0
    for i in range(sh // ch):
        # the chunks of one row of the shard, contiguous, prepared outside the timed region
        e_row = np.ascontiguousarray(emb[0, :, i * ch:(i + 1) * ch].reshape(128, ch, sw // cw, cw).transpose(2, 0, 1, 3))
        s_row = np.ascontiguousarray(sc[0, i * ch:(i + 1) * ch].reshape(ch, sw // cw, cw).transpose(1, 0, 2))
        for j in range(sw // cw):
            if np.isposinf(s_row[j]).all():
                continue
            t0 = time.perf_counter()
            enc_e(e_row[j])
            enc_s(s_row[j])
            spent += time.perf_counter() - t0
    return spent


def md5_file(path: str) -> float:
    """Seconds spent only computing the MD5 of one store object (read first, outside the timed region)."""
    import hashlib

    with open(path, "rb") as f:
        data = f.read()
    t0 = time.perf_counter()
    hashlib.md5(data).digest()
    return time.perf_counter() - t0


def worker_main(args) -> None:
    """`--worker baseline|codec`: run one method over the plan with a process pool, print JSON."""
    plan = _plan(args.inventory, args.years)
    ctx = get_context("spawn")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        if args.worker in ("baseline", "tensorstore"):
            from transcode import __version__
            from transcode.codecs.spec import parse_codec_options
            from transcode.engine.shardbuild import EncodeSettings
            from transcode.format.metadata import build_metadata
            from transcode.storage import LocalStorage

            settings = EncodeSettings(plan.shard, plan.chunk, parse_codec_options(None))
            store = LocalStorage(args.store)
            for k, v in build_metadata(plan.grids, plan.time, shard=settings.shard, chunk=settings.chunk,
                                       codecs=settings.codecs, build_version=__version__,
                                       model_version=plan.inventory.dataset.version).items():
                store.put(k, v)
            list(pool.map(baseline_shard if args.worker == "baseline" else tensorstore_shard, plan.tasks, [args.source] * len(plan.tasks), [args.store] * len(plan.tasks),
                          [plan.shard] * len(plan.tasks)))
            print(json.dumps({"seconds": time.perf_counter() - t0, "shards": len(plan.tasks)}))
        elif args.worker == "md5":
            files = sorted(str(p) for p in Path(args.store).rglob("*") if p.is_file() and "/c/" in str(p))
            print(json.dumps({"md5_seconds": sum(pool.map(md5_file, files)), "objects": len(files)}))
        else:
            spent = list(pool.map(codec_shard, plan.tasks, [args.source] * len(plan.tasks),
                                  [plan.shard] * len(plan.tasks), [plan.chunk] * len(plan.tasks)))
            print(json.dumps({"compress_seconds": sum(spent), "per_task": spent}))


# ------------------------------------------------------------------ driver

def prepare(workdir: Path, n_years: int) -> tuple[Path, Path, list[int], int]:
    """One archive of MAX_YEARS years; a size is its last `n_years` years."""
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory, write_inventory
    from transcode.testing.synthetic import make_legacy_archive

    src = workdir / "archive"
    if not (src / "registry.parquet").exists():
        shutil.rmtree(src, ignore_errors=True)
        make_legacy_archive(src, years=range(LAST_YEAR - MAX_YEARS + 1, LAST_YEAR + 1), tiles=TILES, seed=5)
    years = list(range(LAST_YEAR - n_years + 1, LAST_YEAR + 1))
    inv = workdir / "inventory.parquet"
    inventory = build_inventory(open_archive(str(src)))
    write_inventory(inventory, inv)
    nbytes = sum(t.embeddings_size + t.scales_size for t in inventory.tiles if t.year in years)
    for p in src.rglob("*.npy"):  # warm the page cache: every method reads from memory
        if int(p.parent.parent.name) in years:
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass
    return src, inv, years, nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="bench-work", help="where archives and stores go (default ./bench-work)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--years", default="1,2", help="archive sizes to run, in years of 32 tiles (default 1,2)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-codec", action="store_true", help="skip the codec-bound and MD5 rows (e.g. when only the "
                    "cost of the stretch statistics is wanted)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-tensorstore", action="store_true", help="skip the tensorstore baseline (it runs where "
                    "tensorstore is installed)")
    ap.add_argument("--worker", choices=["baseline", "tensorstore", "codec", "md5"], help=argparse.SUPPRESS)
    ap.add_argument("--inventory", help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.years = [int(y) for y in args.years.split(",")]
        worker_main(args)
        return
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                           "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
               "workers": args.workers, "runs": args.runs, "sizes": []}
    me = [sys.executable, str(Path(__file__).resolve())]
    with_tensorstore = not args.skip_tensorstore and importlib.util.find_spec("tensorstore") is not None
    import zarr

    results["versions"] = {"zarr": zarr.__version__, "tensorstore": _version("tensorstore") if with_tensorstore else None}
    for n_years in [int(y) for y in args.years.split(",")]:
        src, inv, years, nbytes = prepare(workdir, n_years)
        ylist = ",".join(map(str, years))
        row = {"years": n_years, "tiles": len(TILES) * n_years, "input_bytes": nbytes, "ours": [], "ours_no_stats": [],
               "baseline": [], "tensorstore": [], "codec_bound": [], "md5_bound": []}
        for run in range(args.runs):
            # without the stretch statistics first, then with them (the default), into a fresh store each
            for name, extra in (("ours_no_stats", ["--no-stretch-stats"]), ("ours", [])):
                store = workdir / "store-ours"
                shutil.rmtree(store, ignore_errors=True)
                load_before = load_average()
                cpu: dict[int, float] = {}
                s, out, peaks = timed([sys.executable, "-m", "transcode", "convert", str(src), str(store),
                                       "--inventory", str(inv), "--years", ylist, "--workers", str(args.workers),
                                       "--json", "--no-progress", *extra], cpu)
                parent_cpu, *others_cpu = cpu.values()
                row[name].append({"seconds": s, "peak_rss_mib": sorted(v / 2**20 for v in peaks.values()),
                                  "cpu_seconds": {"parent": round(parent_cpu, 2),
                                                  "others": sorted(round(v, 2) for v in others_cpu)},
                                  "load_average_before": load_before, "load_average_after": load_average()})
            if not args.skip_codec:
                # the store manifest needs each object's MD5: the time to hash the shard objects, same workers
                _, out, _ = timed(me + ["--worker", "md5", "--inventory", str(inv), "--store", str(store),
                                        "--years", ylist, "--workers", str(args.workers)])
                row["md5_bound"].append({"seconds": out["md5_seconds"] / args.workers})
            if not args.skip_baseline:
                store = workdir / "store-baseline"
                shutil.rmtree(store, ignore_errors=True)
                s, out, peaks = timed(me + ["--worker", "baseline", "--inventory", str(inv), "--source", str(src),
                                            "--store", str(store), "--years", ylist, "--workers", str(args.workers)])
                row["baseline"].append({"seconds": s, "peak_rss_mib": sorted(v / 2**20 for v in peaks.values())})
            if with_tensorstore:
                store = workdir / "store-tensorstore"
                shutil.rmtree(store, ignore_errors=True)
                s, out, peaks = timed(me + ["--worker", "tensorstore", "--inventory", str(inv), "--source", str(src),
                                            "--store", str(store), "--years", ylist, "--workers", str(args.workers)])
                row["tensorstore"].append({"seconds": s, "peak_rss_mib": sorted(v / 2**20 for v in peaks.values())})
            if not args.skip_codec:
                s, out, _ = timed(me + ["--worker", "codec", "--inventory", str(inv), "--source", str(src),
                                        "--years", ylist, "--workers", str(args.workers)])
                row["codec_bound"].append({"seconds": out["compress_seconds"] / args.workers})
            print(f"[{n_years}y run {run + 1}] ours {row['ours'][-1]['seconds']:.1f}s"
                  + f", without stretch statistics {row['ours_no_stats'][-1]['seconds']:.1f}s"
                  + (f", baseline {row['baseline'][-1]['seconds']:.1f}s" if row["baseline"] else "")
                  + (f", tensorstore {row['tensorstore'][-1]['seconds']:.1f}s" if row["tensorstore"] else "")
                  + (f", codec-bound {row['codec_bound'][-1]['seconds']:.1f}s" if row["codec_bound"] else "")
                  + (f", md5 {row['md5_bound'][-1]['seconds']:.1f}s" if row["md5_bound"] else "")
                  + f", load average {load_average()}", file=sys.stderr)
        med = lambda xs: statistics.median(x["seconds"] for x in xs)  # noqa: E731
        row["median"] = {k: med(row[k]) for k in ("ours", "ours_no_stats", "baseline", "tensorstore", "codec_bound",
                                                  "md5_bound")
                         if row[k]}
        # the cost of the stretch statistics: convert with them over convert without them, medians of one run
        row["stretch_stats_ratio"] = row["median"]["ours"] / row["median"]["ours_no_stats"]
        row["stretch_stats_ratio_per_run"] = [a["seconds"] / b["seconds"] for a, b in zip(row["ours"],
                                                                                           row["ours_no_stats"])]
        row["throughput_mb_s"] = {k: nbytes / v / 1e6 for k, v in row["median"].items() if k != "md5_bound"}
        if row["baseline"]:
            row["speedup_vs_baseline"] = row["median"]["baseline"] / row["median"]["ours"]
            row["peak_worker_rss_mib_baseline"] = max(max(r["peak_rss_mib"]) for r in row["baseline"])
        if row["tensorstore"]:
            row["speedup_vs_tensorstore"] = row["median"]["tensorstore"] / row["median"]["ours"]
            row["peak_worker_rss_mib_tensorstore"] = max(max(r["peak_rss_mib"]) for r in row["tensorstore"])
        if row["codec_bound"]:
            row["fraction_of_codec_bound"] = row["median"]["codec_bound"] / row["median"]["ours"]
            # the same with the manifest's MD5 counted in the limit: compressing and hashing, nothing else
            row["fraction_of_codec_and_md5_bound"] = (row["median"]["codec_bound"] + row["median"]["md5_bound"]) / \
                row["median"]["ours"]
            # the statistics are work the bound does not do: the same fraction for convert without them
            row["fraction_of_codec_and_md5_bound_no_stats"] = (row["median"]["codec_bound"]
                                                               + row["median"]["md5_bound"]) / row["median"]["ours_no_stats"]
            # the ceiling convert's own CPU leaves: every CPU second of its processes spread over the workers'
            # cores with nothing idle (the bound is the codec and MD5 work alone, spread the same way)
            for name in ("ours", "ours_no_stats"):
                total = statistics.median(r["cpu_seconds"]["parent"] + sum(r["cpu_seconds"]["others"])
                                          for r in row[name])
                row[f"cpu_seconds_{name}"] = round(total, 2)
                row[f"ceiling_fraction_of_codec_and_md5_bound_{name}"] = (
                    (row["median"]["codec_bound"] + row["median"]["md5_bound"]) / (total / args.workers))
        row["peak_worker_rss_mib_ours"] = max(max(r["peak_rss_mib"]) for r in row["ours"])
        row["peak_worker_rss_mib_ours_no_stats"] = max(max(r["peak_rss_mib"]) for r in row["ours_no_stats"])
        results["sizes"].append(row)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
