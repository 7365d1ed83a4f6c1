#!/usr/bin/env python3
"""Where one shard's CPU time goes: `build_shard` on the biggest shard of the `bench_convert.py` archive,
against each unavoidable step timed alone in the same process on the same data: compressing the inner chunks
(the codec-bound row of bench_convert), hashing the output (MD5, CRC32C: the store manifest records both),
reading the tile windows from the page cache, and reordering pixels into band planes. Medians of `--runs`.

The stretch statistics: `build_shard` with and without them, the statistics alone as convert computes them
(float64 products, BLAS syrk), and the alternative the issue names, float32 products accumulated in float64 per
block, with the largest relative error it makes against a float64 reference on the same pixels (the statistics
must stay within 1e-9), at two block sizes; and the floor of exact float64 products: BLAS syrk alone on the same
valid pixels already converted to float64, with the rate it reaches in multiply-adds per second. Every step runs
with one BLAS thread, as convert's workers do (a second BLAS thread would spin on the other worker's core).

  python3 tools/bench/bench_shard_costs.py --workdir /tmp/bench --runs 3

Run `bench_convert.py` first with the same --workdir: it makes the archive and its inventory."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import crc32c
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import LAST_YEAR, codec_shard, load_average  # noqa: E402


def cpu(fn) -> float:
    """CPU seconds of this process (every thread) spent in fn()."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        run()


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="bench-work")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import numcodecs

    from transcode.codecs.spec import parse_codec_options
    from transcode.engine.plan import make_plan
    from transcode.engine.shardbuild import EncodeSettings, StretchTarget, build_shard, tile_files
    from transcode.engine.stretchstats import ShardStats
    from transcode.format.sentinels import sanitize_scales
    from transcode.legacy.tiles import read_landmask
    from transcode.engine.transpose import band_to_chunks
    from transcode.legacy.inventory import read_inventory
    from transcode.legacy.tiles import Window
    from transcode.storage import LocalStorage

    numcodecs.blosc.set_nthreads(1)
    work = Path(args.workdir).resolve()
    plan = make_plan(read_inventory(str(work / "inventory.parquet")), years=[LAST_YEAR])
    task = max(plan.tasks, key=lambda t: t.work(plan.shard))
    settings = EncodeSettings(plan.shard, plan.chunk, parse_codec_options(None))
    source = LocalStorage(str(work / "archive"))
    out = work / "shard-costs"
    sh, sw = plan.shard
    ch, cw = plan.chunk
    band = settings.band_rows
    rows: dict[str, list[float]] = {k: [] for k in ("build_shard", "compress", "md5", "crc32c", "read", "reorder",
                                                    "build_shard_stats", "stats_f64", "syrk_f64",
                                                    "stats_f32", "stats_f32_block256")}

    def objects() -> list[bytes]:
        return [p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and "/c/" in str(p)]

    def read_all(buf: np.ndarray) -> None:
        r_base, c_base = task.shard_row * sh, task.shard_col * sw
        for r0 in range(0, sh, band):
            for p in task.placements:
                rr, cc = p.rows_in(r_base + r0, r_base + r0 + band), p.cols_in(c_base, c_base + sw)
                if rr is None or cc is None:
                    continue
                win = Window(rr[0] - p.row, rr[1] - p.row, cc[0] - p.col, cc[1] - p.col)
                e, s = tile_files(source, p)
                view = buf[:rr[1] - rr[0], :cc[1] - cc[0]]
                e.read_into(win, view)
                s.read(win)

    emb_band = np.zeros((band, sw, 128), np.int8)
    emb_chunks = np.zeros(emb_band.size, np.int8).reshape(band // ch, sw // cw, 128, ch, cw)

    def shard_pixels() -> tuple[np.ndarray, np.ndarray]:
        """The shard's embeddings (sh, sw, 128) and sanitized scales (sh, sw), as build_shard assembles them."""
        r_base, c_base = task.shard_row * sh, task.shard_col * sw
        emb = np.zeros((sh, sw, 128), np.int8)
        sc = np.full((sh, sw), np.inf, np.float32)
        for p in task.placements:
            rr, cc = p.rows_in(r_base, r_base + sh), p.cols_in(c_base, c_base + sw)
            win = Window(rr[0] - p.row, rr[1] - p.row, cc[0] - p.col, cc[1] - p.col)
            e, s = tile_files(source, p)
            mask = read_landmask(source, p.landmask_key) if p.landmask_key else None
            dst = (slice(rr[0] - r_base, rr[1] - r_base), slice(cc[0] - c_base, cc[1] - c_base))
            e.read_into(win, emb[dst])
            sc[dst] = sanitize_scales(s.read(win), None if mask is None else mask[win.row0:win.row1,
                                                                                   win.col0:win.col1])
        return emb, sc

    def stats_f64(emb: np.ndarray, sc: np.ndarray) -> ShardStats:
        st = ShardStats(task.zone, task.year, 20000)
        for i in range(0, sh, ch):
            st.add(emb[i:i + ch], sc[i:i + ch], i, 0)
        return st

    def stats_f32(emb: np.ndarray, sc: np.ndarray, block: int = 8192) -> np.ndarray:
        m = np.zeros((128, 128))
        x = np.empty((block, 128), np.float32)
        for i in range(0, sh, ch):
            strip, s = emb[i:i + ch], sc[i:i + ch]
            valid = (s > 0) & (s < 1)
            q, w = strip[valid], s[valid]
            for j in range(0, len(q), block):
                xb = x[:min(block, len(q) - j)]
                np.multiply(q[j:j + block], w[j:j + block, None], out=xb)
                m += (xb.T @ xb).astype(np.float64)
        return m

    def syrk_f64(blocks: list[np.ndarray], count: int) -> None:
        out = np.empty((128, 128))
        for i in range(count):
            x = blocks[i % len(blocks)]
            np.matmul(x.T, x, out=out)

    shard_emb, shard_sc = shard_pixels()
    valid = (shard_sc > 0) & (shard_sc < 1)
    valid_pixels = int(valid.sum())
    reference = stats_f64(shard_emb, shard_sc).m
    f32_error = float(np.max(np.abs(stats_f32(shard_emb, shard_sc) - reference)) / np.max(np.abs(reference)))
    f32_256_error = float(np.max(np.abs(stats_f32(shard_emb, shard_sc, 256) - reference))
                          / np.max(np.abs(reference)))
    # convert's blocks of 2048 valid pixels in float64: the first 64 (128 MiB; all of them would take 12 GiB),
    # multiplied in turn as many times as the shard has blocks
    first = np.flatnonzero(valid.ravel())[:64 * 2048]
    x64 = shard_emb.reshape(-1, 128)[first].astype(np.float64) * shard_sc.ravel()[first].astype(np.float64)[:, None]
    f64_blocks = [x64[i:i + 2048] for i in range(0, len(x64), 2048)]
    f64_count = -(-valid_pixels // 2048)
    loads = []  # the machine's load averages at the start and end of each run
    for run in range(args.runs):
        loads.append({"before": load_average()})
        shutil.rmtree(out, ignore_errors=True)
        rows["build_shard"].append(cpu(lambda: build_shard(task, settings, source, LocalStorage(str(out)))))
        rows["compress"].append(codec_shard(task, str(work / "archive"), plan.shard, plan.chunk))
        data = objects()
        rows["md5"].append(cpu(lambda: [hashlib.md5(d).digest() for d in data]))
        rows["crc32c"].append(cpu(lambda: [crc32c.crc32c(d) for d in data]))
        data.clear()  # 1.7 GB: not held while the read and reorder steps run
        rows["read"].append(cpu(lambda: read_all(emb_band)))
        rows["reorder"].append(cpu(lambda: [band_to_chunks(emb_band, ch, cw, emb_chunks) for _ in range(sh // band)]))
        shutil.rmtree(out, ignore_errors=True)
        target = StretchTarget(20000, ".tessera/bench.stats")
        rows["build_shard_stats"].append(cpu(lambda: build_shard(task, settings, source, LocalStorage(str(out)),
                                                                 target)))
        rows["stats_f64"].append(cpu(lambda: stats_f64(shard_emb, shard_sc)))
        rows["syrk_f64"].append(cpu(lambda: syrk_f64(f64_blocks, f64_count)))
        rows["stats_f32"].append(cpu(lambda: stats_f32(shard_emb, shard_sc)))
        rows["stats_f32_block256"].append(cpu(lambda: stats_f32(shard_emb, shard_sc, 256)))
        loads[-1]["after"] = load_average()
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items())
              + f", load average {loads[-1]}", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    steps = med["compress"] + med["md5"] + med["crc32c"] + med["read"] + med["reorder"]
    print(json.dumps({
        "shard": task.name, "placements": len(task.placements), "runs": rows, "load_average": loads,
        "median_cpu_s": med,
        "fraction_of_codec_bound": med["compress"] / med["build_shard"],
        "ceiling_with_only_the_listed_steps": med["compress"] / steps,
        "ceiling_without_hashing": med["compress"] / (steps - med["md5"]),
        "other_cpu_s": med["build_shard"] - steps,
        "valid_pixels": valid_pixels,
        "stretch_stats_ratio": med["build_shard_stats"] / med["build_shard"],
        "stats_f64_ns_per_valid_pixel": med["stats_f64"] / valid_pixels * 1e9,
        "stats_f32_ns_per_valid_pixel": med["stats_f32"] / valid_pixels * 1e9,
        "stats_f32_max_relative_error": f32_error,
        "stats_f32_block256_ns_per_valid_pixel": med["stats_f32_block256"] / valid_pixels * 1e9,
        "stats_f32_block256_max_relative_error": f32_256_error,
        "syrk_f64_ns_per_valid_pixel": med["syrk_f64"] / (f64_count * 2048) * 1e9,
        # syrk does the n x 128 x 129 / 2 multiply-adds of one triangle
        "syrk_f64_gfma_per_s": f64_count * 2048 * 128 * 129 / 2 / med["syrk_f64"] / 1e9,
    }, indent=2))


if __name__ == "__main__":
    main()
