"""The resume journal: one small object per finished shard, named by its input fingerprint, so a listing
alone tells which shards are done and still current."""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from transcode.engine.plan import ShardTask
from transcode.engine.shardbuild import ObjectRecord
from transcode.storage import Storage

JOURNAL_PREFIX = ".tessera/journal"
FP_LEN = 24


def entry_key(task: ShardTask, fingerprint: str) -> str:
    """Journal key of a shard built from inputs with this fingerprint."""
    return f"{JOURNAL_PREFIX}/{task.group}/{task.year}/{task.shard_row}_{task.shard_col}.{fingerprint[:FP_LEN]}.json"


def list_entries(store: Storage) -> dict[str, dict[str, int]]:
    """Task name -> {journal key: size} for every journal entry present."""
    out: dict[str, dict[str, int]] = {}
    for obj in store.list(JOURNAL_PREFIX):
        rel = obj.key[len(JOURNAL_PREFIX) + 1:]
        parts = rel.split("/")
        if len(parts) != 3 or not parts[2].endswith(".json"):
            continue
        rc = parts[2].split(".", 1)[0]
        sr, _, sc = rc.partition("_")
        out.setdefault(f"{parts[0]}/{parts[1]}/{sr}/{sc}", {})[obj.key] = obj.size
    return out


def write_entry(store: Storage, task: ShardTask, fingerprint: str, objects: list[ObjectRecord]) -> str:
    """Record a finished shard (after its objects were committed)."""
    key = entry_key(task, fingerprint)
    doc = {"task": task.name, "fingerprint": fingerprint, "objects": [o.__dict__ for o in objects]}
    store.put(key, json.dumps(doc, sort_keys=True).encode())
    return key


def read_entries(store: Storage, keys: Iterable[str], workers: int = 16) -> dict[str, list[ObjectRecord]]:
    """Journal key -> the object records it holds (read in parallel)."""
    keys = list(keys)

    def one(k: str) -> list[ObjectRecord]:
        return [ObjectRecord(**o) for o in json.loads(store.read(k))["objects"]]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(keys, pool.map(one, keys)))
