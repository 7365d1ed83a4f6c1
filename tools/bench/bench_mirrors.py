#!/usr/bin/env python3
"""Benchmark `verify-mirrors` against `rclone check` (Debian's rclone, configured by environment only) on the same
two endpoints, a Ceph RADOS Gateway and a moto server that this script starts itself, holding the same objects.

1. Speed and memory of the `list` level vs `rclone check` (and `rclone check --fast-list`) on 10k and 100k tiny
   objects in a Zarr-like key layout (optionally 1M keys on two POSIX trees, where both tools compare sizes only):
   median wall time of several runs and peak RSS of each tool's process tree.
2. Detection: a store written by `convert`, uploaded to both endpoints with 5 MiB parts, with one fault injected per
   key; which level of `verify-mirrors` first reports each fault (and as what), and whether `rclone check`
   (and `rclone check --download`) reports it.

  python3 tools/bench/bench_mirrors.py --workdir /tmp/bench-mirrors --sizes 10000,100000 --runs 3 \
      --markdown BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import s3servers

MiB = 1024 * 1024
PART = 5 * MiB
LEVELS = ("list", "etag", "manifest", "zarr", "content")


# ------------------------------------------------------------------ measuring

class PeakRSS:
    """Poll a process tree and keep the peak of its summed resident set size."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
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
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


CWD: Path | None = None  # where the tools run (verify-mirrors keeps its checkpoint under the current directory)


def timed(cmd: list[str], env: dict, ok: tuple[int, ...] = (0, 1)) -> tuple[float, int, subprocess.CompletedProcess]:
    """(seconds, peak RSS bytes, completed process) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=CWD)
    mon = PeakRSS(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    peak = mon.stop()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")
    return seconds, peak, done


# ------------------------------------------------------------------ servers and environments

def tool_env(rgw) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=rgw.access_key, AWS_SECRET_ACCESS_KEY=rgw.secret_key, AWS_DEFAULT_REGION=rgw.region,
               AWS_EC2_METADATA_DISABLED="true", PYTHONPATH=str(ROOT))
    return env


def rclone_env(rgw, moto) -> dict:
    """rclone configured by environment only (no config file); AWS_CA_BUNDLE unset (rclone 1.60 chokes on it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env["RCLONE_CONFIG"] = "/dev/null"
    for name, server, provider in (("RGW", rgw, "Ceph"), ("MOTO", moto, "Other")):
        env.update({f"RCLONE_CONFIG_{name}_TYPE": "s3", f"RCLONE_CONFIG_{name}_PROVIDER": provider,
                    f"RCLONE_CONFIG_{name}_ENDPOINT": server.endpoint_url,
                    f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": rgw.access_key,
                    f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": rgw.secret_key,
                    f"RCLONE_CONFIG_{name}_REGION": "us-east-1",
                    f"RCLONE_CONFIG_{name}_FORCE_PATH_STYLE": "true"})
    return env


def mirror_args(rgw, moto, rgw_url: str, moto_url: str) -> list[str]:
    return [f"ceph={rgw_url}", f"aws={moto_url}", "-O", f"ceph:endpoint-url={rgw.endpoint_url}", "-O",
            "ceph:path-style", "-O", f"aws:endpoint-url={moto.endpoint_url}", "-O", "aws:path-style"]


def ours(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "transcode", "verify-mirrors", *args, "--no-progress"]


# ------------------------------------------------------------------ 1. listing speed and memory

def layout_keys(n: int) -> list[str]:
    """Zarr-like keys: zones x (embeddings, scales) x 100 shard rows x 100 shard columns."""
    from transcode.format.arrays import EMBEDDINGS, SCALES
    from transcode.format.keys import zone_group

    out: list[str] = []
    for z in range(1, 61):
        for arr in (EMBEDDINGS, SCALES):
            for r in range(100):
                for c in range(100):
                    out.append(arr.shard_key(zone_group(z), 0, r, c))
                    if len(out) >= n:
                        return out
    return out


def populate(server, bucket: str, keys: list[str], threads: int = 24) -> float:
    """PUT one tiny object per key (many threads, one client per thread); returns seconds."""
    server.client().create_bucket(Bucket=bucket)
    local = threading.local()

    def put(k: str) -> None:
        if not hasattr(local, "c"):
            local.c = server.client()
        local.c.put_object(Bucket=bucket, Key=k, Body=k.encode()[-16:])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys))
    return time.perf_counter() - t0


