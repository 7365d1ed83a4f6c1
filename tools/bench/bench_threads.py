#!/usr/bin/env python3
"""Threads within a shard (issue 14): the 2-shard job of the issue, 16 tiles that fill one large and one small
shard, converted with `--workers 2` and one encoding thread per worker against the default (every core per
worker), the default without the stretch statistics (`--no-stretch-stats`: the bound below leaves them out), and
the 2-core codec+hash-bound time of its shards: compressing their inner chunks and the MD5 of the objects convert
wrote, summed over both shards and divided by 2 cores (the whole work spread perfectly). Same data,
one run, medians; the machine's load average before and after every run, peak RSS per process.

  python3 tools/bench/bench_threads.py --workdir bench-work --runs 3

The archive is a 4 x 4 block of tiles at 50 N (each ~715 x 1112 px) in zone 31: 2,860 px wide and 4,450 px tall,
so one 4096 x 4096 shard holds 92 % of its pixels and a second shard the last 354 rows."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import load_average, timed

TILES = [f"grid_{lon / 100:.2f}_{lat / 100:.2f}" for lat in (5035, 5025, 5015, 5005) for lon in (55, 65, 75, 85)]
YEAR = 2024


def prepare(workdir: Path) -> tuple[Path, Path, int, list[dict]]:
    """The archive, its inventory, its input bytes and the plan's shards (pixels each); the source warmed."""
    from transcode.engine.plan import make_plan
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory, read_inventory, write_inventory
    from transcode.testing.synthetic import make_legacy_archive

    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "archive-2shard"
    if not (src / "registry.parquet").exists():
        shutil.rmtree(src, ignore_errors=True)
        make_legacy_archive(src, years=(YEAR,), tiles=TILES, seed=14)
    inv = workdir / "inventory-2shard.parquet"
    write_inventory(build_inventory(open_archive(str(src))), inv)
    inventory = read_inventory(str(inv))
    plan = make_plan(inventory)
    shards = []
    for task in plan.tasks:
        sh, sw = plan.shard
        r0, c0 = task.shard_row * sh, task.shard_col * sw
        px = sum((rr[1] - rr[0]) * (cc[1] - cc[0]) for p in task.placements
                 for rr, cc in [(p.rows_in(r0, r0 + sh), p.cols_in(c0, c0 + sw))] if rr and cc)
        shards.append({"shard": task.name, "tiles": len(task.placements), "pixels_placed": px})
    nbytes = sum(p.stat().st_size for p in src.rglob("*.npy"))
    for p in src.rglob("*.npy"):  # warm the page cache: every method reads from memory
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass
    return src, inv, nbytes, shards


def convert_run(cmd: list[str]) -> dict:
    """Run convert; its seconds, report, peak RSS of the parent and of each other process (the workers), and the
    CPU seconds of all of them."""
    cpu: dict[int, float] = {}
    seconds, report, peaks = timed(cmd, cpu)
    parent, *others = peaks.values()
    return {"seconds": seconds, "report": report, "parent_rss_mib": round(parent / 2**20),
            "other_rss_mib": sorted(round(v / 2**20) for v in others), "cpu_seconds": round(sum(cpu.values()), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="bench-work")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", help="also write the results JSON here")
    args = ap.parse_args()
    src, inv, nbytes, shards = prepare(workdir := Path(args.workdir).resolve())
    from transcode.engine.encodepool import available_cores

    results = {"machine": {"cpus": os.cpu_count(), "cores_available": available_cores(),
                           "platform": platform.platform(), "python": platform.python_version(),
                           "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
               "workers": args.workers, "runs": args.runs, "tiles": len(TILES), "input_bytes": nbytes,
               "shards": shards, "threads_1": [], "threads_default": [], "threads_default_no_stats": [],
               "codec_bound": [], "md5_bound": []}
    bench_convert = [sys.executable, str(Path(__file__).resolve().parent / "bench_convert.py")]
    store = workdir / "store-2shard"
    for run in range(args.runs):
        for name, extra in (("threads_1", ["--threads-per-worker", "1"]), ("threads_default", []),
                            ("threads_default_no_stats", ["--no-stretch-stats"])):
            shutil.rmtree(store, ignore_errors=True)
            before = load_average()
            r = convert_run([sys.executable, "-m", "transcode", "convert", str(src), str(store), "--inventory",
                             str(inv), "--workers", str(args.workers), "--json", "--no-progress", *extra])
            results[name].append({"seconds": r["seconds"], "threads_per_worker": r["report"]["threads_per_worker"],
                                  "parent_rss_mib": r["parent_rss_mib"], "worker_rss_mib": r["other_rss_mib"],
                                  "cpu_seconds": r["cpu_seconds"],
                                  "load_average_before": before, "load_average_after": load_average()})
        # the bound: every shard's compression and the MD5 of every object written, on the same 2 processes
        _, out, _ = timed(bench_convert + ["--worker", "md5", "--inventory", str(inv), "--store", str(store),
                                           "--years", str(YEAR), "--workers", str(args.workers)])
        results["md5_bound"].append({"seconds": out["md5_seconds"] / args.workers})
        _, out, _ = timed(bench_convert + ["--worker", "codec", "--inventory", str(inv), "--source", str(src),
                                           "--years", str(YEAR), "--workers", str(args.workers)])
        results["codec_bound"].append({"seconds": out["compress_seconds"] / args.workers, "per_shard": out["per_task"]})
        print(f"[run {run + 1}] 1 thread {results['threads_1'][-1]['seconds']:.1f}s, default "
              f"{results['threads_default'][-1]['seconds']:.1f}s "
              f"({results['threads_default'][-1]['threads_per_worker']} threads), without statistics "
              f"{results['threads_default_no_stats'][-1]['seconds']:.1f}s, codec-bound "
              f"{results['codec_bound'][-1]['seconds']:.1f}s + md5 {results['md5_bound'][-1]['seconds']:.1f}s, "
              f"load average {load_average()}", file=sys.stderr)
    med = {k: statistics.median(x["seconds"] for x in results[k])
           for k in ("threads_1", "threads_default", "threads_default_no_stats", "codec_bound", "md5_bound")}
    bound = med["codec_bound"] + med["md5_bound"]
    results["median"] = med
    results["codec_and_md5_bound_2_cores"] = bound
    results["ratio_to_bound"] = {k: med[k] / bound
                                 for k in ("threads_1", "threads_default", "threads_default_no_stats")}
    results["speedup_default_over_1"] = med["threads_1"] / med["threads_default"]
    # the ceiling convert's own CPU leaves: all of it (parent and workers) spread over the cores with nothing idle
    cores = results["machine"]["cores_available"]
    results["median_cpu_seconds"] = {k: statistics.median(x["cpu_seconds"] for x in results[k])
                                     for k in ("threads_1", "threads_default", "threads_default_no_stats")}
    results["ceiling_ratio_to_bound"] = {k: v / cores / bound for k, v in results["median_cpu_seconds"].items()}
    results["peak_worker_rss_mib"] = {k: max(max(r["worker_rss_mib"]) for r in results[k])
                                      for k in ("threads_1", "threads_default", "threads_default_no_stats")}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
