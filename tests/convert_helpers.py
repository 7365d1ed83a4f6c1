"""Shared helpers for the convert tests (resume, scale-out, incremental): run the CLI, fingerprint stores and
archives, check shard bytes, and kill a conversion at random moments."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import crc32c
import numpy as np

from transcode.storage import PARTIAL_SUFFIX  # temporary files of unfinished local writes

JOURNAL_DIR = ".tessera/journal"
# shard objects of the two sharded arrays (coordinate chunks like utm30/x/c/0 are not shards)
SHARD_KEY = re.compile(r"^utm\d\d/(embeddings/c/\d+/0|scales/c/\d+)/\d+/\d+$")
MISSING = 2**64 - 1


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`tessera-transcode ARGS` in a subprocess (text output captured)."""
    return subprocess.run([sys.executable, "-m", "transcode", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def cli_json(*args: str, env: dict | None = None, expect: int = 0, timeout: float = 600) -> dict:
    """Run a CLI verb with --json, check its exit code, return the parsed report."""
    r = cli(*args, "--json", env=env, timeout=timeout)
    assert r.returncode == expect, f"exit {r.returncode} (expected {expect})\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(r.stdout)


# ------------------------------------------------------------------ fingerprints of trees and stores

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digests(root: str | os.PathLike) -> dict[str, str]:
    """Relative POSIX path -> sha256 of every regular file under root."""
    root = Path(root)
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = sha256_bytes(p.read_bytes())
    return out


def tree_state(root: str | os.PathLike, with_hash: bool = True) -> dict[str, tuple]:
    """Relative path -> (kind, size, mtime_ns, inode[, sha256]) of every file and directory under root."""
    root = Path(root)
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            p = Path(dirpath) / name
            st = p.stat()
            out[p.relative_to(root).as_posix() + "/"] = ("dir", st.st_mtime_ns, st.st_ino)
        for name in files:
            p = Path(dirpath) / name
            st = p.stat()
            row = ("file", st.st_size, st.st_mtime_ns, st.st_ino)
            if with_hash:
                row += (sha256_bytes(p.read_bytes()),)
            out[p.relative_to(root).as_posix()] = row
    return out


def shard_keys(keys) -> set[str]:
    """The shard objects among keys."""
    return {k for k in keys if SHARD_KEY.match(k)}


def partial_files(root: str | os.PathLike) -> list[str]:
    """Temporary files of unfinished local writes under root."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(f"*{PARTIAL_SUFFIX}"))


def local_journal_count(store: str | os.PathLike) -> int:
    """Finished shards recorded in a local store's journal (temporary files excluded)."""
    base = Path(store) / JOURNAL_DIR
    n = 0
    for _dirpath, _dirs, files in os.walk(base):
        n += sum(1 for f in files if f.endswith(".json") and not f.startswith("."))
    return n


def s3_objects(client, bucket: str, prefix: str = "") -> dict[str, dict]:
    """Key (relative to prefix) -> listing entry of every object under prefix."""
    full = prefix.strip("/") + "/" if prefix.strip("/") else ""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=full):
        for o in page.get("Contents", []):
            out[o["Key"][len(full):]] = o
    return out


def s3_journal_count(client, bucket: str, prefix: str) -> int:
    full = f"{prefix.strip('/')}/{JOURNAL_DIR}/"
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=full):
        n += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(".json"))
    return n


# ------------------------------------------------------------------ shard bytes

def check_complete_shard(data: bytes, n_chunks: int, what: str = "shard") -> int:
    """Assert `data` is a whole `sharding_indexed` shard (index at the end, bytes + crc32c); return its chunks."""
    index_size = 16 * n_chunks + 4
    assert len(data) >= index_size, f"{what}: {len(data)} bytes, shorter than its {index_size}-byte index"
    raw, crc = data[-index_size:-4], data[-4:]
    assert crc32c.crc32c(raw) == int.from_bytes(crc, "little"), f"{what}: index CRC32C does not match"
    index = np.frombuffer(raw, dtype="<u8").reshape(n_chunks, 2)
    body = len(data) - index_size
    present = 0
    for off, n in index.tolist():
        if off == MISSING and n == MISSING:
            continue
        assert off + n <= body, f"{what}: chunk ({off}, {n}) runs past the {body}-byte data section"
        present += 1
    assert present > 0, f"{what}: a written shard holds no chunk"
    return present


# ------------------------------------------------------------------ kill at random moments