def bench_listing(rgw, moto, sizes: list[int], runs: int, log) -> list[dict]:
    env, renv = tool_env(rgw), rclone_env(rgw, moto)
    rows = []
    for n in sizes:
        bucket = f"bench-{n}"
        keys = layout_keys(n)
        with ThreadPoolExecutor(2) as pool:
            secs = list(pool.map(lambda s, b=bucket, k=keys: populate(s, b, k), (rgw, moto)))
        log(f"populated {n} objects: rgw {secs[0]:.0f} s, moto {secs[1]:.0f} s")
        cmds = {
            "verify-mirrors --level list": ours(mirror_args(rgw, moto, f"s3://{bucket}", f"s3://{bucket}")),
            "rclone check": ["rclone", "check", f"rgw:{bucket}", f"moto:{bucket}"],
            "rclone check --fast-list": ["rclone", "check", "--fast-list", f"rgw:{bucket}", f"moto:{bucket}"],
        }
        res: dict[str, list[tuple[float, int]]] = {k: [] for k in cmds}
        for i in range(runs):
            for name, cmd in cmds.items():
                secs, peak, _ = timed(cmd, env if cmd[0] == sys.executable else renv, ok=(0,))
                res[name].append((secs, peak))
                log(f"{n:>8} run {i + 1}: {name:<28} {secs:7.2f} s  {peak / MiB:6.0f} MiB")
        for name, vals in res.items():
            rows.append({"objects": n, "tool": name, "runs": len(vals),
                         "median_s": statistics.median(v[0] for v in vals),
                         "min_s": min(v[0] for v in vals), "max_s": max(v[0] for v in vals),
                         "peak_rss_mib": max(v[1] for v in vals) / MiB})
    return rows


