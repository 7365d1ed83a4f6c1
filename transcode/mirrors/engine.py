"""One verification pass: merge the mirrors' listings (and the manifest), gather evidence per key at the chosen
level with bounded concurrency, commit verdicts in key order, checkpoint, and summarise."""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from transcode.errors import ObjectNotFoundError, StorageError, StoreError, UsageError
from transcode.mirrors import etags
from transcode.mirrors.checkpoint import Checkpoint
from transcode.mirrors.content import content_evidence, digest
from transcode.mirrors.evidence import LEVELS, KeyCase, Policy, Verdict, decide, reference, unresolved
from transcode.mirrors.manifest_rows import MANIFEST_KEY, ManifestFile
from transcode.mirrors.merge import Prefetch, merge, ordered
from transcode.mirrors.report import Reporter, Tally
from transcode.mirrors.retry import Retrier, transient_reason
from transcode.mirrors.sample import Reservoir
from transcode.mirrors.spec import Mirror
from transcode.mirrors.zarrcheck import ZarrLayout, zarr_evidence
from transcode.storage import ObjectInfo, S3Storage, Storage
from transcode.storage.partitioned import PartitionedListing


@dataclass
class VerifyOptions:
    """What to verify and how hard to try."""

    level: str = "list"
    sample: int | None = None  # content level: hash N random objects (plus everything unproven) instead of all
    seed: int = 0
    manifest: str | None = None  # a mirror name or a local manifest.parquet (default: the first mirror with one)
    source_of_truth: str | None = None
    exclude: tuple[str, ...] = ()
    concurrency: int = 16
    attempts: int = 8  # botocore attempts per request
    retries: int = 4  # our own attempts around streamed reads and listings
    timeout: float | None = None
    state: str | None = None
    restart: bool = False
    keep_state: bool = False
    progress: bool = False
    on_commit: Callable[[str], None] | None = field(default=None, repr=False)  # called with each committed key


@dataclass
class Outcome:
    """A finished pass: its summary document and the JSON-lines file of its differences (until cleanup)."""

    summary: dict
    differences_file: Path
    _checkpoint: Checkpoint

    @property
    def in_sync(self) -> bool:
        return bool(self.summary["in_sync"])

    def cleanup(self, keep: bool = False) -> None:
        """Remove the state (and the differences file) of a finished pass."""
        self._checkpoint.finish(keep)


class _Pending:
    """A key on its way through the pipeline: committed strictly in key order."""

    __slots__ = ("case", "future")

    def __init__(self, case: KeyCase, future: Future | None) -> None:
        self.case = case
        self.future = future


