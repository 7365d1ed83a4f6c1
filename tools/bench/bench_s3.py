#!/usr/bin/env python3
"""S3 at full speed (issue 14): `convert --workers 2` of one synthetic archive (`--archive small`: preset "small",
one year, ~216 MB of tiles; `--archive 2shard`: the 16 tiles, 1.79 GB, of the issue's 2-shard job) several ways in
one run, against a Ceph RADOS Gateway this script starts on loopback (tools/ceph_rgw_up.sh, memstore) and the
latency relay of tools/latency_proxy.py (DELAY ms added per request):

- local -> local: the baseline (its time is also the "encode time" below);
- S3 source through the proxy -> local store: target >= 80 % of the local -> local throughput;
- S3 source without the proxy -> local store: the gateway's own cost, without the latency;
- S3 -> S3 on the RGW (no proxy): target within 1.2x of max(encode time, the gateway's own PUT time for the same
  bytes), the latter being the store's objects (those of the local run: the same bytes) uploaded by boto3's
  transfer manager (10 threads, 64 MiB parts) to another prefix;

The code measured is the `transcode` the interpreter imports: to compare two branches, run the script on each.

  python3 tools/bench/bench_s3.py --workdir bench-s3 --runs 3 --out tools/bench/results/s3-DATE.json

The machine's load average is recorded before and after every convert run; peak RSS per process likewise, and the
CPU seconds of convert's processes, of the gateway's daemons and of this process (the proxy runs in it). With the
gateway on the same cores, a leg is no faster than its CPU over the cores: the "ceiling" entries."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_convert import load_average, timed
from latency_proxy import latency_proxy

TOOLS = Path(__file__).resolve().parents[1]
YEAR = 2024


def free_port_pair() -> int:
    """A free loopback port whose successor is free too (the RGW's and its monitor's)."""
    import socket

    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                with socket.socket() as b:
                    b.bind(("127.0.0.1", port + 1))
                    return port
            except OSError:
                continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def start_rgw(data_dir: Path, port: int, memstore_gib: float) -> dict[str, str]:
    """Start Ceph + RGW on 127.0.0.1:port (its memstore holding `memstore_gib` GiB: a full OSD blocks writes); the
    KEY=value lines ceph_rgw_up.sh prints."""
    env = {**os.environ, "MEMSTORE_BYTES": str(int(memstore_gib * 2**30))}
    out = subprocess.run(["bash", str(TOOLS / "ceph_rgw_up.sh"), str(data_dir), str(port)], check=True,
                         capture_output=True, text=True, timeout=600, env=env).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def stop_rgw(data_dir: Path) -> None:
    """Stop the daemons ceph_rgw_up.sh started (by their recorded PIDs) and remove their data."""
    subprocess.run(["bash", str(TOOLS / "ceph_rgw_down.sh"), str(data_dir), "--purge"], check=False,
                   capture_output=True, timeout=300)


def s3_client(env: dict[str, str]):
    """A boto3 client of the RGW."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], region_name=env["S3_REGION"],
                        aws_access_key_id=env["S3_ACCESS_KEY"], aws_secret_access_key=env["S3_SECRET_KEY"],
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))


def upload_tree(client, root: Path, bucket: str, prefix: str) -> tuple[int, float]:
    """Every file under root to bucket/prefix with boto3's transfer manager; (bytes, seconds)."""
    from boto3.s3.transfer import TransferConfig

    cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=10)
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(root).as_posix()}",
                                                   Config=cfg), files))
    return sum(p.stat().st_size for p in files), time.perf_counter() - t0