@dataclass
class Kill:
    attempt: int
    delay: float                 # seconds after start
    alive: bool                  # the process had not exited when SIGKILL was sent
    done_before: int             # journal entries when the run started
    done_at_kill: int            # journal entries right after the kill
    leftovers: int = 0           # temp files / unfinished uploads the kill left behind
    survivors: int = 0           # its child processes (pool workers) still running SURVIVOR_GRACE s after it died


@dataclass
class KillLog:
    total: int
    kills: list[Kill] = field(default_factory=list)
    completed_early: bool = False

    def mid_run(self) -> list[Kill]:
        """Kills that hit a running conversion with shards still to do."""
        return [k for k in self.kills if k.alive and k.done_at_kill < self.total]


SURVIVOR_GRACE = 30.0  # seconds a killed conversion's workers get to notice and end


def _children(pid: int) -> list[int]:
    """The direct child processes of pid (Linux /proc; none when it is gone)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """True while pid is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _survivors(pids: list[int]) -> int:
    """How many of pids still run after SURVIVOR_GRACE seconds; those are killed (they belong to this test)."""
    deadline = time.monotonic() + SURVIVOR_GRACE
    alive = [p for p in pids if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _running(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    return len(alive)


def kill_at_random_moments(cmd: Sequence[str], *, done: Callable[[], int], total: int, seed: int,
                           leftovers: Callable[[], int] = lambda: 0, kill_when: Callable[[], bool] | None = None,
                           env: dict | None = None, wanted: int = 4, max_attempts: int = 12,
                           first_delay: tuple[float, float] = (0.3, 1.5), extra_delay: tuple[float, float] = (0.0, 0.1),
                           poll: float = 0.005, timeout: float = 300, kill_children: bool = False) -> KillLog:
    """Start `cmd` again and again and SIGKILL it at seeded random moments until `wanted` kills hit mid-run.

    The first kill comes after a random delay (it may land in start-up or metadata writing); later ones after
    the journal has grown by a random number of shards (at most a quarter of what is left, less when many kills
    are still wanted), then (if given) once `kill_when()` holds, plus a random `extra_delay`, so that each kill
    lands while shards are being written and every run makes some progress, as long as there are more shards
    left than kills wanted (after that a run may be killed before it finishes a shard).
    A run that exits by itself must exit 0 (then the conversion is complete and the loop stops). Each kill records
    how many of the run's child processes outlived it by SURVIVOR_GRACE seconds (and kills them). With
    `kill_children`, the run's workers are killed with it, as when its machine goes down: what they were writing
    stays half-written (on its own a worker ends within a second of its parent, and may finish its shard first)."""
    rng = random.Random(seed)
    log = KillLog(total)
    for attempt in range(max_attempts):
        if len(log.mid_run()) >= wanted:
            break
        before = done()
        if before >= total:
            log.completed_early = True
            break
        if attempt == 0:
            target, extra = None, rng.uniform(*first_delay)
        else:
            left, kills_left = total - before, wanted - len(log.mid_run())
            step = rng.randint(1 if left > kills_left else 0, max(1, left // max(4, 2 * kills_left)))
            target, extra = before + step, rng.uniform(*extra_delay)
        with tempfile.TemporaryFile() as err:
            t0 = time.monotonic()
            proc = subprocess.Popen(list(cmd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err)
            try:
                if target is not None:
                    while proc.poll() is None and (done() < target or (kill_when is not None and not kill_when())):
                        if time.monotonic() - t0 > timeout:
                            raise AssertionError(f"no progress to {target} shards within {timeout} s")
                        time.sleep(poll)
                if proc.poll() is None:
                    time.sleep(extra)
                alive = proc.poll() is None
                delay = time.monotonic() - t0
                children = _children(proc.pid)
                if alive:
                    os.kill(proc.pid, signal.SIGKILL)
                    for child in children if kill_children else []:
                        try:
                            os.kill(child, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                rc = proc.wait(timeout=timeout)
                survivors = _survivors(children)
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            if not alive:
                err.seek(0)
                assert rc == 0, f"attempt {attempt}: the run exited {rc} by itself:\n{err.read().decode()[-3000:]}"
                log.completed_early = True
                log.kills.append(Kill(attempt, delay, False, before, done()))
                break
            assert rc == -signal.SIGKILL, rc
            log.kills.append(Kill(attempt, delay, True, before, done(), leftovers(), survivors))
    return log
