"""Check listed files against registry expectations: sizes always, SHA-256 on request, in parallel."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from transcode.errors import StorageError, TransientStorageError
from transcode.legacy.problems import Problem
from transcode.legacy.registries import Expectation
from transcode.storage import ObjectInfo, Storage

HASH_BLOCK = 8 * 1024 * 1024


def sha256_of(storage: Storage, key: str) -> str:
    """SHA-256 hex digest of one object, streamed in blocks."""
    h = hashlib.sha256()
    with storage.open(key) as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def check_sizes(listed: dict[str, ObjectInfo], expectations: Iterable[Expectation]) -> list[Problem]:
    """Size mismatches, and files a registry lists that the listing does not have."""
    problems = []
    for e in expectations:
        obj = listed.get(e.key)
        if obj is None:
            problems.append(Problem(e.key, "listed-but-missing", f"listed in {e.source} but not present"))
        elif e.size is not None and obj.size != e.size:
            problems.append(Problem(e.key, "size-mismatch", f"{obj.size} bytes, {e.source} says {e.size}"))
    return problems


def hash_files(
    storage: Storage, objects: list[ObjectInfo], workers: int = 8, progress: bool = False
) -> tuple[dict[str, str], list[Problem]]:
    """SHA-256 of each object, in parallel, with a byte progress bar; unreadable objects become problems (a
    transient failure is raised: it says nothing about the object)."""
    digests: dict[str, str] = {}
    problems: list[Problem] = []
    total = sum(o.size for o in objects)
    with tqdm(total=total, unit="B", unit_scale=True, desc="hashing", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(sha256_of, storage, o.key): o for o in objects}
        for fut in as_completed(futures):
            obj = futures[fut]
            try:
                digests[obj.key] = fut.result()
            except TransientStorageError:
                raise
            except StorageError as e:
                problems.append(Problem(obj.key, "unreadable", e.reason))
            bar.update(obj.size)
    return digests, problems


def check_hashes(digests: dict[str, str], expectations: Iterable[Expectation]) -> list[Problem]:
    """Every file whose SHA-256 differs from what a registry says."""
    problems = []
    for e in expectations:
        got = digests.get(e.key)
        if e.sha256 and got is not None and got != e.sha256:
            problems.append(Problem(e.key, "hash-mismatch", f"SHA-256 {got[:16]}… but {e.source} says {e.sha256[:16]}…"))
    return problems