class Verifier:
    """Verifies a list of mirrors at one level."""

    def __init__(self, mirrors: list[Mirror], opts: VerifyOptions) -> None:
        if opts.level not in LEVELS:
            raise UsageError("--level", f"unknown level {opts.level!r} (one of {', '.join(LEVELS)})")
        self.mirrors = mirrors
        self.opts = opts
        self.level = LEVELS.index(opts.level)
        names = [m.name for m in mirrors]
        if len(mirrors) < (1 if self.level >= 2 else 2):
            raise UsageError("verify-mirrors", "give at least two mirrors (one is enough from the manifest level up)")
        if opts.sample is not None and self.level < 4:
            raise UsageError("--sample", "sampling chooses what the content level hashes: add --level content")
        self.source = None
        if opts.source_of_truth is not None:
            if opts.source_of_truth not in names:
                raise UsageError("--source-of-truth", f"no mirror named {opts.source_of_truth!r} "
                                                      f"(mirrors: {', '.join(names)})")
            self.source = names.index(opts.source_of_truth)
        self.exclude = re.compile("|".join(fnmatch.translate(p) for p in opts.exclude)) if opts.exclude else None
        conns = max(32, opts.concurrency * 2 + 4)
        self.storages: list[Storage] = [m.open(opts.attempts, opts.timeout, conns) for m in mirrors]
        self.retrier = Retrier(opts.retries)
        self.stop = threading.Event()
        self.probe_ok: list[bool | None] = [None if m.is_s3 else False for m in mirrors]
        self._lock = threading.Lock()
        self._read_bytes = [0] * len(mirrors)
        self.manifest: ManifestFile | None = None
        self.manifest_from: str | None = None
        self.layout: ZarrLayout | None = None
        self.manifest_part_size: int | None = None
        self.pol = Policy(tuple(names), self.level, self.source, False)
        self._bar_bytes = None
        self.phase = "verify"
        self.extra: dict = {}
        self.notices: list[str] = []

    # ------------------------------------------------------------------ configuration and set-up

    def config(self) -> dict:
        """What identifies this verification (checkpoint fingerprint)."""
        o = self.opts
        return {"mirrors": [m.describe() for m in self.mirrors], "level": o.level, "sample": o.sample,
                "seed": o.seed, "exclude": list(o.exclude), "manifest": o.manifest, "source_of_truth": o.source_of_truth}

    def _wrap(self, i: int, e: StorageError) -> StorageError:
        return e.within(f"mirror {self.mirrors[i].name!r}")

    def _listing(self, i: int, after: str | None) -> Iterator[ObjectInfo]:
        """Mirror i's listing (after `after`), fetched ahead in a thread that starts now."""
        storage, name = self.storages[i], self.mirrors[i].name

        def start(last: str | None):
            point = last or after
            return storage.list_after(point) if point else storage.list()

        transient = lambda e: transient_reason(e) is not None
        if isinstance(storage, S3Storage):
            stream = PartitionedListing(storage, after, threads=max(2, min(8, self.opts.concurrency)),
                                        is_transient=transient, retries=self.opts.retries,
                                        on_retry=lambda e: self.retrier.note(name, transient_reason(e)))
        else:
            stream = Prefetch(name, start, key=lambda o: o.key, is_transient=transient, retries=self.opts.retries,
                              on_retry=lambda m, e: self.retrier.note(m, transient_reason(e)))
        self._prefetch.append(stream)

        def items() -> Iterator[ObjectInfo]:
            try:
                yield from ordered(storage.describe(), stream, key=lambda o: o.key)
            except StorageError as e:
                raise self._wrap(i, e) from e
        return items()

    def _open_manifest(self) -> None:
        o = self.opts
        order = list(range(len(self.mirrors)))
        if self.source is not None:
            order.remove(self.source)
            order.insert(0, self.source)
        if o.manifest is not None:
            names = [m.name for m in self.mirrors]
            if o.manifest in names:
                i = names.index(o.manifest)
                self.manifest = ManifestFile(self.storages[i], f"mirror {o.manifest!r}: {MANIFEST_KEY}")
                self.manifest_from = o.manifest
            elif Path(o.manifest).is_file():
                self.manifest = ManifestFile(None, o.manifest, local=o.manifest)
                self.manifest_from = o.manifest
            else:
                raise UsageError("--manifest", f"{o.manifest!r} is neither a mirror name nor a manifest file")
        else:
            for i in order:
                try:
                    self.retrier.call(self.mirrors[i].name, lambda s=self.storages[i]: s.stat(MANIFEST_KEY))
                except ObjectNotFoundError:
                    continue
                except StorageError as e:
                    raise self._wrap(i, e) from e
                self.manifest = ManifestFile(self.storages[i], f"mirror {self.mirrors[i].name!r}: {MANIFEST_KEY}")
                self.manifest_from = self.mirrors[i].name
                break
        if self.manifest is None:
            if self.level == 2:
                raise StoreError("verify-mirrors", f"no store manifest ({MANIFEST_KEY}) on any mirror: the manifest "
                                                   "level needs one (choose another level, or give --manifest FILE)")
            self.notices.append(f"no store manifest ({MANIFEST_KEY}) on any mirror: mirrors are compared with each "
                                "other only")
            return
        self.manifest_part_size = self.manifest.first_part_size()
        self.pol = Policy(self.pol.names, self.level, self.source, True)

    def read_meta(self, key: str) -> bytes | None:
        """A small store object (zarr.json, settings) from the source of truth, else the first mirror that has it;
        None when none has it. A failure other than absence is raised (retried first when transient)."""
        order = ([self.source] if self.source is not None else []) + list(range(len(self.mirrors)))
        for i in order:
            try:
                return self.retrier.call(self.mirrors[i].name, lambda s=self.storages[i]: s.read(key))
            except ObjectNotFoundError:
                continue
            except StorageError as e:
                raise self._wrap(i, e) from e
        return None

    # ------------------------------------------------------------------ evidence

    def read(self, i: int, key: str, start: int, n: int) -> bytes:
        """A ranged read of mirror i: retried, counted, and attributed to the mirror on failure."""
        try:
            data = self.retrier.call(self.mirrors[i].name, lambda: self.storages[i].read_range(key, start, n))
        except StorageError as e:
            raise self._wrap(i, e) from e
        with self._lock:
            self._read_bytes[i] += len(data)
        if self._bar_bytes is not None:
            self._bar_bytes.update(len(data))
        return data

    def _part_size(self, case: KeyCase) -> Callable[[int], int | None]:
        def known(i: int) -> int | None:
            c = case.copies[i]
            tag = etags.parse(c.etag) if c is not None else None
            if tag is None or tag[1] == 0:
                return None
            if i in case.probed:
                return case.probed[i]
            declared = self.mirrors[i].part_size
            if self.probe_ok[i] is False and declared and etags.parts_for(c.size, declared) == tag[1]:
                return declared
            return None
        return known

    def _probe(self, case: KeyCase, i: int) -> None:
        c = case.copies[i]
        tag = etags.parse(c.etag)
        storage = self.storages[i]
        if self.probe_ok[i] is False or not isinstance(storage, S3Storage) or tag is None:
            return
        try:
            plen, parts = self.retrier.call(self.mirrors[i].name, lambda: storage.part_info(case.key))
        except StorageError as e:
            raise self._wrap(i, e) from e
        if parts is None:
            self.probe_ok[i] = False  # the server ignores partNumber (Ceph RGW): fall back to declared part sizes
            return
        self.probe_ok[i] = True
        ok = plen > 0 and parts == tag[1] and etags.parts_for(c.size, plen) == parts
        case.probed[i] = plen if ok else None

    def inline(self, case: KeyCase) -> set[int]:
        """Evidence from the listings alone; returns the mirrors whose part size is worth probing."""
        if self.level < 1:
            return set()
        want = etags.compare(case, self.pol, self._part_size(case))
        return {i for i in want if self.probe_ok[i] is not False and i not in case.probed}

    def needs_io(self, case: KeyCase, probes: set[int]) -> bool:
        """True when a request (probe, zarr read, hashing) can still change a verdict of this key."""
        if self.level == 4 and self.opts.sample is None:
            return bool(case.present)
        if probes:
            return True
        return self.level >= 3 and bool(unresolved(case, self.pol))

    def io(self, case: KeyCase, probes: set[int]) -> KeyCase:
        """Evidence that costs requests (runs in the task pool)."""
        if self.stop.is_set():
            raise KeyboardInterrupt
        _, size, _, _ = reference(case, self.pol)
        if self.level == 4 and self.opts.sample is None:
            content_evidence(case, self.pol, size, True, lambda i: self._hash(case, i))
            return case
        if probes:
            for i in sorted(probes):
                self._probe(case, i)
            case.reset()
            etags.compare(case, self.pol, self._part_size(case))
        if self.level >= 3 and unresolved(case, self.pol):
            zarr_evidence(case, self.pol, self.storages, self.layout, size, self.read)
        if self.level == 4 and unresolved(case, self.pol):
            content_evidence(case, self.pol, size, False, lambda i: self._hash(case, i))
            case.escalated = True
        return case

    def _hash(self, case: KeyCase, i: int) -> tuple[str, str, int]:
        size = case.copies[i].size
        return digest(lambda off, n: self.read(i, case.key, off, n), size, self._io, self.stop)

    # ------------------------------------------------------------------ the pass

    def run(self, reporter: Reporter) -> Outcome:
        """Verify; print differences as they are committed and the summary at the end."""
        o = self.opts
        t0 = time.perf_counter()
        self._prefetch: list[Prefetch] = []
        if self.level >= 2:
            self._open_manifest()
        ckpt = Checkpoint(o.state, self.config(), o.restart)
        state = ckpt.state or {}
        try:
            self.tally = Tally.from_json(state["tally"]) if ckpt.resumed else Tally.new(len(self.mirrors))
            if len(self.tally.mirrors) != len(self.mirrors):
                raise ValueError(f"its tally counts {len(self.tally.mirrors)} mirror(s), the run has "
                                 f"{len(self.mirrors)}")
            self._prev = [(m.requests, m.retries, dict(m.transient)) for m in self.tally.mirrors]
            self.sample = Reservoir(o.sample or 0, o.seed, state.get("sample"))
            for d in ckpt.earlier_differences():
                reporter.difference(d)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # a state file edited by hand
            raise ckpt.unusable(f"{type(e).__name__}: {e}") from e
        resumed_from = ckpt.watermark
        if self.level >= 3:
            self.layout = ZarrLayout(self.read_meta)
        n = len(self.mirrors)
        streams = [self._listing(i, resumed_from) for i in range(n)]
        if self.manifest is not None:
            streams.append(ordered(self.manifest.where, self.manifest.iter_rows(resumed_from), key=lambda r: r.key))
        self._io = ThreadPoolExecutor(max(2, o.concurrency), thread_name_prefix="verify-read")
        pool = ThreadPoolExecutor(max(1, o.concurrency), thread_name_prefix="verify-key")
        bar = tqdm(desc="verify", unit=" obj", disable=not o.progress, initial=self.tally.keys, dynamic_ncols=True)
        self._bar_bytes = tqdm(desc="read", unit="B", unit_scale=True, disable=not o.progress or self.level < 3,
                               position=1, dynamic_ncols=True) if o.progress and self.level >= 3 else None
        window: deque[_Pending] = deque()
        limit = max(4, o.concurrency * 4)
        self.watermark = resumed_from
        listed = 0
        try:
            for key, row in merge(streams, key=lambda x: x.key):
                if self.exclude is not None and self.exclude.match(key):
                    continue
                record = row[n] if self.manifest is not None else None
                case = KeyCase(key, row[:n], record if self.pol.uses_manifest(key) else None)
                listed += max((c.size for c in case.copies if c is not None), default=0)
                probes = self.inline(case)
                fut = pool.submit(self.io, case, probes) if self.needs_io(case, probes) else None
                window.append(_Pending(case, fut))
                while window and (window[0].future is None or window[0].future.done() or len(window) >= limit):
                    self._commit(window.popleft(), ckpt, reporter, bar)
                if ckpt.due():
                    self._save(ckpt)
                    bar.set_postfix_str(f"{_mb(listed)} listed", refresh=False)
            while window:
                self._commit(window.popleft(), ckpt, reporter, bar)
            self._finish_sample(pool, ckpt, reporter, bar)
        except BaseException as e:
            self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            self._io.shutdown(wait=False, cancel_futures=True)
            if self.watermark is None and not ckpt.resumed:
                ckpt.finish()  # nothing committed yet: nothing to resume, leave no state behind
            else:
                self._save(ckpt)
                ckpt.close()
            if isinstance(e, KeyboardInterrupt) and self.watermark is not None:
                e.add_note(f"stopped after {self.tally.keys} keys; state saved in {ckpt.path}: run the same "
                           "verification again to resume")
            raise
        finally:
            for p in self._prefetch:
                p.close()
            bar.close()
            if self._bar_bytes is not None:
                self._bar_bytes.close()
            if self.manifest is not None:
                self.manifest.close()
        pool.shutdown()
        self._io.shutdown()
        summary = self.summary(time.perf_counter() - t0, resumed_from, ckpt)
        reporter.summary(summary)
        return Outcome(summary, ckpt.differences_file(), ckpt)

    def _commit(self, p: _Pending, ckpt: Checkpoint, reporter: Reporter, bar) -> None:
        case = p.future.result() if p.future is not None else p.case
        if case.escalated:
            self.tally.escalated += 1
        verdict = decide(case, self.pol)
        self.watermark = case.key
        if self.level == 4 and self.opts.sample is not None and not case.hashed and case.present \
                and verdict.expected_size is not None:
            evicted = self.sample.offer(case, verdict)
            if evicted is not None:
                self._emit(Verdict.from_json(evicted["verdict"]), [c and c[1] for c in evicted["copies"]],
                           ckpt, reporter)
        else:
            self._emit(verdict, [c.size if c is not None else None for c in case.copies], ckpt, reporter)
        bar.update(1)
        if self.opts.on_commit is not None:
            self.opts.on_commit(case.key)

    def _emit(self, v: Verdict, sizes: list[int | None], ckpt: Checkpoint, reporter: Reporter) -> None:
        records = [d.to_json() for d in v.differences]
        ckpt.add(records)
        for r in records:
            reporter.difference(r)
        self.tally.count(v, sizes)

    # ------------------------------------------------------------------ sampling (content level)

    def _finish_sample(self, pool: ThreadPoolExecutor, ckpt: Checkpoint, reporter: Reporter, bar) -> None:
        """Hash every copy of the sampled keys (in parallel) and emit their verdicts."""
        if not self.sample.entries:
            return

        def hash_all(key: str, entry: dict) -> tuple[KeyCase, list[int | None]]:
            case = self.sample.case(key, entry)
            _, size, _, _ = reference(case, self.pol)
            content_evidence(case, self.pol, size, True, lambda i: self._hash(case, i))
            return case, [c.size if c is not None else None for c in case.copies]

        futures = [(k, pool.submit(hash_all, k, e)) for k, e in sorted(self.sample.entries.items())]
        for key, fut in futures:
            case, sizes = fut.result()
            self._emit(decide(case, self.pol), sizes, ckpt, reporter)
            self.tally.sampled += 1
            self.sample.take(key)
            if ckpt.due():
                self._save(ckpt)

    # ------------------------------------------------------------------ state and summary

    def _counters(self) -> list[tuple[int, int, dict[str, int]]]:
        out = []
        for i, s in enumerate(self.storages):
            prev_req, prev_ret, prev_tr = self._prev[i]
            req = s.requests["total"] if isinstance(s, S3Storage) else 0
            ret = s.retries if isinstance(s, S3Storage) else 0
            tr = dict(prev_tr)
            for src in ((s.transient if isinstance(s, S3Storage) else {}), self.retrier.by_mirror(self.mirrors[i].name)):
                for k, v in src.items():
                    tr[k] = tr.get(k, 0) + v
            own = sum(self.retrier.by_mirror(self.mirrors[i].name).values())
            out.append((prev_req + req, prev_ret + ret + own, tr))
        return out

    def _tally_json(self) -> dict:
        doc = self.tally.to_json()
        with self._lock:
            read = list(self._read_bytes)
        for m, (req, ret, tr), r in zip(doc["mirrors"], self._counters(), read):
            m["requests"], m["retries"], m["transient"] = req, ret, tr
            m["bytes_read"] += r
        return doc

    def _save(self, ckpt: Checkpoint) -> None:
        ckpt.save(self.watermark, {"tally": self._tally_json(), "sample": self.sample.entries})

    def summary(self, seconds: float, resumed_from: str | None, ckpt: Checkpoint) -> dict:
        """The summary document of this pass."""
        t = self._tally_json()
        mirrors = []
        for m, spec in zip(t["mirrors"], self.mirrors):
            warnings = []
            if m["objects"] == 0:
                warnings.append("empty: no objects under this URL (check the path or prefix)")
            mirrors.append({"name": spec.name, "url": spec.url, **m, "warnings": warnings})
        differences = self.tally.differences
        if all(m["objects"] == 0 for m in mirrors) and not (self.manifest and self.manifest.rows):
            raise UsageError("verify-mirrors", "no objects on any mirror: check the URLs and prefixes")
        unproven = sum(m["unproven"] for m in mirrors)
        hint = None
        if unproven and self.level < 4:
            hint = (f"{unproven} copies could not be proven equal at the {self.opts.level} level; "
                    "`--level content --sample 0` hashes just those")
        return {"type": "summary", "phase": self.phase, "in_sync": differences == 0, "level": self.opts.level,
                "keys": self.tally.keys, "differences": differences, "mirrors": mirrors,
                "sampled": self.tally.sampled, "escalated": self.tally.escalated, "seconds": round(seconds, 3),
                "resumed_from": resumed_from, "state": str(ckpt.path), "manifest": self.manifest_from,
                "source_of_truth": self.opts.source_of_truth, "unproven_hint": hint, "notices": self.notices,
                **self.extra}


def _mb(n: int) -> str:
    from transcode.mirrors.report import human_bytes

    return human_bytes(n)
