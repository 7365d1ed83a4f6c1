"""Run a verification, then optionally write a repair plan, carry it out and verify again."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from transcode.format.sidecar import SETTINGS_KEY
from transcode.mirrors.engine import Outcome, Verifier, VerifyOptions
from transcode.mirrors.repair import execute, write_plan
from transcode.mirrors.report import Reporter
from transcode.mirrors.spec import Mirror
from transcode.storage import DEFAULT_PART_SIZE


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while running, so a stopped run still saves its checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _store_part_size(v: Verifier) -> int:
    """The store's own part size: from its manifest rows, else its convert settings, else the default."""
    if v.manifest_part_size:
        return v.manifest_part_size
    raw = v.read_meta(SETTINGS_KEY)
    try:
        p = json.loads(raw).get("part_size") if raw else None
    except ValueError:
        p = None
    return int(p) if p else DEFAULT_PART_SIZE


def verify_mirrors(mirrors: list[Mirror], opts: VerifyOptions, reporter: Reporter, repair_plan: str | None = None,
                   repair: bool = False, part_size: int | None = None, keep_extra: bool = False) -> dict:
    """Verify; with `repair_plan` write the plan, with `repair` carry it out and verify again. Returns the last
    summary document."""
    v = Verifier(mirrors, opts)
    outcome: Outcome = v.run(reporter)
    summary = outcome.summary
    if not (repair_plan or repair):
        outcome.cleanup(opts.keep_state)
        return summary
    source = opts.source_of_truth
    assert source is not None, "a repair needs a source of truth"
    plan = Path(repair_plan) if repair_plan else outcome.differences_file.with_name(
        outcome.differences_file.name.replace(".diffs.jsonl", ".plan.jsonl"))
    counts = write_plan(outcome.differences_file, plan, source, keep_extra)
    outcome.cleanup(opts.keep_state)
    reporter.event({"type": "plan", "path": str(plan), **counts,
                    "message": f"repair plan: {counts['copy']} copies, {counts['delete']} deletions, "
                               f"{counts['skip']} skipped -> {plan}"})
    if not repair:
        return summary
    if counts["copy"] + counts["delete"] == 0:
        if not repair_plan:
            plan.unlink(missing_ok=True)
        return {**summary, "repair": {"copied": 0, "deleted": 0, "skipped": counts["skip"], "failed": 0}}
    store_part = part_size or _store_part_size(v)
    storages = dict(zip(v.pol.names, v.storages))
    done = execute(plan, storages, store_part, v.retrier, opts.concurrency, reporter.event)
    if not repair_plan:
        plan.unlink(missing_ok=True)
        try:
            plan.parent.rmdir()  # the default state directory, when nothing else is in it
        except OSError:
            pass
    again = Verifier(mirrors, replace(opts, restart=True))
    again.phase = "reverify"
    again.extra = {"repair": done}
    outcome = again.run(reporter)
    outcome.cleanup(opts.keep_state)
    return outcome.summary
