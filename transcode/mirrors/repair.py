"""Repair: turn a pass's differences into a plan of copies (and deletions of extras) from a source of truth, and
carry it out with a fixed part size so the copies' ETags match the source's afterwards."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from pathlib import Path

from transcode.mirrors import etags
from transcode.mirrors.retry import Retrier
from transcode.storage import S3Storage, Storage, StorageError

COPY_KINDS = ("missing", "size", "content", "unproven")
SINGLE_PUT_MAX = 256 * 1024 * 1024  # a single-part source up to this size is copied with one PUT (same MD5 ETag)
MIN_PART = 5 * 1024 * 1024
BLOCK = 8 * 1024 * 1024


def _groups(differences: Path) -> Iterator[tuple[str, list[dict]]]:
    with open(differences, "rb") as f:
        rows = (json.loads(line) for line in f if line.strip())
        for key, group in groupby(rows, key=lambda d: d["key"]):
            yield key, list(group)


def plan_operations(differences: Path, source: str, keep_extra: bool = False) -> Iterator[dict]:
    """The operations (schemas/mirror-repair-plan.schema.json) that bring every mirror in line with `source`."""
    for key, diffs in _groups(differences):
        own = next((d for d in diffs if d["mirror"] == source), None)
        for d in diffs:
            if d["mirror"] == source:
                continue
            if d["kind"] == "extra":
                if own is not None and own["kind"] != "extra":
                    op = {"op": "skip", "key": key, "target": d["mirror"],
                          "reason": f"the source's own copy is {own['kind']}: {own['detail']}"}
                else:
                    op = {"op": "skip" if keep_extra else "delete", "key": key, "target": d["mirror"],
                          "reason": "extra" if not keep_extra else "extra (kept: --keep-extra)"}
                yield op
            elif d["kind"] in COPY_KINDS:
                if own is not None:
                    yield {"op": "skip", "key": key, "target": d["mirror"],
                           "reason": f"{d['kind']} here, but the source's own copy is {own['kind']}: {own['detail']}"}
                else:
                    yield {"op": "copy", "key": key, "source": source, "target": d["mirror"],
                           "size": d["expected_size"], "reason": d["kind"]}


def write_plan(differences: Path, out: Path, source: str, keep_extra: bool = False) -> dict[str, int]:
    """Write the plan as JSON lines; returns how many operations of each kind."""
    counts = {"copy": 0, "delete": 0, "skip": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for op in plan_operations(differences, source, keep_extra):
            counts[op["op"]] += 1
            f.write(json.dumps(op, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return counts


def part_size_for(src: Storage, key: str, size: int, store_part: int, retrier: Retrier, name: str) -> int:
    """The part size that reproduces the source copy's ETag: its own multipart part size when the server tells,
    one PUT for a single-part source, else the store's part size."""
    if not isinstance(src, S3Storage):
        return store_part
    info = retrier.call(name, lambda: src.stat(key))
    tag = etags.parse(info.etag)
    if tag is None:
        return store_part
    if tag[1] == 0:
        return max(size + 1, MIN_PART) if size <= SINGLE_PUT_MAX else store_part
    plen, parts = retrier.call(name, lambda: src.part_info(key))
    if parts == tag[1] and etags.parts_for(size, plen) == parts:
        return max(plen, MIN_PART)
    return store_part


def copy_object(src: Storage, dst: Storage, key: str, size: int | None, part_size: int) -> str | None:
    """Stream one object from src to dst (visible only when complete); returns the new copy's ETag."""
    with src.open(key) as f, dst.open_writer(key, part_size) as w:
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            w.write(block)
        if size is not None and w.size != size:
            raise StorageError(dst.describe(key), f"copied {w.size} bytes, expected {size}: the source changed")
    return w.etag


def execute(plan: Path, storages: dict[str, Storage], store_part: int, retrier: Retrier, concurrency: int,
            report: Callable[[dict], None]) -> dict[str, int]:
    """Carry out a plan; every step is reported; returns counts (copied, deleted, skipped, failed)."""
    counts = {"copied": 0, "deleted": 0, "skipped": 0, "failed": 0}

    def run(op: dict) -> dict:
        key, target = op["key"], op["target"]
        res = {"type": "repair", "op": op["op"], "key": key, "target": target, "status": "done"}
        try:
            if op["op"] == "copy":
                src, dst = storages[op["source"]], storages[target]
                if op["source"] == target:
                    raise StorageError(target, "refusing to copy a mirror onto itself")
                part = part_size_for(src, key, op["size"] or 0, store_part, retrier, op["source"])
                res["part_size"] = part
                res["etag"] = retrier.call(target, lambda: copy_object(src, dst, key, op["size"], part))
            elif op["op"] == "delete":
                retrier.call(target, lambda: storages[target].delete(key))
            else:
                res["status"] = "skipped"
                res["error"] = op.get("reason")
        except Exception as e:  # noqa: BLE001 - one failed copy must not stop the others
            res["status"] = "failed"
            res["error"] = str(e)
        return res

    def ops() -> Iterator[dict]:
        with open(plan, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def done(res: dict) -> None:
        kind = {"copy": "copied", "delete": "deleted"}.get(res["op"], "skipped") if res["status"] == "done" \
            else res["status"]
        counts[kind] += 1
        report(res)

    workers = max(1, min(concurrency, 4))  # each S3 copy holds up to two parts (one filling, one uploading)
    with ThreadPoolExecutor(workers) as pool:
        window: deque = deque()
        for op in ops():
            window.append(pool.submit(run, op))
            if len(window) >= workers * 4:
                done(window.popleft().result())
        while window:
            done(window.popleft().result())
    return counts
