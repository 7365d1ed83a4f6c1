"""Shared helpers of the validator tests: a converted synthetic store, cheap clones, shard surgery, and a Storage
wrapper that records every read."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import crc32c
import numpy as np

from transcode.storage import LocalStorage, Storage

SHARD = 512
TILES = ["grid_-0.05_83.95", "grid_0.05_83.95", "grid_-0.05_-79.95", "grid_-0.15_83.95"]  # tiny + an overlap in utm30
YEARS = (2023, 2024)
MISSING = 2**64 - 1
SHARD_KEY = re.compile(r"^utm\d\d/(embeddings/c/\d+/0|scales/c/\d+)/\d+/\d+$")
COORD_KEY = re.compile(r"^utm\d\d/(x|y|time|band)/c/\d+$")
# the per-year chunks the structure level reads to check the stretch coverage mask against the shards present
STRETCH_KEY = re.compile(r"^utm\d\d/(stretch_stats_count/c/\d+|stretch_stats_shards/c/\d+/0/0)$")


def make_store(base: Path, years=YEARS, tiles=TILES) -> tuple[Path, Path]:
    """A synthetic archive (the tiny preset plus a west neighbour, so utm30 has an overlap) and its store."""
    from transcode.engine.convert import ConvertOptions, convert
    from transcode.testing.synthetic import make_legacy_archive

    archive = base / "archive"
    make_legacy_archive(archive, years=years, tiles=tiles, seed=5)
    store = base / "store"
    report = convert(str(archive), str(store), ConvertOptions(shard=(SHARD, SHARD)))
    assert report.ok and report.shards_written > 0
    return archive, store


def clone(store: Path, dst: Path) -> Path:
    """A copy of the store made of hard links: cheap; corrupt it only through `rewrite` (never in place)."""
    shutil.copytree(store, dst, copy_function=os.link)
    return dst


def rewrite(path: Path, data: bytes) -> None:
    """Replace a file's content without touching other links to it."""
    path.unlink()
    path.write_bytes(data)


def edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_bytes())
    fn(doc)
    rewrite(path, json.dumps(doc, indent=2).encode())


def shard_index(data: bytes, n: int = (SHARD // 32) ** 2) -> np.ndarray:
    """(n, 2) offsets and sizes from a shard's bytes (index at the end, CRC32C after it)."""
    return np.frombuffer(data[-(n * 16 + 4):-4], dtype="<u8").reshape(n, 2)


def written_chunks(data: bytes) -> list[tuple[int, int, int]]:
    """(inner chunk index, offset, size) of every written chunk."""
    idx = shard_index(data)
    return [(i, int(o), int(s)) for i, (o, s) in enumerate(idx) if o != MISSING]


def shard_keys(store: Path) -> list[str]:
    return sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()
                  and SHARD_KEY.match(p.relative_to(store).as_posix()))


def by_code(report, level: str | None = None, severity: str | None = None) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in report.findings:
        if (level is None or f.level == level) and (severity is None or f.severity == severity):
            out.setdefault(f.code, []).append(f)
    return out


def errors(report, level: str | None = None) -> list:
    return [f for f in report.findings if f.severity == "error" and (level is None or f.level == level)]


def no_internal(report) -> None:
    bad = [f for f in report.findings if f.code == "internal"]
    assert not bad, bad


class RecordingStorage(Storage):
    """Delegates to a LocalStorage and records every call that reads bytes or lists."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: list[tuple] = []
        self.ops: Counter = Counter()

    def list(self, prefix: str = ""):
        self.ops["list"] += 1
        return self.inner.list(prefix)

    def list_dirs(self, prefix: str = ""):
        self.ops["list_dirs"] += 1
        return self.inner.list_dirs(prefix)

    def stat(self, key: str):
        self.ops["stat"] += 1
        self.calls.append(("stat", key))
        return self.inner.stat(key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        self.ops["read_range"] += 1
        self.calls.append(("read_range", key, start, length))
        return self.inner.read_range(key, start, length)

    def read(self, key: str) -> bytes:
        self.ops["read"] += 1
        self.calls.append(("read", key))
        return self.inner.read(key)

    def open(self, key: str):
        self.ops["open"] += 1
        self.calls.append(("open", key))
        return self.inner.open(key)

    def put(self, key, data):
        raise AssertionError("validation must not write")

    def open_writer(self, key, part_size=0):
        raise AssertionError("validation must not write")

    def describe(self, key: str = "") -> str:
        return self.inner.describe(key)


def index_nbytes() -> int:
    return (SHARD // 32) ** 2 * 16 + 4


def crc_of(data: bytes) -> str:
    return f"{crc32c.crc32c(data):08x}"
