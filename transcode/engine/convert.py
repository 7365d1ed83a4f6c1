"""Run a plan: write metadata, build every pending shard on an executor, journal each one, write the manifest.
Resumable after a kill at any moment; incremental when tiles are added; deterministic bytes."""

from __future__ import annotations

import json
import os
import time as clock
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Any

from tqdm import tqdm

from transcode import __version__
from transcode.codecs.spec import CodecSpec, parse_codec_options, parse_codec_spec
from transcode.engine.encodepool import resolve_threads
from transcode.engine.executors import Executor, Job, make_executor, run_task
from transcode.engine.identity import check_dataset
from transcode.engine.journal import delete_entry, entry_keys, iter_records, list_entries, write_entry
from transcode.engine.metasync import MetadataSync
from transcode.engine.plan import Plan, make_plan
from transcode.engine.schedule import PendingShards
from transcode.engine.shardbuild import EncodeSettings
from transcode.engine.storestate import read_settings, read_zone_grids
from transcode.engine.stretchstore import StretchStore, stretch_records
from transcode.errors import AccessDeniedError, ArchiveError, StoreError, TransientStorageError, UsageError
from transcode.format.arrays import DEFAULT_CHUNK, DEFAULT_SHARD, STRETCH_SAMPLE_SIZE
from transcode.format.attributes import check_depths
from transcode.format.manifest import ObjectRecord, manifest_bytes
from transcode.format.metadata import iter_zone_metadata
from transcode.format.sidecar import MANIFEST_KEY, SETTINGS_KEY, settings_document
from transcode.legacy.archive import open_archive
from transcode.legacy.dataset import Dataset, resolve
from transcode.legacy.inventory import Inventory, build_inventory, read_inventory
from transcode.legacy.problems import Problem
from transcode.storage import DEFAULT_PART_SIZE, S3Options, Storage, StorageError, open_storage
from transcode.storage.retries import RetryCount, retry_count


class StrictError(ArchiveError):
    """A bad tile under --strict: stop before writing anything more."""

    exit_code = 1


@dataclass
class ConvertOptions:
    """How to convert (defaults: docs/format.md, "Chunking and sharding" and "Codecs")."""

    years: list[int] | None = None
    zones: list[int] | None = None
    workers: int = 1
    threads_per_worker: int | None = None  # encoding threads per shard; None: every core a worker may use
    scheduler: Any = None
    shard: tuple[int, int] | None = None  # None: the store's own, else DEFAULT_SHARD
    chunk: tuple[int, int] | None = None  # None: the store's own, else DEFAULT_CHUNK
    codecs: dict[str, CodecSpec] | None = None  # None: the store's own, else the default codecs
    part_size: int | None = None  # None: the store's own, else DEFAULT_PART_SIZE
    strict: bool = False
    progress: bool = False
    inventory: str | None = None
    dataset_version: str | None = None  # overrides the source's own dataset (recorded as overridden)
    source_options: S3Options = field(default_factory=S3Options)
    store_options: S3Options = field(default_factory=S3Options)
    depths: list[int] | None = None  # nested depths (v2 datasets and later); None: the store's own, else none
    stretch_stats: bool | None = None  # collect stretch statistics; None: as the store does, else yes
    stretch_sample_size: int | None = None  # their sample's K; None: the store's own, else STRETCH_SAMPLE_SIZE

    def settings(self, existing: dict | None = None) -> EncodeSettings:
        """The encoding settings: what was given, else what the existing store recorded, else the defaults."""
        enc = (existing or {}).get("encoding") or {}
        recorded_codecs = (existing or {}).get("codecs")
        shard = self.shard or tuple(enc.get("shard") or DEFAULT_SHARD)
        chunk = self.chunk or tuple(enc.get("chunk") or DEFAULT_CHUNK)
        if self.codecs is not None:
            codecs = dict(self.codecs)
        elif recorded_codecs:
            codecs = {a: parse_codec_spec(t) for a, t in recorded_codecs.items()}
        else:
            codecs = parse_codec_options(None)
        part = self.part_size or (existing or {}).get("part_size") or DEFAULT_PART_SIZE
        depths = self.depths if self.depths is not None else enc.get("depths") or []
        return EncodeSettings(tuple(shard), tuple(chunk), codecs, part, depths=tuple(sorted(depths)))

    def stretch(self, existing: dict | None = None) -> dict:
        """{collected, sample_size}: what was given, else what the existing store recorded (a store written before
        stretch statistics existed collects none), else collected with the default sample size."""
        if existing is None:
            recorded = {"collected": True, "sample_size": STRETCH_SAMPLE_SIZE}
        else:
            recorded = existing.get("stretch") or {"collected": False, "sample_size": STRETCH_SAMPLE_SIZE}
        out = dict(recorded)
        if self.stretch_stats is not None:
            out["collected"] = self.stretch_stats
        if self.stretch_sample_size is not None:
            out["sample_size"] = self.stretch_sample_size
        return out


