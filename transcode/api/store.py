"""The verbs that write or check a Zarr store: `convert`, `extend`, `validate`. Each has two sides, so its S3
keywords carry the side: `source_endpoint_url=`, `store_endpoint_url=`, ..., and `store_acl=` where it writes."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from transcode.api.archive import source_inventory
from transcode.api.keywords import (
    DEFAULT_WORKERS,
    codec_list,
    inside,
    int_list,
    layout,
    no_other_keywords,
    part_size_bytes,
    positive,
    renamed,
    s3_options,
    sorted_list,
)
from transcode.engine.convert import ConvertOptions, ConvertReport
from transcode.errors import CodecPortabilityWarning, UsageError
from transcode.format.arrays import MAX_STRETCH_SAMPLE_SIZE
from transcode.validate.report import LEVELS, PROFILES, ValidationReport

Codecs = str | Mapping[str, str] | Iterable[str] | None


def _options(verb: str, s3: dict[str, Any], *, years: Iterable[int] | None, zones: Iterable[int] | None,
             shard_size: Any, chunk_size: Any, codecs: Codecs, workers: int, threads_per_worker: int | None,
             scheduler: Any, part_size: int | None,
             strict: bool, progress: bool, dataset_version: str | None, depths: Iterable[int] | None,
             stretch_sample_size: int | None, stretch_stats: bool | None) -> ConvertOptions:
    """The engine's options from the API keywords (the same for convert and extend)."""
    from transcode.codecs.catalog import portability_warning
    from transcode.codecs.spec import parse_codec_options

    source_options = s3_options(s3, verb, "source")
    store_options = s3_options(s3, verb, "store", writes=True)
    no_other_keywords(s3, verb)
    positive(workers, "--workers")
    if threads_per_worker is not None:
        positive(threads_per_worker, "--threads-per-worker")
    shard, chunk = layout(shard_size, chunk_size, defaults=False)
    specs = codec_list(codecs)
    parsed = parse_codec_options(specs) if specs else None
    warning = portability_warning(parsed) if parsed else None
    if warning:
        warnings.warn(warning, CodecPortabilityWarning, stacklevel=3)
    if stretch_sample_size is not None:
        positive(stretch_sample_size, "--stretch-sample-size")
        if stretch_sample_size > MAX_STRETCH_SAMPLE_SIZE:
            raise UsageError("--stretch-sample-size", f"wants at most {MAX_STRETCH_SAMPLE_SIZE:,} sampled pixels per "
                             f"zone and year (each year's sample is one chunk read whole), not {stretch_sample_size:,}")
    if stretch_stats is not None and not isinstance(stretch_stats, bool):
        raise UsageError("--no-stretch-stats", f"stretch_stats wants True or False, not {stretch_stats!r}")
    return ConvertOptions(
        years=sorted_list(years), zones=sorted_list(zones), workers=workers, threads_per_worker=threads_per_worker,
        scheduler=scheduler, shard=shard,
        chunk=chunk, codecs=parsed, part_size=part_size_bytes(part_size), strict=strict, progress=progress,
        source_options=source_options, store_options=store_options, dataset_version=dataset_version,
        depths=int_list(depths, "--depths"), stretch_sample_size=stretch_sample_size, stretch_stats=stretch_stats)


def convert(source: str | os.PathLike[str], store: str | os.PathLike[str], *, years: Iterable[int] | None = None,
            zones: Iterable[int] | None = None, shard_size: int | Sequence[int] | None = None,
            chunk_size: int | Sequence[int] | None = None, codecs: Codecs = None, workers: int = DEFAULT_WORKERS,
            threads_per_worker: int | None = None, scheduler: Any = None, part_size: int | None = None,
            strict: bool = False, inventory: Any = None,
            dataset_version: str | None = None, depths: Iterable[int] | None = None,
            stretch_sample_size: int | None = None, stretch_stats: bool | None = None, progress: bool = False,
            **s3: Any) -> ConvertReport:
    """Transcode a legacy archive into a sharded Zarr v3 store (a directory or s3://bucket/prefix); re-running
    resumes and picks up added tiles. `codecs`: one spec for both arrays, {"embeddings": spec, "scales": spec},
    or `--codec` items; `part_size` in MiB; `inventory`: a saved Parquet inventory or an InventoryReport;
    `dataset_version` overrides the source's dataset (recorded as overridden). A store holds one dataset.
    `depths`: nested depths (v2 datasets and later); `stretch_stats=False`: no stretch statistics,
    `stretch_sample_size`: their sample's K (None: an existing store's settings, else depths none, statistics
    collected with K = 20000). `threads_per_worker`: threads encoding each shard (None: every core a worker may use,
    so that `workers` processes keep the cores busy whatever the number of shards; the bytes are the same)."""
    options = _options("convert", s3, years=years, zones=zones, shard_size=shard_size, chunk_size=chunk_size,
                       codecs=codecs, workers=workers, threads_per_worker=threads_per_worker,
                       scheduler=scheduler, part_size=part_size, strict=strict,
                       progress=progress, dataset_version=dataset_version, depths=depths,
                       stretch_sample_size=stretch_sample_size, stretch_stats=stretch_stats)
    return _run(os.fspath(source), os.fspath(store), options, inventory)


