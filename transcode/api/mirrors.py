"""The `verify_mirrors` verb: its report keeps the summaries whole and the differences up to a cap (all are counted),
and hands every record to a callback as it is committed, so a caller can stream them all."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transcode.api.keywords import part_size_bytes, positive
from transcode.errors import UsageError

REPORT_FORMAT = 1
DEFAULT_MAX_DIFFERENCES = 10_000
Record = dict[str, Any]


@dataclass
class MirrorsPass:
    """One verification pass: its summary and the first differences it committed (in key order)."""

    summary: Record = field(default_factory=dict)
    differences: list[Record] = field(default_factory=list)
    differences_omitted: int = 0

    def to_json(self) -> dict:
        return {"summary": self.summary, "differences": self.differences,
                "differences_omitted": self.differences_omitted}


@dataclass
class MirrorsReport:
    """What `verify_mirrors` found: the pass (and, after a repair, the re-verification) and the repair's steps."""

    passes: list[MirrorsPass] = field(default_factory=list)
    repair_plan: Record | None = None
    repair_events: list[Record] = field(default_factory=list)
    repair_events_omitted: int = 0

    @property
    def summary(self) -> Record:
        """The last pass's summary (schemas/mirror-summary.schema.json)."""
        return self.passes[-1].summary

    @property
    def in_sync(self) -> bool:
        """Every mirror holds the same objects, as far as the level can prove."""
        return bool(self.summary["in_sync"])

    @property
    def ok(self) -> bool:
        """In sync (after the repair, when one was made)."""
        return self.in_sync

    def to_json(self) -> dict:
        """The `verify-mirrors --json` document (schemas/mirror-report.schema.json)."""
        repair = None
        if self.repair_plan is not None:
            repair = {"plan": self.repair_plan, "events": self.repair_events,
                      "events_omitted": self.repair_events_omitted}
        return {"format": REPORT_FORMAT, "in_sync": self.in_sync, "passes": [p.to_json() for p in self.passes],
                "repair": repair}


class _Recorder:
    """The verifier's reporter for the API: keeps the report (each list up to `cap`) and passes on every record."""

    def __init__(self, cap: int, on_record: Callable[[Record], None] | None) -> None:
        self.cap = cap
        self.on_record = on_record or (lambda record: None)
        self.report = MirrorsReport()
        self.current = MirrorsPass()

    def difference(self, d: Record) -> None:
        if len(self.current.differences) < self.cap:
            self.current.differences.append(d)
        else:
            self.current.differences_omitted += 1
        self.on_record(d)

    def event(self, doc: Record) -> None:
        r = self.report
        if doc.get("type") == "plan":
            r.repair_plan = doc
        elif len(r.repair_events) < self.cap:
            r.repair_events.append(doc)
        else:
            r.repair_events_omitted += 1
        self.on_record(doc)

    def summary(self, doc: Record) -> None:
        self.current.summary = doc
        self.report.passes.append(self.current)
        self.current = MirrorsPass()
        self.on_record(doc)


def verify_mirrors(mirrors: Sequence[str] | Mapping[str, str | Mapping[str, Any]] = (), *,
                   mirrors_file: str | os.PathLike[str] | None = None,
                   mirror_options: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
                   level: str = "list", sample: int | None = None, seed: int = 0, manifest: str | None = None,
                   source_of_truth: str | None = None, exclude: Iterable[str] = (), concurrency: int = 16,
                   retries: int = 8, timeout: float | None = None, state: str | os.PathLike[str] | None = None,
                   restart: bool = False, repair_plan: str | os.PathLike[str] | None = None, repair: bool = False,
                   part_size: int | None = None, keep_extra: bool = False,
                   max_differences: int = DEFAULT_MAX_DIFFERENCES, progress: bool = False,
                   on_record: Callable[[Record], None] | None = None) -> MirrorsReport:
    """Compare two or more copies of a store at `level` (list, etag, manifest, zarr, content); with `repair_plan`
    write what would bring them in line with `source_of_truth`, with `repair` do it and verify again.

    `mirrors`: `[NAME=]URL` strings (or names from `mirrors_file`), or {NAME: URL} / {NAME: {"url": URL, KEY:
    VALUE}}; `mirror_options`: {NAME: {KEY: VALUE}} (the `-O NAME:KEY=VALUE` flag). KEYs are the S3 settings'
    names (endpoint_url, region, aws_profile, anonymous, path_style, ca_bundle, requester_pays, acl) and
    part_size (MiB). `on_record` gets every difference, event and summary as it is committed; the report lists
    up to `max_differences` differences per pass."""
    from transcode.mirrors.engine import VerifyOptions
    from transcode.mirrors.run import verify_mirrors as run
    from transcode.mirrors.spec import parse_mirrors

    if (repair or repair_plan) and not source_of_truth:
        raise UsageError("--repair" if repair else "--repair-plan", "needs --source-of-truth NAME")
    for value, flag in ((concurrency, "--concurrency"), (retries, "--retries"), (max_differences, "--max-differences")):
        positive(value, flag)
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 0):
        raise UsageError("--sample", f"wants a whole number of 0 or more, not {sample!r}")
    table = mirrors if isinstance(mirrors, Mapping) else None
    specs = parse_mirrors([] if table is not None else list(mirrors), mirror_options,
                          os.fspath(mirrors_file) if mirrors_file is not None else None, table=table)
    opts = VerifyOptions(level=level, sample=sample, seed=seed, manifest=manifest, source_of_truth=source_of_truth,
                         exclude=tuple(exclude), concurrency=concurrency, attempts=retries, retries=min(retries, 4),
                         timeout=timeout, state=os.fspath(state) if state is not None else None, restart=restart,
                         progress=progress)
    recorder = _Recorder(max_differences, on_record)
    last = run(specs, opts, recorder, repair_plan=os.fspath(repair_plan) if repair_plan is not None else None,
               repair=repair, part_size=part_size_bytes(part_size), keep_extra=keep_extra)
    recorder.report.passes[-1].summary = last  # a repair with nothing to do adds its counts to the summary
    return recorder.report
