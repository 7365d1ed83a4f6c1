#!/usr/bin/env python3
"""Benchmark `inventory` and `plan` on sparse scale archives (tools/make_scale_archive.py) of several sizes:
peak RSS and wall time per tile-year, against the file system's own floor measured in the same run (open and
read the first 4 KiB of every file of the archive, with the same number of threads). Reports medians as JSON.

  python3 tools/bench/bench_inventory_plan.py --workdir WORKDIR --sizes 10000,100000,1000000 --runs 3

Archives are generated once in WORKDIR (a<N>/) and reused. Each run, per size: the floor, then `inventory`
(writing its Parquet), then `plan --inventory` (JSON to /dev/null); each a fresh process whose peak RSS is the
kernel's (wait4). With --convert-parent, the first run of each size also runs the convert parent with shard
building replaced by a record of two empty objects (tools/bench/convert_parent.py: inventory, passes, journal,
metadata and manifest are the real code) into a fresh store (once: it writes a journal entry per shard). One untimed floor pass first warms the page cache, so every timed pass reads warm
metadata, as the inventory of a real archive on a file system with enough cache would. --no-floor skips both
floor passes (peak RSS and time per tile-year only; the page cache is then only as warm as earlier runs left it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1]
REPO = TOOLS.parent


def files_of(root: Path) -> list[str]:
    """Every file of the archive (listed once, outside any timing)."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        out += [os.path.join(dirpath, f) for f in files]
    return out


def count_files(root: Path) -> int:
    """How many files the archive has (counted while walking, none held)."""
    return sum(len(files) for _dirpath, _dirs, files in os.walk(root))


def _head(paths: list[str]) -> int:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.pread(fd, 4096, 0)
        finally:
            os.close(fd)
    return len(paths)


def floor(paths: list[str], threads: int) -> float:
    """Seconds to open and read the first 4 KiB of every file on `threads` threads (batches of 256 files)."""
    batches = [paths[i:i + 256] for i in range(0, len(paths), 256)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        assert sum(pool.map(_head, batches)) == len(paths)
    return time.perf_counter() - t0


def measured(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in bytes, exit code) of one command in a fresh process. posix_spawn (vfork),
    not fork: a forked child's peak RSS would start at this harness's own (it holds every path of the
    archive), which at 1M tile-years is larger than the commands measured."""
    with tempfile.TemporaryFile() as err:
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
        t0 = time.perf_counter()
        pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if code not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{text[-3000:]}")
    return seconds, usage.ru_maxrss * 1024, code


def archive(workdir: Path, n: int, workers: int) -> tuple[Path, dict]:
    """The scale archive of n tile-years (generated on first use)."""
    root = workdir / f"a{n}"
    made = workdir / f"a{n}.json"
    if not made.exists():
        if root.exists():
            raise SystemExit(f"{root} exists but {made} does not: remove it or let it finish")
        out = subprocess.run([sys.executable, str(TOOLS / "make_scale_archive.py"), str(root), "--tile-years",
                              str(n), "--workers", str(workers), "--json"], capture_output=True, text=True, check=True)
        made.write_text(out.stdout)
    return root, json.loads(made.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="tile-years per archive (default 10k,100k,1M)")
    ap.add_argument("--runs", default="3", help="runs per size: one number, or one per size (e.g. 3,3,1)")
    ap.add_argument("--threads", type=int, default=8, help="inventory --workers and floor threads (default 8)")
    ap.add_argument("--convert-parent", action="store_true", help="also measure the convert parent (see above)")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the file-system floor and the warming pass (two listings of the archive; about 9 min "
                         "at 1M): peak RSS and time per tile-year only")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "transcode"]
    imports = ("import transcode.cli, transcode.legacy.inventory, transcode.engine.plan, transcode.engine.convert, "
               "pyarrow.parquet, pyproj")
    base_s, base_rss, _ = measured([sys.executable, "-c", imports])
    sizes = [int(s) for s in args.sizes.split(",")]
    runs_per = [int(r) for r in args.runs.split(",")]
    if len(runs_per) == 1:
        runs_per *= len(sizes)
    if len(runs_per) != len(sizes) or min(runs_per) < 1:
        ap.error("--runs: one count, or one per size")
    results = []
    for n, n_runs in zip(sizes, runs_per):
        root, made = archive(args.workdir, n, os.cpu_count() or 1)
        # without the floor, the paths are counted, never held: a spawned child's peak RSS starts at this
        # harness's own peak (the address space it shares until exec), which 2.1 M paths would set at ~400 MB
        paths = None if args.no_floor else files_of(root)
        n_files = count_files(root) if paths is None else len(paths)
        if paths is not None:
            floor(paths, args.threads)  # warm the page cache
        inv = args.workdir / f"inv-{n}.parquet"
        runs = []
        for run in range(n_runs):
            load = os.getloadavg()  # other sessions share the cores: each run says how busy the machine was
            f = None if args.no_floor else floor(paths, args.threads)
            i_s, i_rss, i_rc = measured([*py, "inventory", str(root), "--out", str(inv), "--workers", str(args.threads),
                                         "--no-progress", "--json"])
            p_s, p_rss, _ = measured([*py, "plan", str(root), "--inventory", str(inv), "--json", "--no-progress"])
            runs.append({"load_before": load, "floor_s": f, "inventory_s": i_s, "inventory_rss": i_rss, "inventory_exit": i_rc,
                         "plan_s": p_s, "plan_rss": p_rss})
            if args.convert_parent and run == 0:
                store = args.workdir / f"store-{n}"
                shutil.rmtree(store, ignore_errors=True)
                c_s, c_rss, _ = measured([sys.executable, str(TOOLS / "bench" / "convert_parent.py"), str(root),
                                          str(store), "--inventory", str(inv)])
                runs[-1].update({"convert_parent_s": c_s, "convert_parent_rss": c_rss})
                shutil.rmtree(store, ignore_errors=True)
            print(json.dumps({"tile_years": made["tile_years"], **runs[-1]}), file=sys.stderr)
        med = {k: statistics.median(r[k] for r in runs if k in r) for k in runs[0]
               if k not in ("inventory_exit", "load_before") and runs[0][k] is not None}
        ty = made["tile_years"]
        results.append({
            "tile_years": ty, "files": n_files, "cells": made["cells"], "years": made["years"],
            "generate_s": made["seconds"], "runs": runs, "median": med,
            "us_per_tile_year": {k: med[f"{k}_s"] / ty * 1e6 for k in ("floor", "inventory", "plan",
                                                                       "convert_parent") if f"{k}_s" in med},
            "inventory_over_floor": med["inventory_s"] / med["floor_s"] if "floor_s" in med else None,
        })
    small, large = results[0], results[-1]
    measures = ["inventory", "plan"] + (["convert_parent"] if args.convert_parent else [])
    growth = {k: (large["median"][f"{k}_rss"] - small["median"][f"{k}_rss"]) / (large["tile_years"] - small["tile_years"])
              for k in measures} if len(results) > 1 else {}
    doc = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "load_before": os.getloadavg()},
        "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, check=False).stdout.strip(),
        "threads": args.threads, "import_baseline": {"seconds": base_s, "rss": base_rss},
        "sizes": results,
        "ratios_largest_vs_smallest": {
            **{f"{k}_rss": large["median"][f"{k}_rss"] / small["median"][f"{k}_rss"] for k in measures},
            **{f"{k}_time_per_tile_year": large["us_per_tile_year"][k] / small["us_per_tile_year"][k] for k in measures},
        },
        "rss_bytes_per_tile_year": growth,
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
