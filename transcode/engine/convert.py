"""Run a plan: write metadata, build every pending shard on an executor, journal each one, write the manifest.
Resumable after a kill at any moment; incremental when tiles are added; deterministic bytes."""

from __future__ import annotations

import json
import time as clock
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm import tqdm

from transcode import __version__
from transcode.codecs.spec import CodecSpec, parse_codec_options, parse_codec_spec
from transcode.engine.executors import Executor, Job, make_executor, run_task
from transcode.engine.journal import entry_key, list_entries, read_entries, write_entry
from transcode.engine.plan import Plan, make_plan
from transcode.engine.shardbuild import EncodeSettings
from transcode.engine.storestate import read_settings, read_zone_grids
from transcode.errors import ArchiveError, StoreError, UsageError
from transcode.format.arrays import DEFAULT_CHUNK, DEFAULT_SHARD
from transcode.format.manifest import ObjectRecord, manifest_bytes
from transcode.format.metadata import build_metadata
from transcode.format.sidecar import MANIFEST_KEY, SETTINGS_KEY, settings_document
from transcode.legacy.archive import open_archive
from transcode.legacy.inventory import Inventory, build_inventory, read_inventory
from transcode.legacy.problems import Problem
from transcode.storage import DEFAULT_PART_SIZE, ObjectNotFoundError, S3Options, Storage, StorageError, open_storage


class StrictError(ArchiveError):
    """A bad tile under --strict: stop before writing anything more."""

    exit_code = 1


@dataclass
class ConvertOptions:
    """How to convert (defaults: docs/format.md, "Chunking and sharding" and "Codecs")."""

    years: list[int] | None = None
    zones: list[int] | None = None
    workers: int = 1
    scheduler: Any = None
    shard: tuple[int, int] | None = None  # None: the store's own, else DEFAULT_SHARD
    chunk: tuple[int, int] | None = None  # None: the store's own, else DEFAULT_CHUNK
    codecs: dict[str, CodecSpec] | None = None  # None: the store's own, else the default codecs
    part_size: int | None = None  # None: the store's own, else DEFAULT_PART_SIZE
    strict: bool = False
    progress: bool = False
    inventory: str | None = None
    source_options: S3Options = field(default_factory=S3Options)
    store_options: S3Options = field(default_factory=S3Options)

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
        return EncodeSettings(tuple(shard), tuple(chunk), codecs, part)


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
        return read_inventory(options.inventory)
    archive = open_archive(source, options.source_options)
    return build_inventory(archive, workers=8, progress=options.progress)


def _settings_document(plan: Plan, settings: EncodeSettings, source: str) -> dict:
    return settings_document(version=__version__, source=source, time=plan.time, encoding=settings.fingerprint(),
                             part_size=settings.part_size, codecs={a: c.text for a, c in settings.codecs.items()})


def _check_compatible(store: Storage, existing: dict, settings: EncodeSettings) -> None:
    if existing.get("encoding") != settings.fingerprint():
        raise UsageError(store.describe(SETTINGS_KEY),
                         f"the store was written with other shard/chunk/codec settings ({json.dumps(existing.get('encoding'))}); "
                         "use the same settings or a new store")


def _changed_metadata(store: Storage, docs: dict[str, bytes]) -> dict[str, bytes]:
    """The metadata objects that differ from (or are missing in) the store; a failure other than absence is raised."""
    changed = {}
    for key, data in docs.items():
        try:
            if store.read(key) == data:
                continue
        except ObjectNotFoundError:
            pass
        changed[key] = data
    return changed


def _write_metadata(store: Storage, docs: dict[str, bytes]) -> int:
    """Write these metadata objects, the root zarr.json last. Returns the count."""
    for key in sorted(docs, key=lambda k: (k == "zarr.json", k)):
        store.put(key, docs[key])
    return len(docs)


def convert(source: str, store_url: str, options: ConvertOptions | None = None, *,
            time_axis: list[int] | None = None, inventory: Inventory | None = None) -> ConvertReport:
    """Convert a legacy archive into (or onward into) a Zarr v3 store."""
    options = options or ConvertOptions()
    t0 = clock.perf_counter()
    # workers start (and import) while the inventory is read and the plan made
    executor = make_executor(options.workers, options.scheduler)
    try:
        return _convert(source, store_url, options, executor, t0, time_axis, inventory)
    finally:
        executor.close()