@dataclass
class ConvertReport:
    """What a conversion did."""

    source: str
    store: str
    time: list[int]
    shards_planned: int
    shards_written: int
    shards_already_done: int
    metadata_written: int
    input_bytes: int
    output_bytes: int
    seconds: float
    executor: str
    skipped_tiles: list[Problem]
    clipped_tiles: list[Problem]
    failed: list[dict]
    nothing_to_do: bool
    manifest: str
    years_outside_time_axis: list[int] = field(default_factory=list)
    retries: int = 0  # storage requests retried (throttling, 5xx, resets, cut bodies), source and store
    transient: dict[str, int] = field(default_factory=dict)  # the transient failures behind them, by reason
    depths: list[int] = field(default_factory=list)  # the store's nested depths
    stretch: dict = field(default_factory=dict)  # collected, sample_size, zone_years (rebuilt in this run)
    threads_per_worker: int = 1  # encoding threads of each shard (the most any worker used)
    # seconds the shards written in this run spent in each stage, summed over their threads (encodepool.STAGES)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped_tiles

    def to_json(self) -> dict:
        d = asdict(self)
        d["skipped_tiles"] = [p.to_dict() for p in self.skipped_tiles]
        d["clipped_tiles"] = [p.to_dict() for p in self.clipped_tiles]
        d["throughput_mb_s"] = (self.input_bytes / self.seconds / 1e6) if self.seconds > 0 else None
        return d


def load_inventory(source: str, options: ConvertOptions) -> Inventory:
    """The source's inventory: from `options.inventory` if given, else by listing the archive now."""
    if options.inventory:
        inv = read_inventory(options.inventory)
        if options.dataset_version:
            inv.dataset = resolve(list(inv.dataset.claims), options.dataset_version)
        return inv
    archive = open_archive(source, options.source_options, dataset_version=options.dataset_version)
    return build_inventory(archive, progress=options.progress)


def _settings_document(plan: Plan, settings: EncodeSettings, source: str, dataset: Dataset, stretch: dict) -> dict:
    return settings_document(version=__version__, source=source, time=plan.time, encoding=settings.fingerprint(),
                             part_size=settings.part_size, codecs={a: c.text for a, c in settings.codecs.items()},
                             dataset=dataset.record(), stretch=stretch)