def bench_posix(workdir: Path, n: int, runs: int, log) -> list[dict]:
    """Two identical POSIX trees of n tiny files (the second hard-linked to the first): sizes only, both tools."""
    a, b = workdir / f"posix-{n}-a", workdir / f"posix-{n}-b"
    if not b.exists():
        t0 = time.perf_counter()
        shutil.rmtree(a, ignore_errors=True)
        for k in layout_keys(n):
            p = a / k
            if not p.parent.is_dir():
                p.parent.mkdir(parents=True)
            with open(p, "wb") as f:
                f.write(k.encode()[-16:])
        subprocess.run(["cp", "-al", str(a), str(b)], check=True)
        log(f"created 2 x {n} files in {time.perf_counter() - t0:.0f} s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["RCLONE_CONFIG"] = "/dev/null"
    env["PYTHONPATH"] = str(ROOT)
    cmds = {"verify-mirrors --level list": ours([f"a={a}", f"b={b}"]),
            "rclone check --size-only": ["rclone", "check", "--size-only", str(a), str(b)]}
    rows = []
    res: dict[str, list[tuple[float, int]]] = {k: [] for k in cmds}
    for i in range(runs):
        for name, cmd in cmds.items():
            secs, peak, _ = timed(cmd, env, ok=(0,))
            res[name].append((secs, peak))
            log(f"{n:>8} posix run {i + 1}: {name:<28} {secs:7.2f} s  {peak / MiB:6.0f} MiB")
    for name, vals in res.items():
        rows.append({"objects": n, "tool": name + " (POSIX)", "runs": len(vals),
                     "median_s": statistics.median(v[0] for v in vals), "min_s": min(v[0] for v in vals),
                     "max_s": max(v[0] for v in vals), "peak_rss_mib": max(v[1] for v in vals) / MiB})
    return rows


# ------------------------------------------------------------------ 2. detection

def make_store(workdir: Path) -> Path:
    from transcode.engine.convert import ConvertOptions, convert
    from transcode.format.sidecar import MANIFEST_KEY
    from transcode.testing.synthetic import make_legacy_archive

    store = workdir / "store"
    if not (store / MANIFEST_KEY).exists():
        shutil.rmtree(workdir / "archive", ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
        made = make_legacy_archive(workdir / "archive", years=(2024,), preset="tiny", seed=5)
        convert(str(made.root), str(store), ConvertOptions(shard=(512, 512), part_size=PART))
    return store


def upload(server, bucket: str, prefix: str, root: Path) -> object:
    from transcode.storage import LocalStorage, S3Options, S3Storage

    dst = S3Storage(bucket, prefix, S3Options(endpoint_url=server.endpoint_url, path_style=True),
                    client=server.client())
    src = LocalStorage(root)

    def one(key: str) -> None:
        with dst.open_writer(key, PART) as w:
            w.write(src.read(key))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, [o.key for o in src.list()]))
    return dst


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def inject(ceph, aws) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """fault -> (key, mirror it was injected on, kinds that count as found)."""
    objs = {o.key: o for o in ceph.list()}
    multipart = sorted(k for k, o in objs.items() if o.etag and "-" in o.etag)
    scales = sorted(k for k in objs if "/scales/c/" in k)
    unicode_key = ".tessera/notes/größe ✓ and spaces/ünïcode ☃.txt"
    faults = {
        "missing object": (scales[0], "aws", ("missing",)),
        "extra object": ("utm30/stray object", "aws", ("extra",)),
        "truncated object": (scales[1], "ceph", ("size",)),
        "same-size corruption of a multipart shard (chunk data)": (multipart[0], "aws", ("content",)),
        "same-size corruption of a multipart shard (shard index)": (multipart[1], "ceph", ("content",)),
        "same bytes, other part size (6 MiB): must NOT be found": (multipart[2], "aws", ("content", "size")),
        "stale zarr.json (same size)": ("utm30/zarr.json", "aws", ("content",)),
        "key with spaces and unicode, missing": (unicode_key, "ceph", ("missing", "extra")),
    }
    aws.delete(scales[0])
    aws.put("utm30/stray object", b"left behind")
    ceph.put(scales[1], ceph.read(scales[1])[:-1000])
    for storage, key, at in ((aws, multipart[0], None), (ceph, multipart[1], -100)):
        data = storage.read(key)
        with storage.open_writer(key, PART) as w:
            w.write(flip(data, len(data) // 2 if at is None else len(data) + at))
    data = aws.read(multipart[2])
    with aws.open_writer(multipart[2], 6 * MiB) as w:
        w.write(data)
    doc = aws.read("utm30/zarr.json").decode()
    aws.put("utm30/zarr.json", doc.replace('"pixel"', '"point"', 1).encode())
    ceph.delete(unicode_key)
    return faults


def rclone_found(renv: dict, a: str, b: str, workdir: Path, extra: list[str]) -> tuple[dict[str, str], str, float]:
    """path -> rclone's verdict symbol (= same, - missing on b, + missing on a, * differ, ! error)."""
    out = workdir / "combined.txt"
    t0 = time.perf_counter()
    r = subprocess.run(["rclone", "check", *extra, a, b, "--combined", str(out)], env=renv, capture_output=True,
                       text=True, check=False)
    secs = time.perf_counter() - t0
    marks = {}
    if out.exists():
        for line in out.read_text().splitlines():
            if len(line) > 2:
                marks[line[2:]] = line[0]
    notes = [ln.split("NOTICE: ", 1)[1] for ln in r.stderr.splitlines() if "NOTICE: " in ln]
    return marks, f"exit {r.returncode}; " + "; ".join(n.split(": ", 1)[-1] for n in notes), secs


def bench_detection(rgw, moto, workdir: Path, log) -> dict:
    store = make_store(workdir)
    cb, ab = rgw.new_bucket("det-ceph"), moto.new_bucket("det-aws")
    with ThreadPoolExecutor(2) as pool:
        ceph, aws = pool.map(lambda t: upload(*t), ((rgw, cb, "stores/tiny v1", store), (moto, ab, "", store)))
    for s in (ceph, aws):
        s.put(".tessera/notes/größe ✓ and spaces/ünïcode ☃.txt", b"notes\n")
    faults = inject(ceph, aws)
    env, renv = tool_env(rgw), rclone_env(rgw, moto)
    args = mirror_args(rgw, moto, ceph.url, aws.url)
    runs = [(lvl, [f"--level={lvl}"]) for lvl in LEVELS[:-1]]
    runs.insert(2, ("etag, -O ceph:part-size=5", ["--level=etag", "-O", "ceph:part-size=5"]))
    runs += [("content --sample 0", ["--level=content", "--sample=0"]), ("content", ["--level=content"])]
    found: dict[str, dict[str, str]] = {f: {} for f in faults}
    costs = []
    for label, extra in runs:
        secs, _, done = timed(ours(args + extra + ["--json-lines"]), env)
        diffs = [json.loads(x) for x in done.stdout.splitlines()]
        summary = diffs[-1]
        got: dict[str, list[str]] = {}
        for d in diffs:
            if d["type"] == "difference":
                got.setdefault(d["key"], []).append(f"{d['kind']}@{d['mirror']}")
        for fault, (key, _, _) in faults.items():
            found[fault][label] = ", ".join(sorted(got.get(key, []))) or "-"
        costs.append({"run": label, "seconds": secs, "requests": sum(m["requests"] for m in summary["mirrors"]),
                      "bytes_read": sum(m["bytes_read"] for m in summary["mirrors"]),
                      "differences": summary["differences"], "exit": done.returncode})
        log(f"detection: {label:<26} {secs:5.1f} s, {summary['differences']} differences")
    rcl = {}
    for label, extra in (("rclone check", []), ("rclone check --download", ["--download"])):
        marks, notes, secs = rclone_found(renv, f"rgw:{cb}/stores/tiny v1", f"moto:{ab}", workdir, extra)
        rcl[label] = {"marks": marks, "notes": notes, "seconds": secs}
        log(f"detection: {label:<26} {secs:5.1f} s, {notes}")
    # empty prefix and wrong credentials
    _, _, empty = timed(ours(mirror_args(rgw, moto, ceph.url, f"s3://{ab}/no-such-prefix") + ["--json-lines"]), env)
    esum = json.loads(empty.stdout.splitlines()[-1])
    em, enotes, _ = rclone_found(renv, f"rgw:{cb}/stores/tiny v1", f"moto:{ab}/no-such-prefix", workdir, [])
    bad_env = dict(env, AWS_SECRET_ACCESS_KEY="wrong-secret-0000000000000000")
    _, _, bad = timed(ours(mirror_args(rgw, moto, ceph.url, aws.url)), bad_env, ok=(2,))
    bad_renv = dict(renv, RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY="wrong-secret-0000000000000000")
    rb = subprocess.run(["rclone", "check", f"rgw:{cb}/stores/tiny v1", f"moto:{ab}"], env=bad_renv,
                        capture_output=True, text=True, check=False)
    return {"faults": {f: {"key": k, "mirror": m, "kinds": list(kinds), "ours": found[f],
                           **{lbl: rcl[lbl]["marks"].get(k, "absent") for lbl in rcl}}
                       for f, (k, m, kinds) in faults.items()},
            "costs": costs, "rclone": {k: {"notes": v["notes"], "seconds": v["seconds"]} for k, v in rcl.items()},
            "empty_prefix": {"ours_exit": empty.returncode, "ours_missing": next(
                m["missing"] for m in esum["mirrors"] if m["name"] == "aws"),
                "ours_warning": next(m["warnings"] for m in esum["mirrors"] if m["name"] == "aws"),
                "rclone_missing": sum(1 for v in em.values() if v == "+"), "rclone_notes": enotes},
            "wrong_credentials": {"ours_exit": bad.returncode, "ours_stderr": bad.stderr.strip().splitlines()[-1],
                                  "rclone_exit": rb.returncode,
                                  "rclone_stderr": next((ln for ln in rb.stderr.splitlines() if "ERROR" in ln),
                                                        rb.stderr.strip()[:200])[:240]}}


# ------------------------------------------------------------------ report

def first_level(row: dict, kinds: list[str]) -> str:
    for label, reports in row.items():
        hits = [r for r in reports.split(", ") if r.split("@")[0] in kinds]
        if hits:
            return f"{label} ({', '.join(hits)})"
    return "not reported"


def markdown(listing: list[dict], det: dict, meta: dict) -> str:
    out = ["## Mirror verification", "",
           (f"`{meta['command']}` on {meta['machine']}, {meta['date']}. Both S3 endpoints run on the same machine "
           "(loopback): Ceph RADOS Gateway 16 (one memstore OSD) and moto server (Python; it sorts the whole bucket "
           "and serialises every key on each ListObjectsV2 call, which bounds every tool's listing speed at 100k). "
           "Other work (test suites of other engineers) may have been running at the same time; numbers are "
           "medians of the runs shown. rclone is Debian's rclone "
           f"{meta['rclone']}, configured by environment only."), "",
           "### `list` level vs `rclone check`: time and peak memory", "",
           "| objects | tool | runs | median s | min–max s | peak RSS MiB | vs rclone check |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for r in listing:
        base = next((x for x in listing if x["objects"] == r["objects"] and x["tool"].startswith("rclone check")
                     and "fast" not in x["tool"] and ("POSIX" in x["tool"]) == ("POSIX" in r["tool"])), None)
        ratio = f"{base['median_s'] / r['median_s']:.2f}×" if base and r is not base else ""
        out.append(f"| {r['objects']:,} | {r['tool']} | {r['runs']} | {r['median_s']:.2f} | "
                   f"{r['min_s']:.2f}–{r['max_s']:.2f} | {r['peak_rss_mib']:.0f} | {ratio} |")
    out += ["", ("The ratio column is rclone check's median time divided by the tool's (above 1: faster than "
            "rclone check)."), ""]
    out += _reading(listing)
    out += ["",
            "### Detection: which level finds each injected fault", "",
            ("A store written by `convert` (tiny preset, 512 px shards, 5 MiB parts recorded), uploaded with 5 MiB "
            "parts to RGW (`ceph`, under a prefix with a space) and moto (`aws`, bucket root), one fault per key. "
            "Cells show what each `verify-mirrors` level reports for the fault's key, as kind@mirror; \"first found "
            "at\" is the cheapest level that reports it with a proving kind (missing, extra, size, content), "
            "`unproven` does not count. With two mirrors and no manifest (list, etag) the first mirror named is the "
            "reference, so a size or content difference is reported on the other one; from the manifest level on, "
            "the store manifest decides. rclone symbols (`--combined`): `=` identical, `*` differ, `+` only on "
            "ceph, `-` only on aws."), "",
            "| fault | injected on | ours: first found at | " + " | ".join(
                det["costs"][i]["run"] for i in range(len(det["costs"]))) + " | rclone check | rclone check --download |",
            "|---|---|---|" + "---|" * len(det["costs"]) + "---|---|"]
    for fault, row in det["faults"].items():
        ours_row = row["ours"]
        # a key on one of two mirrors and outside the manifest (`.tessera/`): with no reference to break the tie,
        # it is reported as missing on one or extra on the other; either way it is found
        kinds = row["kinds"] + (["extra"] if "unicode" in fault and "extra" not in row["kinds"] else [])
        first = first_level(ours_row, kinds)
        if "must NOT" in fault:
            first = "never reported as corrupt" if first == "not reported" else f"FALSE POSITIVE: {first}"
        out.append(f"| {fault} | {row['mirror']} | {first} | " + " | ".join(ours_row[c["run"]] for c in det["costs"])
                   + f" | {row['rclone check']} | {row['rclone check --download']} |")
    out += ["", "| run | seconds | requests | bytes read | differences | exit |", "|---|---:|---:|---:|---:|---:|"]
    for c in det["costs"]:
        out.append(f"| verify-mirrors {c['run']} | {c['seconds']:.1f} | {c['requests']} | {c['bytes_read']:,} | "
                   f"{c['differences']} | {c['exit']} |")
    for label, v in det["rclone"].items():
        out.append(f"| {label} | {v['seconds']:.1f} | | | {v['notes']} | |")
    costs = {c["run"]: c for c in det["costs"]}
    if "content" in costs and "content --sample 0" in costs:
        out += ["", (
            "Reading: `rclone check` compares sizes and single-part MD5s; it reports both same-size corruptions of "
            "multipart shards as identical (\"hashes could not be checked\") and needs `--download` (reading "
            "everything) to find them. verify-mirrors finds the shard-index corruption at the zarr level (one "
            "ranged GET of each shard's index) and the chunk-data corruption at the content level; "
            f"`--sample 0` hashes only what the cheaper levels left unproven "
            f"({costs['content --sample 0']['bytes_read'] / 1e6:.0f} MB read instead of "
            f"{costs['content']['bytes_read'] / 1e6:.0f} MB). moto reports multipart part sizes (HEAD with "
            "partNumber), Ceph RGW 16 does not; declaring RGW's part size (`-O ceph:part-size=5`) lets the etag "
            "level prove both corruptions without reading data. The copy re-uploaded with 6 MiB parts is "
            "`unproven` up to the zarr level and proven equal at the content level: never reported as corrupt.")]
    e, w = det["empty_prefix"], det["wrong_credentials"]
    out += ["", (f"Empty prefix (`aws` pointed at a prefix that holds nothing): verify-mirrors exits {e['ours_exit']} "
            f"with {e['ours_missing']} objects missing and the warning \"{e['ours_warning'][0] if e['ours_warning'] else ''}\"; "
            f"rclone check reports {e['rclone_missing']} missing ({e['rclone_notes']})."), "",
            (f"Wrong credentials: verify-mirrors exits {w['ours_exit']}: `{w['ours_stderr']}`; rclone check exits "
            f"{w['rclone_exit']}: `{w['rclone_stderr']}`."), ""]
    return "\n".join(out)


def _reading(listing: list[dict]) -> list[str]:
    """A few sentences that read the listing table."""
    def row(n: int, tool: str) -> dict | None:
        return next((r for r in listing if r["objects"] == n and r["tool"] == tool), None)

    lines = []
    ours, rc, fl = (row(100_000, t) for t in ("verify-mirrors --level list", "rclone check",
                                               "rclone check --fast-list"))
    if ours and rc and fl:
        lines.append(f"- 100,000 objects: the list level takes {ours['median_s']:.0f} s, "
                     f"{rc['median_s'] / ours['median_s']:.1f}× faster than `rclone check` "
                     f"({rc['median_s']:.0f} s; target: 2×). `rclone check --fast-list` is about as fast "
                     f"({fl['median_s']:.0f} s) but holds both listings in memory ({fl['peak_rss_mib']:.0f} MiB "
                     f"against {ours['peak_rss_mib']:.0f} MiB). Both S3 servers share the machine's 2 cores; moto "
                     "spends most of that time serialising keys, for every tool alike.")
    small = row(10_000, "verify-mirrors --level list")
    if small and ours:
        lines.append(f"- Memory: {small['peak_rss_mib']:.0f} MiB at 10,000 and {ours['peak_rss_mib']:.0f} MiB at "
                     "100,000 objects on S3. The difference is listing parallelism, not listing size: the key space is "
                     "cut into at most 8 ranges per mirror, each buffering one to two 1,000-key pages (10,000 keys "
                     "here form one range, 100,000 form five). Nothing is held per object.")
    posix = [r for r in listing if r["tool"] == "verify-mirrors --level list (POSIX)"]
    if posix:
        lines.append("- POSIX trees (both tools compare sizes only): " + ", ".join(
            f"{r['objects']:,} files {r['peak_rss_mib']:.0f} MiB" for r in posix)
            + " peak for verify-mirrors: flat from ten thousand to a million objects. rclone's Go walk is faster "
              "there; the Python directory walk is the limit.")
    if small:
        rc10 = row(10_000, "rclone check")
        if rc10:
            lines.append(f"- 10,000 objects: {small['median_s']:.1f} s against {rc10['median_s']:.1f} s; Python start-up "
                         "(about 0.8 s) and the few delimiter listings that split the key space do not pay off yet.")
    return lines


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the `## Mirror verification` section, keeping the rest of the file."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find("## Mirror verification")
    if start >= 0:
        end = old.find("\n## ", start + 3)
        old = old[:start].rstrip() + "\n" + (old[end:] if end >= 0 else "")
    path.write_text(old.rstrip() + "\n\n" + text.rstrip() + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/bench-mirrors")
    ap.add_argument("--sizes", default="10000,100000", help="object counts on the S3 endpoints ('' for none)")
    ap.add_argument("--posix", default="", help="also compare two POSIX trees of these many files (e.g. "
                    "10000,100000,1000000)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-detection", action="store_true")
    ap.add_argument("--merge", action="store_true", help="keep the rows of an earlier results.json in the workdir "
                    "that this run does not measure again")
    ap.add_argument("--markdown", metavar="FILE", help="write the results into this file's `## Mirror verification`")
    a = ap.parse_args()
    work = Path(a.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    global CWD
    CWD = work
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    listing: list[dict] = []
    det: dict = {}
    if sizes or not a.skip_detection:
        rgw = s3servers.start_rgw(work / "rgw")
        moto = None
        try:
            moto = s3servers.start_moto(work / "moto")
            log(f"servers up: rgw {rgw.endpoint_url}, moto {moto.endpoint_url}")
            listing = bench_listing(rgw, moto, sizes, a.runs, log) if sizes else []
            det = {} if a.skip_detection else bench_detection(rgw, moto, work, log)
        finally:
            s3servers.stop(rgw, purge=True)
            if moto is not None:
                s3servers.stop(moto)
    for n in [int(x) for x in a.posix.split(",") if x.strip()]:
        listing += bench_posix(work, n, a.runs, log)
    rclone = subprocess.run(["rclone", "version"], capture_output=True, text=True, check=True).stdout.split()[1]
    meta = {"command": "python3 tools/bench/bench_mirrors.py " + shlex.join(sys.argv[1:]),
            "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, "
                       f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"), "rclone": rclone}
    results = work / "results.json"
    if a.merge and results.exists():
        old = json.loads(results.read_text())
        fresh = {(r["objects"], r["tool"]) for r in listing}
        listing = [r for r in old["listing"] if (r["objects"], r["tool"]) not in fresh] + listing
        det = det or old["detection"]
        measured = bool(fresh) or bool(det) and not a.skip_detection
        meta["command"] = old["meta"]["command"] + ("` and `" + meta["command"] if measured else "")
        meta["date"] = old["meta"]["date"] if not measured else meta["date"]
    listing.sort(key=lambda r: ("POSIX" in r["tool"], r["objects"]))
    results.write_text(json.dumps({"meta": meta, "listing": listing, "detection": det}, indent=1))
    if a.markdown and listing and det:
        write_section(Path(a.markdown), markdown(listing, det, meta))
        log(f"wrote {a.markdown}")
    print(json.dumps({"listing": listing}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