def _convert(source: str, store_url: str, options: ConvertOptions, executor: Executor, t0: float,
             time_axis: list[int] | None, inventory: Inventory | None) -> ConvertReport:
    inv = inventory or load_inventory(source, options)
    store = open_storage(store_url, options.store_options)
    existing = read_settings(store)
    settings = options.settings(existing)
    grids = read_zone_grids(store)
    time_axis = time_axis or (existing or {}).get("time")
    if existing is not None:
        _check_compatible(store, existing, settings)
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

    store.discard_abandoned_writes()
    docs = build_metadata(plan.grids, plan.time, shard=settings.shard, chunk=settings.chunk, codecs=settings.codecs,
                          build_version=__version__)
    sidecar = json.dumps(_settings_document(plan, settings, source), indent=1, sort_keys=True).encode()
    new_settings = existing != json.loads(sidecar)
    changed_meta = _changed_metadata(store, docs)

    fp_settings = settings.fingerprint()
    fingerprints = {t.name: t.fingerprint(fp_settings) for t in plan.tasks}
    entries = list_entries(store)
    todo = [t for t in plan.tasks if entry_key(t, fingerprints[t.name]) not in entries.get(t.name, {})]
    todo.sort(key=lambda t: -t.work(plan.shard))  # biggest first: workers finish together
    done_before = len(plan.tasks) - len(todo)
    # old entries beside a finished shard's current one: a kill came between writing a rewritten shard's
    # new entry and deleting its old one
    keys_now = {t.name: entry_key(t, fingerprints[t.name]) for t in plan.tasks}
    stale = [k for name, key in keys_now.items() if key in entries.get(name, {}) for k in entries[name] if k != key]
    if todo or stale or changed_meta or new_settings:
        # the manifest describes a finished store: withdraw it before anything changes, so that a kill from
        # here on cannot leave an outdated manifest in a store that the next run would call finished
        store.delete(MANIFEST_KEY)
    if new_settings:
        store.put(SETTINGS_KEY, sidecar)
    for k in stale:
        store.delete(k)
    meta_written = _write_metadata(store, changed_meta)
    nothing = not todo and meta_written == 0 and store.exists(MANIFEST_KEY)

    failed: list[dict] = []
    written = in_bytes = out_bytes = 0
    job = Job(source, options.source_options, store_url, options.store_options, settings)
    by_name = {t.name: t for t in todo}
    bar = tqdm(total=len(todo), unit="shard", desc="convert", disable=not options.progress)
    try:
        for result in executor.run(_safe_task, todo, job):
            task = by_name[result["task"]]
            if "error" in result:
                failed.append({"shard": task.name, "error": result["error"]})
                if options.strict:
                    raise StrictError(task.name, result["error"] + " [--strict]")
                bar.update(1)
                continue
            objects = [ObjectRecord(**o) for o in result["objects"]]
            write_entry(store, task, fingerprints[task.name], objects)
            for stale in entries.get(task.name, {}):
                store.delete(stale)
            written += 1
            in_bytes += result["input_bytes"]
            out_bytes += sum(o.size for o in objects)
            elapsed = max(clock.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{in_bytes / elapsed / 1e6:.1f} MB/s in")
            bar.update(1)
    finally:
        bar.close()

    manifest_written = False
    if not nothing and not failed:  # a manifest describes a finished store: none while a shard is missing
        remote = store.local_path("") is None
        records = [ObjectRecord.from_bytes(k, v, settings.part_size, remote) for k, v in docs.items()]
        current = list_entries(store)
        keys = [k for task_entries in current.values() for k in task_entries]
        for objs in read_entries(store, keys).values():
            records += objs
        store.put(MANIFEST_KEY, manifest_bytes(records))
        manifest_written = True
    return ConvertReport(
        source=source, store=store.describe(), time=plan.time, shards_planned=len(plan.tasks),
        shards_written=written, shards_already_done=done_before, metadata_written=meta_written,
        input_bytes=in_bytes, output_bytes=out_bytes, seconds=clock.perf_counter() - t0, executor=executor.name,
        skipped_tiles=plan.skipped, clipped_tiles=plan.clipped, failed=failed, nothing_to_do=nothing,
        years_outside_time_axis=plan.outside_time,
        manifest=store.describe(MANIFEST_KEY) if manifest_written or nothing else "",
    )


def _safe_task(task, job: Job) -> dict:
    """Run one task, turning a bad tile found while reading into a reported failure instead of a crash. A store
    that cannot take the shard (full, read-only, refusing) stops the run: no later shard would fare better."""
    try:
        return {"task": task.name, **run_task(task, job).to_dict()}
    except StorageError as e:
        if _in_store(e, job):
            raise
        return {"task": task.name, "error": str(e)}
    except (ArchiveError, StoreError) as e:
        return {"task": task.name, "error": str(e)}


def _in_store(e: StorageError, job: Job) -> bool:
    """The storage error is about an object of the store (not of the source)."""
    return e.where.startswith(open_storage(job.store_url, job.store_options).describe().rstrip("/") + "/")


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
