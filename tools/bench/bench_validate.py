#!/usr/bin/env python3
"""Benchmark `validate --level content` against the raw decode speed of the same chunks: the same shard objects,
the same codecs, the same number of processes, one run after the other. Reports medians as JSON.

  python3 tools/bench/bench_validate.py --workdir /tmp/bench-validate --runs 3 --workers 2

The store is generated once in WORKDIR (synthetic archive + `convert`) and reused by later runs. The baseline
("raw decode") reads every chunk and shard object whole, takes a shard's index from its tail and decodes every
(inner) chunk with numcodecs, nothing else: no checks, no statistics, no checksums. Validation throughput is
decoded bytes per second of the content stage (from the report's own timing) and of the whole command (process
start, metadata and structure included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# ------------------------------------------------------------------ raw decode (runs in a subprocess)

def _codec(chain: list):
    """The numcodecs decoder of the compressor in a codec chain (None: uncompressed)."""
    import numcodecs

    for c in chain:
        name = c if isinstance(c, str) else c["name"]
        if name == "blosc":
            return numcodecs.Blosc()
        if name == "zstd":
            return numcodecs.Zstd()
        if name == "gzip":
            return numcodecs.GZip()
    return None


def _decode_object(args: tuple[str, int | None, list]) -> tuple[int, int]:
    """Decode every chunk of one object: a shard (n_chunks inner chunks, index at its tail) or a plain chunk."""
    import numcodecs

    from transcode.format.shardindex import IndexLayout, present

    path, n_chunks, chain = args
    numcodecs.blosc.set_nthreads(1)
    data = Path(path).read_bytes()
    codec = _codec(chain)
    decode = codec.decode if codec is not None else bytes
    if n_chunks is None:
        return len(decode(data)), 1
    layout = IndexLayout(n_chunks)
    index = layout.decode(data[layout.index_range(len(data))[0]:])
    total = chunks = 0
    for off, size in index[present(index)]:
        total += len(decode(data[int(off):int(off) + int(size)]))
        chunks += 1
    return total, chunks


def raw_decode(store: Path, workers: int) -> dict:
    """Decode every chunk of every array of the store (the same objects the validator decodes) on `workers`
    processes (spawned, like the validator's)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    jobs = []
    for meta in sorted(store.glob("utm*/*/zarr.json")):
        doc = json.loads(meta.read_text())
        first = doc["codecs"][0]
        objects = sorted(p for p in (meta.parent / "c").rglob("*") if p.is_file())
        if isinstance(first, dict) and first["name"] == "sharding_indexed":
            cfg = first["configuration"]
            n = 1
            for o, i in zip(doc["chunk_grid"]["configuration"]["chunk_shape"], cfg["chunk_shape"]):
                n *= o // i
            jobs += [(str(p), n, cfg["codecs"]) for p in objects]
        else:
            jobs += [(str(p), None, doc["codecs"]) for p in objects]
    jobs.sort(key=lambda j: -os.path.getsize(j[0]))  # biggest first: workers finish together
    t0 = time.perf_counter()
    if workers == 1:
        results = [_decode_object(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_decode_object, jobs, chunksize=1))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "decoded_bytes": sum(r[0] for r in results), "chunks": sum(r[1] for r in results),
            "objects": len(jobs)}


# ------------------------------------------------------------------ driver

def _run(cmd: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}\n{r.stdout[-3000:]}")
    return seconds, json.loads(r.stdout)


def _prepare(workdir: Path, preset: str, years: list[int], shard: int, workers: int) -> Path:
    store = workdir / "store"
    from transcode.format.sidecar import MANIFEST_KEY
    from transcode.testing.synthetic import make_legacy_archive

    if (store / MANIFEST_KEY).exists():
        return store

    archive = workdir / "archive"
    if not archive.exists():
        make_legacy_archive(archive, years=years, preset=preset)
    subprocess.run([sys.executable, "-m", "transcode", "convert", str(archive), str(store), "--shard-size",
                    str(shard), "--workers", str(workers), "--no-progress", "--json"], check=True,
                   capture_output=True)
    return store


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/bench-validate")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--preset", default="small", help="synthetic archive preset (tiny, small, medium)")
    ap.add_argument("--years", default="2024", help="comma-separated years of the synthetic archive")
    ap.add_argument("--shard", type=int, default=1024, help="shard size in pixels")
    ap.add_argument("--raw-decode", metavar="STORE", help=argparse.SUPPRESS)  # internal: the baseline subprocess
    args = ap.parse_args()
    if args.raw_decode:
        print(json.dumps(raw_decode(Path(args.raw_decode), args.workers)))
        return 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store = _prepare(workdir, args.preset, [int(y) for y in args.years.split(",")], args.shard, args.workers)
    validate_cmd = [sys.executable, "-m", "transcode", "validate", str(store), "--level", "content", "--workers",
                    str(args.workers), "--json", "--no-progress"]
    raw_cmd = [sys.executable, os.path.abspath(__file__), "--raw-decode", str(store), "--workers", str(args.workers)]
    v_wall, v_content, v_bytes, r_wall, r_decode, r_bytes = [], [], [], [], [], []
    for _ in range(args.runs):
        seconds, doc = _run(validate_cmd)
        assert doc["summary"]["errors"] == 0, doc["summary"]
        v_wall.append(seconds)
        v_content.append(doc["summary"]["seconds"]["content"])
        v_bytes.append(doc["summary"]["counters"]["decoded_bytes"])
        seconds, doc = _run(raw_cmd)
        r_wall.append(seconds)
        r_decode.append(doc["seconds"])
        r_bytes.append(doc["decoded_bytes"])
    assert len(set(v_bytes)) == 1 and len(set(r_bytes)) == 1
    assert v_bytes[0] == r_bytes[0], f"validate decoded {v_bytes[0]} bytes, the raw decode {r_bytes[0]}"
    decoded = v_bytes[0]
    med = statistics.median
    out = {
        "benchmark": "validate --level content vs raw decode of the same chunks",
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "store": {"path": str(store), "preset": args.preset, "years": args.years, "shard": args.shard,
                  "objects_bytes": sum(p.stat().st_size for p in store.rglob("*") if p.is_file())},
        "workers": args.workers,
        "runs": args.runs,
        "decoded_bytes": decoded,
        "validate": {"command": " ".join(validate_cmd), "wall_s_median": med(v_wall),
                     "content_stage_s_median": med(v_content),
                     "content_mb_s": decoded / med(v_content) / 1e6, "wall_mb_s": decoded / med(v_wall) / 1e6},
        "raw_decode": {"command": " ".join(raw_cmd), "wall_s_median": med(r_wall), "decode_s_median": med(r_decode),
                       "decode_mb_s": r_bytes[0] / med(r_decode) / 1e6, "wall_mb_s": r_bytes[0] / med(r_wall) / 1e6},
    }
    out["ratio_content_vs_raw_decode"] = out["validate"]["content_mb_s"] / out["raw_decode"]["decode_mb_s"]
    out["ratio_wall"] = out["validate"]["wall_mb_s"] / out["raw_decode"]["wall_mb_s"]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