def _check_new_layout(source: str, options: ConvertOptions, dataset: Dataset, stretch: dict) -> None:
    """Refuse (exit 2, before anything is written) nested depths the source's dataset may not have, and a sample
    size that is not a whole number of at least 1."""
    try:
        check_depths(list(options.depths or []), dataset.version)
    except ValueError as e:
        raise UsageError(f"--depths {','.join(map(str, options.depths or []))}", f"{e} ({source})") from None
    k = stretch["sample_size"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError("--stretch-sample-size", f"wants a whole number of at least 1, not {k!r}")


def _check_compatible(store: Storage, existing: dict, settings: EncodeSettings, stretch: dict) -> None:
    recorded = (existing.get("encoding") or {}).get("depths") or []
    if list(settings.depths) != recorded:
        raise UsageError(store.describe(SETTINGS_KEY),
                         f"the store has nested depths {recorded or 'none'}, not {list(settings.depths) or 'none'}: "
                         "depths are fixed when a store is created (every shard would need them); use a new store")
    held = existing.get("stretch") or {"collected": False, "sample_size": STRETCH_SAMPLE_SIZE}
    if stretch["collected"] != held["collected"]:
        said = "collects stretch statistics" if held["collected"] else "was written without stretch statistics"
        raise UsageError(store.describe(SETTINGS_KEY), f"the store {said}; a run may not change that (its shards "
                         "would be counted in part): use the store's setting or a new store")
    if stretch["sample_size"] != held["sample_size"]:
        raise UsageError(store.describe(SETTINGS_KEY), f"the store's stretch sample has {held['sample_size']} "
                         f"slots, not {stretch['sample_size']}: use its size or a new store")
    if existing.get("encoding") != settings.fingerprint():
        raise UsageError(store.describe(SETTINGS_KEY),
                         f"the store was written with other shard/chunk/codec settings ({json.dumps(existing.get('encoding'))}); "
                         "use the same settings or a new store")


def convert(source: str, store_url: str, options: ConvertOptions | None = None, *,
            time_axis: list[int] | None = None, inventory: Inventory | None = None) -> ConvertReport:
    """Convert a legacy archive into (or onward into) a Zarr v3 store."""
    options = options or ConvertOptions()
    t0 = clock.perf_counter()
    retried_before = retry_count()
    # workers start (and import) while the inventory is read and the plan made
    executor = make_executor(options.workers, options.scheduler)
    try:
        report = _convert(source, store_url, options, executor, t0, time_axis, inventory)
    finally:
        executor.close()
    retried = retry_count() - retried_before + RetryCount(report.retries, report.transient)  # + the workers'
    report.retries, report.transient = retried.retries, retried.transient
    return report


def _convert(source: str, store_url: str, options: ConvertOptions, executor: Executor, t0: float,
             time_axis: list[int] | None, inventory: Inventory | None) -> ConvertReport:
    inv = inventory or load_inventory(source, options)
    store = open_storage(store_url, options.store_options)
    existing = read_settings(store)
    settings = options.settings(existing)
    stretch = options.stretch(existing)
    grids = read_zone_grids(store)
    time_axis = time_axis or (existing or {}).get("time")
    if existing is not None:
        _check_compatible(store, existing, settings, stretch)
    else:
        _check_new_layout(source, options, inv.dataset, stretch)
    if time_axis and options.years:
        outside = [y for y in options.years if y not in time_axis]
        if outside:
            raise UsageError(store.describe(),
                             f"years {outside} are outside the store's time axis {time_axis[0]}..{time_axis[-1]}; "
                             "append later years with `tessera-transcode extend`")
    plan = make_plan(inv, years=options.years, zones=options.zones, shard=settings.shard, chunk=settings.chunk,
                     time=time_axis, grids=grids)
    if options.strict and (plan.skipped or plan.clipped):
        first = (plan.skipped + plan.clipped)[0]
        raise StrictError(first.path, f"{first.kind} ({first.tile} {first.year}): {first.message} [--strict]")
    if not plan.time or not plan.grids:
        raise UsageError(source, "no usable tiles to convert for the requested years and zones")

    check_dataset(source, inv.dataset, store.describe(), existing)

    store.discard_abandoned_writes()
    sidecar = json.dumps(_settings_document(plan, settings, source, inv.dataset, stretch), indent=1,
                         sort_keys=True).encode()

    # the manifest describes a finished store: withdraw it before anything changes, so that a kill from here on
    # cannot leave an outdated manifest in a store that the next run would call finished
    withdrawn = []

    def withdraw_manifest() -> None:
        if not withdrawn:
            store.delete(MANIFEST_KEY)
            withdrawn.append(True)

    if existing != json.loads(sidecar):
        withdraw_manifest()
        store.put(SETTINGS_KEY, sidecar)
    # zone by zone as the passes reach each zone: the parent never holds more than one zone's metadata objects, and
    # the first shard waits for its own zone's metadata only; the root zarr.json (consolidating all) comes last
    zones = iter_zone_metadata(plan.grids, plan.time, shard=settings.shard, chunk=settings.chunk,
                               codecs=settings.codecs, build_version=__version__, model_version=inv.dataset.version,
                               landmask=inv.dataset.needs_landmask, depths=settings.depths,
                               sample_size=stretch["sample_size"])
    metadata = MetadataSync(store, zones, sorted(plan.grids), withdraw_manifest, settings.part_size)
    entries = list_entries(store)
    stats = None
    if stretch["collected"]:
        stats = StretchStore(store, plan, entries, stretch["sample_size"], settings.part_size)
    pending = PendingShards(plan, settings.fingerprint(), entries, store, withdraw_manifest, stats,
                            before_pass=metadata.through)

    failed: list[dict] = []
    written = in_bytes = out_bytes = 0
    in_workers = RetryCount()  # retries made in other processes (this one's are counted by the caller)
    job = Job(source, options.source_options, store_url, options.store_options, settings,
              stretch["sample_size"] if stretch["collected"] else 0, options.threads_per_worker)
    threads_used = 0
    stage_seconds: dict[str, float] = {}
    bar = tqdm(total=sum(plan.shard_counts().values()) if options.progress else None, unit="shard", desc="convert",
               disable=not options.progress)
    try:
        for result in executor.run(_safe_task, pending, job):
            task, fingerprint, replaced = pending.finished(result["task"])
            if result["pid"] != os.getpid():
                in_workers += RetryCount.from_dict(result["retried"])
            if "error" in result:
                failed.append({"shard": task.name, "error": result["error"]})
                if stats is not None:
                    stats.finished(task, ok=False)
                if options.strict:
                    raise StrictError(task.name, result["error"] + " [--strict]")
                bar.update(1)
                continue
            objects = [ObjectRecord(**o) for o in result["objects"]]
            write_entry(store, task, fingerprint, objects)
            for stale in replaced:
                delete_entry(store, stale)
            if stats is not None:
                stats.finished(task, ok=True)
            written += 1
            threads_used = max(threads_used, result["threads"])
            for stage, seconds in result.get("stages", {}).items():
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + seconds
            in_bytes += result["input_bytes"]
            out_bytes += sum(o.size for o in objects)
            elapsed = max(clock.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{in_bytes / elapsed / 1e6:.1f} MB/s in")
            bar.update(1)
    finally:
        bar.close()
    metadata.finish()
    nothing = not pending.changed and metadata.written == 0 and store.exists(MANIFEST_KEY)

    manifest_written = False
    if not nothing and not failed:  # a manifest describes a finished store: none while a shard is missing
        records = chain(metadata.records, iter_records(store, entry_keys(store)),
                        stretch_records(store))  # streamed into the manifest's Arrow columns
        store.put(MANIFEST_KEY, manifest_bytes(records))
        manifest_written = True
    return ConvertReport(
        source=source, store=store.describe(), time=plan.time, shards_planned=pending.planned,
        shards_written=written, shards_already_done=pending.done_before, metadata_written=metadata.written,
        input_bytes=in_bytes, output_bytes=out_bytes, seconds=clock.perf_counter() - t0, executor=executor.name,
        skipped_tiles=plan.skipped, clipped_tiles=plan.clipped, failed=failed + (stats.problems if stats else []),
        nothing_to_do=nothing, years_outside_time_axis=plan.outside_time,
        manifest=store.describe(MANIFEST_KEY) if manifest_written or nothing else "",
        retries=in_workers.retries, transient=in_workers.transient,
        depths=list(settings.depths), stretch={**stretch, "zone_years": stats.rebuilt if stats else []},
        threads_per_worker=threads_used or resolve_threads(options.threads_per_worker),
        stage_seconds={k: round(v, 3) for k, v in stage_seconds.items()},
    )


def _safe_task(task, job: Job) -> dict:
    """Run one task, turning a bad tile found while reading into a reported failure instead of a crash. Storage
    failing (retries spent, access denied, or any failure of the store) stops the run instead: it says nothing
    about the input, and a later run resumes. The result carries the retries the task made, and its process."""
    before = retry_count()
    out: dict = {"task": task.name, "pid": os.getpid()}
    try:
        out.update(run_task(task, job).to_dict())
    except StorageError as e:
        if isinstance(e, (TransientStorageError, AccessDeniedError)) or _in_store(e.where, job.store_url):
            raise
        out["error"] = str(e)
    except (ArchiveError, StoreError) as e:
        out["error"] = str(e)
    out["retried"] = (retry_count() - before).to_dict()
    return out


def _in_store(where: str, store_url: str) -> bool:
    """Whether a storage error's location lies in the store (not the source)."""
    root = store_url.rstrip("/")
    return where == root or where.startswith((root + "/", os.path.abspath(root) + os.sep))


def extend(store_url: str, years: list[int], options: ConvertOptions | None = None, *,
           source: str | None = None, inventory: Inventory | None = None) -> ConvertReport:
    """Append years to a store's time axis (a metadata resize) and convert them from the source."""
    options = options or ConvertOptions()
    store = open_storage(store_url, options.store_options)
    existing = read_settings(store)
    if existing is None:
        raise StoreError(store.describe(), f"not a store written by tessera-transcode (no {SETTINGS_KEY})")
    time_axis = existing["time"]
    early = sorted(y for y in years if y < time_axis[0])
    if early:
        raise UsageError(store.describe(), f"cannot prepend {early} before {time_axis[0]}: every existing shard's time "
                         "index would change, which means rewriting the whole store; convert into a new store instead")
    new_axis = list(range(time_axis[0], max(max(years), time_axis[-1]) + 1))
    src = source or existing.get("source")
    if not src:
        raise UsageError(store.describe(), "no source recorded; give --source")
    options.years = sorted(set(years))
    return convert(src, store_url, options, time_axis=new_axis, inventory=inventory)