def empty_prefix(client, bucket: str, prefix: str, rgw_data: Path | None = None) -> None:
    """Delete every object under bucket/prefix/; with the gateway's data directory, also free their space at once
    (the RGW's garbage collector would keep a deleted object's data for hours, filling the memstore)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000]})
    if rgw_data is not None:
        subprocess.run(["radosgw-admin", "-c", str(rgw_data / "ceph.conf"), "gc", "process", "--include-all"],
                       check=True, capture_output=True, timeout=600)


GATEWAY_DAEMONS = ("radosgw", "ceph-osd", "ceph-mon", "ceph-mgr")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far (user + system) of: the finished children of this process (each convert run and its
    workers), this process (the latency proxy's thread, the RSS poller), and the gateway's daemons."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    daemons = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if proc.info["name"] in GATEWAY_DAEMONS and proc.info["cpu_times"] is not None:
            daemons += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return {"convert": children.ru_utime + children.ru_stime, "bench_and_proxy": me.ru_utime + me.ru_stime,
            "gateway": daemons}


def convert(src: str, store: str, extra: list[str], pythonpath: str | None = None) -> dict:
    """One `convert --workers 2` run (of the `transcode` found first on `pythonpath`, if given): seconds, peak RSS,
    load averages, CPU seconds of convert's process tree, of this process and of the gateway's daemons."""
    before = load_average()
    cpu0 = cpu_seconds()
    old = os.environ.get("PYTHONPATH")
    if pythonpath:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        seconds, report, peaks = timed([sys.executable, "-m", "transcode", "convert", src, store, "--workers", "2",
                                        "--json", "--no-progress", *extra])
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    cpu1 = cpu_seconds()
    parent, *others = peaks.values()
    return {"seconds": round(seconds, 2), "convert_seconds": report.get("seconds"),
            "shards_written": report.get("shards_written"), "stage_seconds": report.get("stage_seconds"),
            "cpu_seconds": {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0},
            "parent_rss_mib": round(parent / 2**20), "worker_rss_mib": sorted(round(v / 2**20) for v in others),
            "load_average_before": before, "load_average_after": load_average()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="bench-s3")
    ap.add_argument("--rgw-data", default="/tmp/bench-rgw", help="Ceph's data directory (short: socket paths)")
    ap.add_argument("--port", type=int, default=0, help="the RGW's port (default: a free one; the next for its mon)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--archive", choices=["small", "2shard"], default="small",
                    help="small: preset 'small', 4 shards of ~48 MB; 2shard: the 16-tile job of issue 14 and "
                         "bench_threads.py (one 4096 x 4096 shard of ~1.4 GB and a small one: multipart uploads)")
    ap.add_argument("--memstore-gib", type=float,
                    help="the gateway's memstore capacity (default 4 GiB for small, 8 GiB for 2shard: the source "
                         "and one store at a time; Ceph blocks writes to a full OSD)")
    ap.add_argument("--part-size", type=int, metavar="MIB",
                    help="convert's --part-size on the S3 store legs (default: convert's, 64 MiB: shards smaller than "
                         "that go out as one PUT)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also run both S3 legs with the `transcode` of this checkout (e.g. main's, its compiled "
                         "modules copied in) first on PYTHONPATH: before/after in the same run")
    ap.add_argument("--out", help="also write the results JSON here")
    args = ap.parse_args()
    args.baseline = args.baseline and str(Path(args.baseline).resolve())
    args.out = args.out and str(Path(args.out).resolve())
    args.rgw_data = str(Path(args.rgw_data).resolve())
    from transcode.engine.encodepool import available_cores
    from transcode.testing.synthetic import make_legacy_archive

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # `python -m transcode` must not find a checkout in the current directory first
    src = work / f"archive-{args.archive}"
    if not (src / "registry.parquet").exists():
        shutil.rmtree(src, ignore_errors=True)
        if args.archive == "small":
            make_legacy_archive(src, years=(YEAR,), preset="small", seed=14)
        else:
            from bench_threads import TILES
            make_legacy_archive(src, years=(YEAR,), tiles=TILES, seed=14)
    nbytes = sum(p.stat().st_size for p in src.rglob("*.npy"))
    rgw_data = Path(args.rgw_data)
    env = start_rgw(rgw_data, args.port or free_port_pair(),
                    args.memstore_gib or (4.0 if args.archive == "small" else 8.0))
    os.environ.update({"AWS_ACCESS_KEY_ID": env["S3_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY": env["S3_SECRET_KEY"],
                       "AWS_DEFAULT_REGION": env["S3_REGION"]})
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    results = {"machine": {"cpus": os.cpu_count(), "cores_available": available_cores(),
                           "platform": platform.platform(), "python": platform.python_version(),
                           "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
               "archive": {"name": args.archive, "years": [YEAR], "input_bytes": nbytes},
               "delay_ms": args.delay_ms, "runs": args.runs, "part_size_mib": args.part_size,
               "local_local": [], "s3_latency_local": [], "s3_direct_local": [], "s3_s3": [], "gateway_put": [],
               "baseline": args.baseline and subprocess.run(["git", "-C", args.baseline, "rev-parse", "--short",
                                                             "HEAD"], capture_output=True, text=True).stdout.strip(),
               "s3_latency_local_baseline": [], "s3_s3_baseline": []}
    proxy = None
    try:
        client = s3_client(env)
        bucket = "bench"
        client.create_bucket(Bucket=bucket)
        upload_tree(client, src, bucket, "archive")
        proxy = latency_proxy(env["S3_ENDPOINT"], args.delay_ms)
        src_direct = ["--source-endpoint-url", env["S3_ENDPOINT"], "--source-path-style",
                      "--source-region", env["S3_REGION"]]
        src_delayed = ["--source-endpoint-url", proxy.url, "--source-path-style", "--source-region", env["S3_REGION"]]
        store_s3 = ["--store-endpoint-url", env["S3_ENDPOINT"], "--store-path-style", "--store-region",
                    env["S3_REGION"]] + (["--part-size", str(args.part_size)] if args.part_size else [])
        local_store = work / "store"
        for run in range(args.runs):
            shutil.rmtree(local_store, ignore_errors=True)
            results["local_local"].append(convert(str(src), str(local_store), []))
            store_bytes = sum(p.stat().st_size for p in local_store.rglob("*") if p.is_file())
            empty_prefix(client, bucket, "put", rgw_data)
            cpu0 = cpu_seconds()
            n, secs = upload_tree(client, local_store, bucket, "put")
            cpu1 = cpu_seconds()
            results["gateway_put"].append({"seconds": round(secs, 2), "bytes": n,
                                           "cpu_seconds": {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}})
            empty_prefix(client, bucket, "put", rgw_data)
            shutil.rmtree(local_store, ignore_errors=True)
            results["s3_latency_local"].append(convert(f"s3://{bucket}/archive", str(local_store), src_delayed))
            shutil.rmtree(local_store, ignore_errors=True)
            results["s3_direct_local"].append(convert(f"s3://{bucket}/archive", str(local_store), src_direct))
            empty_prefix(client, bucket, "store", rgw_data)
            results["s3_s3"].append(convert(f"s3://{bucket}/archive", f"s3://{bucket}/store", src_direct + store_s3))
            empty_prefix(client, bucket, "store", rgw_data)
            results["store_bytes"] = store_bytes
            if args.baseline:
                shutil.rmtree(local_store, ignore_errors=True)
                results["s3_latency_local_baseline"].append(
                    convert(f"s3://{bucket}/archive", str(local_store), src_delayed, args.baseline))
                empty_prefix(client, bucket, "store", rgw_data)
                results["s3_s3_baseline"].append(
                    convert(f"s3://{bucket}/archive", f"s3://{bucket}/store", src_direct + store_s3, args.baseline))
                empty_prefix(client, bucket, "store", rgw_data)
            print(f"[run {run + 1}] local {results['local_local'][-1]['seconds']}s, S3+{args.delay_ms:g}ms -> local "
                  f"{results['s3_latency_local'][-1]['seconds']}s, S3 -> local "
                  f"{results['s3_direct_local'][-1]['seconds']}s, S3 -> S3 {results['s3_s3'][-1]['seconds']}s, "
                  f"gateway PUT {secs:.2f}s, load {load_average()}", file=sys.stderr)
        proxy_traffic = {"connections": proxy.connections, "bytes_up": proxy.bytes_up, "bytes_down": proxy.bytes_down}
    finally:
        if proxy is not None:
            proxy.close()
        stop_rgw(rgw_data)
    legs = ["local_local", "s3_latency_local", "s3_direct_local", "s3_s3", "gateway_put"]
    legs += ["s3_latency_local_baseline", "s3_s3_baseline"] if args.baseline else []
    med = {k: statistics.median(x["seconds"] for x in results[k]) for k in legs}
    results["median"] = med
    results["proxy_traffic"] = proxy_traffic
    # the CPU every leg costs the machine (convert, the gateway's daemons, this process with the proxy), medians
    cpu = {k: statistics.median(sum(x["cpu_seconds"].values()) for x in results[k]) for k in legs}
    results["median_cpu_seconds"] = cpu
    cores = results["machine"]["cores_available"]
    # ceilings where the gateway shares the cores: a leg can be no faster than its CPU spread over every core, so
    # the best S3-source throughput against local is local's time over that, and the best S3 -> S3 ratio that
    # over the bound
    results["ceiling"] = {
        "s3_source_throughput_vs_local": round(med["local_local"] / max(med["local_local"],
                                                                       cpu["s3_latency_local"] / cores), 3),
        "s3_s3_vs_bound": round(max(1.0, cpu["s3_s3"] / cores / max(med["local_local"], med["gateway_put"])), 3),
        "cpu_seconds_over_local": {k: round(cpu[k] / cpu["local_local"], 3) for k in legs if k != "gateway_put"}}
    results["s3_source_throughput_vs_local"] = round(med["local_local"] / med["s3_latency_local"], 3)
    bound = max(med["local_local"], med["gateway_put"])
    results["s3_s3_vs_bound"] = round(med["s3_s3"] / bound, 3)
    if args.baseline:
        results["baseline_s3_source_throughput_vs_local"] = round(med["local_local"] /
                                                                   med["s3_latency_local_baseline"], 3)
        results["baseline_s3_s3_vs_bound"] = round(med["s3_s3_baseline"] / bound, 3)
    results["s3_direct_throughput_vs_local"] = round(med["local_local"] / med["s3_direct_local"], 3)
    results["peak_worker_rss_mib"] = {k: max(max(r["worker_rss_mib"] or [0]) for r in results[k])
                                      for k in legs if k != "gateway_put"}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
