"""The validate verb: is this store compliant (metadata), sound (structure), decodable (content) and faithful to
its source (fidelity)? Each level includes the cheaper ones; every problem becomes a finding naming its key, and
nothing about a corrupted store makes validation crash. Only an unusable input (no store at the location, an
unreadable source for fidelity, a bad option) or storage failing in a way that may pass (TransientStorageError:
no verdict can be drawn from it) raises, as a TranscodeError (exit code 2)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from transcode.errors import ArchiveError, StorageError, StoreError, TranscodeError, TransientStorageError, UsageError
from transcode.storage import S3Options, Storage, open_storage
from transcode.validate.report import ERROR, LEVELS, PROFILES, Finding, ValidationReport

__all__ = ["LEVELS", "PROFILES", "Finding", "ValidateOptions", "ValidationReport", "validate"]


@dataclass
class ValidateOptions:
    """What to check and how."""

    level: str = "structure"
    profile: str = "tessera"
    source: str | None = None
    sample: int | None = None
    seed: int = 0
    workers: int = 1
    progress: bool = False
    max_mismatches: int = 1000
    store_options: S3Options = field(default_factory=S3Options)
    source_options: S3Options = field(default_factory=S3Options)


def _recorded_source(storage: Storage) -> str | None:
    from transcode.engine.storestate import read_settings

    try:
        return (read_settings(storage) or {}).get("source")
    except StoreError:  # a sidecar that is not JSON records no usable source; a storage failure is raised
        return None


def validate(store: str | Storage, options: ValidateOptions | None = None) -> ValidationReport:
    """Validate a store (a URL, a path, or an open Storage) up to `options.level`."""
    from transcode.storage.retries import retry_count
    from transcode.validate.content import check_content
    from transcode.validate.fidelity import check_fidelity
    from transcode.validate.metadata import check_metadata
    from transcode.validate.nodes import load_view
    from transcode.validate.shardio import StoreAccess
    from transcode.validate.structure import check_structure

    retried_before = retry_count()
    o = options or ValidateOptions()
    if o.level not in LEVELS:
        raise UsageError(f"--level {o.level}", f"unknown level; choose one of {', '.join(LEVELS)}")
    if o.profile not in PROFILES:
        raise UsageError(f"--profile {o.profile}", f"unknown profile; choose one of {', '.join(PROFILES)}")
    if o.sample is not None and o.sample < 1:
        raise UsageError(f"--sample {o.sample}", "the sample must be at least 1 chunk")
    storage = open_storage(store, o.store_options) if not isinstance(store, Storage) else store
    depth = LEVELS.index(o.level)
    source = archive = None
    if depth >= LEVELS.index("fidelity"):
        source = o.source or _recorded_source(storage)
        if not source:
            raise UsageError(storage.describe(), "--level fidelity needs --source ARCHIVE (the store records none)")
        archive = _open_source(source, o.source_options)
    report = ValidationReport(store=storage.describe(), level=o.level, profile=o.profile,
                              options={"sample": o.sample, "seed": o.seed, "workers": o.workers, "source": source,
                                       "max_mismatches": o.max_mismatches})
    url = store if isinstance(store, str) else storage.url
    store_options = getattr(storage, "options", None) or o.store_options  # worker processes reopen the store
    access = StoreAccess(str(url), store_options, source, o.source_options, storage=storage,
                         source=archive.storage if archive is not None else None)
    t0 = time.perf_counter()
    view = load_view(storage, workers=o.workers, progress=o.progress)  # StoreError when there is no store (exit 2)

    def stage(level: str, fn) -> object:
        start = time.perf_counter()
        try:
            return fn()
        except TranscodeError as e:
            if isinstance(e, (UsageError, TransientStorageError)):
                raise  # a bad option, or storage failing in a way that may pass: no verdict on the store
            report.add(Finding(ERROR, level, "unreadable", "", f"{level} checks stopped: {e}"))
        except Exception as e:  # noqa: BLE001 - never crash on a corrupted store: the failure is a finding
            report.add(Finding(ERROR, level, "internal", "", f"{level} checks stopped by an unexpected "
                               f"{type(e).__name__}: {e}"))
        finally:
            report.seconds[level] = time.perf_counter() - start + (start - t0 if level == "metadata" else 0)
            report.levels_run.append(level)
        return None

    coords = stage("metadata", lambda: check_metadata(view, o.profile, report)) or {}
    view.time_values = {g: [int(v) for v in c["time"]] for g, c in coords.items() if "time" in c}
    report.counters.update(view.counters)
    structure = None
    if depth >= 1:
        structure = stage("structure", lambda: check_structure(view, o.profile, report, workers=o.workers,
                                                               progress=o.progress, time_values=view.time_values))
    if depth >= 2 and structure is not None:
        stage("content", lambda: check_content(view, structure, o.profile, report, access, sample=o.sample,
                                               seed=o.seed, workers=o.workers, progress=o.progress))
    if depth >= 3 and structure is not None:
        stage("fidelity", lambda: check_fidelity(view, structure, report, access, archive, sample=o.sample, seed=o.seed,
                                                 workers=o.workers, progress=o.progress,
                                                 max_mismatches=o.max_mismatches))
    retried = retry_count() - retried_before  # this process's: worker processes (--workers > 1) count their own
    report.retries, report.transient = retried.retries, retried.transient
    return report


def _open_source(source: str, options: S3Options):
    """The fidelity source, listed; fails fast (exit 2) when it cannot be opened as a legacy archive."""
    from transcode.legacy.archive import open_archive

    try:
        archive = open_archive(source, options)
    except TransientStorageError:
        raise
    except (ArchiveError, StorageError) as e:
        raise UsageError(source, f"source archive unusable for --level fidelity: {e.reason}") from e
    if next(archive.iter_tiles([]), None) is None:  # the first tile is enough: the listing is streamed
        raise UsageError(source, "source archive has no tiles: nothing to compare the store with")
    return archive