def extend(store: str | os.PathLike[str], years: Iterable[int], *, source: str | os.PathLike[str] | None = None,
           zones: Iterable[int] | None = None, shard_size: int | Sequence[int] | None = None,
           chunk_size: int | Sequence[int] | None = None, codecs: Codecs = None, workers: int = DEFAULT_WORKERS,
           threads_per_worker: int | None = None, scheduler: Any = None, part_size: int | None = None,
           strict: bool = False, inventory: Any = None,
           dataset_version: str | None = None, depths: Iterable[int] | None = None,
           stretch_sample_size: int | None = None, stretch_stats: bool | None = None, progress: bool = False,
           **s3: Any) -> ConvertReport:
    """Append later years to a store's time axis and convert them from its recorded source (or `source`);
    prepending is refused. Keywords as for `convert`."""
    options = _options("extend", s3, years=years, zones=zones, shard_size=shard_size, chunk_size=chunk_size,
                       codecs=codecs, workers=workers, threads_per_worker=threads_per_worker,
                       scheduler=scheduler, part_size=part_size, strict=strict,
                       progress=progress, dataset_version=dataset_version, depths=depths,
                       stretch_sample_size=stretch_sample_size, stretch_stats=stretch_stats)
    return _run(os.fspath(source) if source is not None else None, os.fspath(store), options, inventory,
                years=sorted_list(years))


def _run(source: str | None, store: str, options: ConvertOptions, inventory: Any,
         years: list[int] | None = None) -> ConvertReport:
    """convert (years None) or extend (the years to append) with the inventory given, if any."""
    from transcode.engine import convert as engine

    if source is not None and inside(store, source):
        raise UsageError(store, "the store would be written inside the source archive; choose another place")
    inv = None
    if inventory is not None:
        inv = source_inventory(source or "", inventory, options.source_options, options.progress,
                               options.dataset_version)
    if years is None:
        return engine.convert(source, store, options, inventory=inv)
    return engine.extend(store, years, options, source=source, inventory=inv)


def validate(store: str | os.PathLike[str], *, level: str = "structure", rules: str = "tessera",
             source: str | os.PathLike[str] | None = None, sample: int | None = None, seed: int = 0,
             workers: int = DEFAULT_WORKERS, max_mismatches: int = 1000, progress: bool = False,
             **s3: Any) -> ValidationReport:
    """Check a store up to `level` (metadata, structure, content, fidelity; each includes the cheaper ones) by
    `rules` (tessera, geoemb, interop); fidelity compares with `source` (default: the one the store records)."""
    from transcode.validate import ValidateOptions
    from transcode.validate import validate as check

    rules = renamed(s3, "profile", "rules", rules, "tessera", "validate",
                    "it named the validation rules; the AWS profile is store_aws_profile= / source_aws_profile=")
    store_options = s3_options(s3, "validate", "store")
    source_options = s3_options(s3, "validate", "source")
    no_other_keywords(s3, "validate")
    if level not in LEVELS:
        raise UsageError(f"--level {level}", f"unknown level; choose one of {', '.join(LEVELS)}")
    if rules not in PROFILES:
        raise UsageError(f"--rules {rules}", f"unknown rules; choose one of {', '.join(PROFILES)}")
    positive(workers, "--workers")
    positive(max_mismatches, "--max-mismatches")
    if sample is not None:
        positive(sample, "--sample")
    return check(os.fspath(store), ValidateOptions(
        level=level, profile=rules, source=os.fspath(source) if source is not None else None, sample=sample,
        seed=seed, workers=workers, progress=progress, max_mismatches=max_mismatches, store_options=store_options,
        source_options=source_options))
