#!/usr/bin/env python3
"""Run `convert` on an archive with shard building replaced by the record of two empty objects (and an empty
partial of stretch statistics), to measure what the convert parent itself holds (inventory, plan passes, journal,
stretch statistics, metadata, manifest) on archives whose tile bodies are holes (tools/make_scale_archive.py):
everything but reading and encoding tiles is the real code.

  python3 tools/bench/convert_parent.py SOURCE STORE --inventory INV.parquet [--phases]

Prints one JSON line: shards planned and written, seconds, and the seconds until the first shard was handed out. Not a conversion: the store holds metadata, journal
and manifest, no shard objects. --phases also prints, to stderr, the process's peak RSS so far (VmHWM) and its
RSS before and after each phase: plan, journal listing, the last zones' metadata and the root, manifest (each
zone's metadata is otherwise synced as the shards reach it) (Linux only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("store")
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--phases", action="store_true", help="peak RSS around each phase, to stderr")
    args = ap.parse_args(argv)

    import transcode.engine.convert as convert_module
    from transcode.engine.journal import entry_key
    from transcode.engine.shardbuild import ObjectRecord, ShardResult
    from transcode.engine.stretchstats import ShardStats
    from transcode.format.sidecar import partial_key
    from transcode.storage import open_storage

    empty_md5 = "d41d8cd98f00b204e9800998ecf8427e"
    stores = {}
    first_shard = []  # seconds from the start of convert to the first shard handed to the (inline) executor

    def record_only(task, job) -> ShardResult:
        if not first_shard:
            first_shard.append(time.perf_counter() - t0)
        objects = [ObjectRecord(task.key(a), 0, empty_md5, "00000000", None, job.settings.part_size)
                   for a in ("embeddings", "scales")]
        if job.stretch_sample:  # the partial stretch statistics of a shard without valid pixels, as convert folds them
            store = stores.setdefault(job.store_url, open_storage(job.store_url, job.store_options))
            key = partial_key(entry_key(task, task.fingerprint(job.settings.fingerprint())))
            store.put(key, ShardStats(task.zone, task.year, job.stretch_sample).partial().to_bytes())
        return ShardResult(task.name, objects, 0, 0, 0.0)

    convert_module.run_task = record_only
    if args.phases:
        for name in ("make_plan", "list_entries", "manifest_bytes"):
            setattr(convert_module, name, _reporting(name, getattr(convert_module, name)))
        # the metadata is synced zone by zone as the shards reach each zone; `finish` puts the root zarr.json last
        sync = convert_module.MetadataSync
        sync.finish = _reporting("MetadataSync.finish", sync.finish)
    t0 = time.perf_counter()
    report = convert_module.convert(args.source, args.store, convert_module.ConvertOptions(inventory=args.inventory))
    print(json.dumps({"shards_planned": report.shards_planned, "shards_written": report.shards_written,
                      "seconds": time.perf_counter() - t0, "first_shard_seconds": first_shard[0] if first_shard else None}))
    return 0 if report.ok else 1


def _memory() -> str:
    """The process's peak RSS so far and its RSS now, from /proc/self/status."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    hwm, rss = (int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS"))
    return f"peak {hwm:.1f} MiB, RSS {rss:.1f} MiB"


def _reporting(name: str, fn):
    """`fn`, printing the memory before and after each call to stderr."""
    def call(*args, **kwargs):
        print(f"{time.strftime('%X')} before {name}: {_memory()}", file=sys.stderr, flush=True)
        out = fn(*args, **kwargs)
        print(f"{time.strftime('%X')} after {name}: {_memory()}", file=sys.stderr, flush=True)
        return out
    return call


if __name__ == "__main__":
    sys.exit(main())
