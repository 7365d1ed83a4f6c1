#!/usr/bin/env python3
"""Compare this checkout against a baseline git revision, same archive, same machine, interleaved runs.

A change that is not about speed (a restructuring, a new API) must not cost speed: this runs `convert`,
`validate --level content` and `inventory` of both revisions on the benchmark archive of bench_convert.py,
alternating which goes first, and reports medians, peak RSS and the ratio this/baseline. The baseline is
checked out with `git worktree add --detach` under the work directory and installed into its own venv
(system site packages, no dependency changes), so both revisions run on the same interpreter and libraries.

  python3 tools/bench/bench_revisions.py --baseline 2f6df24 --workdir /tmp/bench-rev --runs 3
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from bench_convert import LAST_YEAR, TILES, PeakRSS  # noqa: E402


def checkout(rev: str, workdir: Path) -> Path:
    """A venv whose `tessera-transcode` runs revision `rev` (made once per revision)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    tree = workdir / f"rev-{sha[:12]}"
    exe = tree / ".venv" / "bin" / "tessera-transcode"
    if not exe.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--force", "--detach", str(tree), sha],
                       check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(tree / ".venv")], check=True)
        subprocess.run([str(tree / ".venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                        "-e", str(tree)], check=True)
    return exe


def this_checkout(workdir: Path) -> Path:
    """A venv whose `tessera-transcode` runs the working tree this script is in."""
    venv = workdir / "this-venv"
    exe = venv / "bin" / "tessera-transcode"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)],
                   check=True)
    return exe


def archive(workdir: Path) -> Path:
    """The bench_convert archive, one year (made with this checkout's generator, read by both revisions)."""
    src = workdir / "archive"
    if not (src / ".complete").exists():
        from transcode.testing.synthetic import make_legacy_archive

        shutil.rmtree(src, ignore_errors=True)
        make_legacy_archive(src, years=[LAST_YEAR], tiles=TILES, seed=5)
        (src / ".complete").touch()
    return src


def run(cmd: list[str]) -> tuple[float, int, int]:
    """Wall seconds, exit code and peak RSS (largest process of the tree) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = PeakRSS(proc.pid)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    peaks = peak.stop()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-2000:]}")
    return wall, proc.returncode, max(peaks.values(), default=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare against (e.g. a commit or tag)")
    ap.add_argument("--workdir", default="bench-work", help="archives, stores and checkouts (default ./bench-work)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", help="write the results JSON here")
    args = ap.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sides = {"baseline": checkout(args.baseline, workdir), "this": this_checkout(workdir)}
    src = archive(workdir)

    def verbs(exe: Path, store: Path) -> dict[str, list[str]]:
        return {
            "inventory": [str(exe), "inventory", str(src), "--no-progress", "--json"],
            "convert": [str(exe), "convert", str(src), str(store), "--workers", str(args.workers), "--no-progress",
                        "--json"],
            "validate": [str(exe), "validate", str(store), "--level", "content", "--no-progress", "--json"],
        }

    samples: dict[str, dict[str, list[tuple[float, int]]]] = {s: {} for s in sides}
    for i in range(args.runs):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for side in order:
            store = workdir / f"store-{side}"
            shutil.rmtree(store, ignore_errors=True)
            for verb, cmd in verbs(sides[side], store).items():
                wall, rc, rss = run(cmd)
                samples[side].setdefault(verb, []).append((wall, rss))
                print(f"run {i + 1} {side:8} {verb:9} {wall:7.2f} s  rc {rc}  peak {rss / 2**20:7.1f} MiB",
                      flush=True)
    summary = {}
    for verb in samples["this"]:
        med = {s: statistics.median(w for w, _ in samples[s][verb]) for s in sides}
        rss = {s: max(r for _, r in samples[s][verb]) for s in sides}
        summary[verb] = {"median_s": med, "peak_rss_mib": {s: rss[s] / 2**20 for s in sides},
                         "ratio_this_over_baseline": med["this"] / med["baseline"]}
        print(f"{verb:9} baseline {med['baseline']:7.2f} s  this {med['this']:7.2f} s  "
              f"ratio {med['this'] / med['baseline']:.3f}")
    result = {
        "baseline": args.baseline, "runs": args.runs, "workers": args.workers, "tiles": len(TILES),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d"), "summary": summary, "samples": samples,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
