"""The resume journal: one small object per finished shard, named by its input fingerprint, so a listing
alone tells which shards are done and still current (keys: transcode.format.sidecar)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from itertools import islice

from transcode.engine.plan import ShardTask
from transcode.errors import StoreError
from transcode.format.manifest import ObjectRecord
from transcode.format.sidecar import JOURNAL_PREFIX, journal_key, journal_shard, partial_key
from transcode.storage import Storage

__all__ = ["JOURNAL_PREFIX", "delete_entry", "entry_key", "entry_keys", "iter_records", "list_entries", "write_entry"]


def entry_key(task: ShardTask, fingerprint: str) -> str:
    """Journal key of a shard built from inputs with this fingerprint."""
    return journal_key(task.group, task.year, task.shard_row, task.shard_col, fingerprint)


def list_entries(store: Storage) -> dict[str, dict[str, int]]:
    """Task name -> {journal key: size} for every journal entry present."""
    out: dict[str, dict[str, int]] = {}
    for obj in store.list(JOURNAL_PREFIX):
        shard = journal_shard(obj.key)
        if shard is not None:
            out.setdefault("/".join(shard), {})[obj.key] = obj.size
    return out


def write_entry(store: Storage, task: ShardTask, fingerprint: str, objects: list[ObjectRecord]) -> str:
    """Record a finished shard (after its objects were committed)."""
    key = entry_key(task, fingerprint)
    doc = {"task": task.name, "fingerprint": fingerprint, "objects": [asdict(o) for o in objects]}
    store.put(key, json.dumps(doc, sort_keys=True).encode())
    return key


def delete_entry(store: Storage, key: str) -> None:
    """Remove a journal entry, then the partial stretch statistics beside it (an entry never outlives them)."""
    store.delete(key)
    store.delete(partial_key(key))


def entry_keys(store: Storage) -> Iterator[str]:
    """Every journal entry's key, streamed from the listing."""
    for obj in store.list(JOURNAL_PREFIX):
        if journal_shard(obj.key) is not None:
            yield obj.key


def iter_records(store: Storage, keys: Iterable[str], workers: int = 16, batch: int = 1024) -> Iterator[ObjectRecord]:
    """The object records of these journal entries, read in parallel a batch of entries at a time (streamed:
    nothing is kept once yielded); StoreError naming an entry that is not one."""
    def one(k: str) -> list[ObjectRecord]:
        def unusable(why: str) -> StoreError:
            return StoreError(store.describe(k), f"not a journal entry ({why}); delete it and convert again to "
                              "rewrite its shard")

        try:
            doc = json.loads(store.read(k))
        except ValueError as e:
            raise unusable(str(e)) from e
        if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
            raise unusable("no 'objects' list")
        try:
            return [ObjectRecord.from_dict(o) for o in doc["objects"]]
        except ValueError as e:
            raise unusable(str(e)) from e

    it = iter(keys)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while chunk := list(islice(it, batch)):
            for objs in pool.map(one, chunk):
                yield from objs
