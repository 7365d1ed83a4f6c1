"""The verbs that read a legacy archive and write nothing to it: `inventory`, `plan`, `bench_codecs`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from transcode.api.keywords import inside, layout, no_other_keywords, positive, renamed, s3_options, sorted_list
from transcode.errors import UsageError
from transcode.legacy.inventory import Inventory
from transcode.legacy.problems import Problem
from transcode.storage.base import S3Options
from transcode.storage.retries import RetryCount, retry_count


@dataclass
class InventoryReport:
    """What `inventory` found: the inventory itself (tiles, landmasks, problems) and where it was written."""

    inventory: Inventory
    path: str | None = None
    retried: RetryCount = field(default_factory=RetryCount)  # storage retries while listing and reading

    @property
    def ok(self) -> bool:
        """No errors or warnings in the archive."""
        return self.inventory.clean

    @property
    def problems(self) -> list[Problem]:
        """Every problem, with its file and reason."""
        return sorted(self.inventory.problems)

    @property
    def summary(self) -> dict:
        """Counts per year and zone, bytes, landmask coverage, registries."""
        return self.inventory.summary()

    def to_json(self) -> dict:
        """The `inventory --json` document (schemas/inventory.schema.json)."""
        return {**self.inventory.to_json(), "inventory_path": self.path, **self.retried.to_dict()}


def inventory(source: str | os.PathLike[str], *, years: Iterable[int] | None = None, dataset: str | None = None,
              landmask_version: str | None = None, verify_hashes: bool = False, concurrency: int | None = None,
              out: str | os.PathLike[str] | None = None, dataset_version: str | None = None, progress: bool = False,
              **s3: Any) -> InventoryReport:
    """List a legacy archive (a directory or s3://bucket/prefix) without reading tile bodies, check every header,
    size, pair, footprint and registry, name its dataset (`dataset_version`, e.g. "1.1" or "v2-vultr", overrides
    what the archive says), and (with `out`) write the inventory as Parquet. S3 keywords: `endpoint_url`,
    `region`, `aws_profile`, `anonymous`, `path_style`, `ca_bundle`, `requester_pays`."""
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory, write_inventory

    concurrency = renamed(s3, "workers", "concurrency", concurrency, None, "inventory",
                          "it set the parallel reads (threads); workers= means worker processes elsewhere")
    options = s3_options(s3, "inventory")
    no_other_keywords(s3, "inventory")
    if concurrency is not None:
        positive(concurrency, "--concurrency")
    src = os.fspath(source)
    if out is not None and inside(out, src):
        raise UsageError(os.fspath(out), "the inventory would be written inside the source archive; choose --out "
                                         "elsewhere")
    retried_before = retry_count()
    archive = open_archive(src, options, dataset=dataset, landmask_version=landmask_version,
                           years=sorted(years) if years is not None else None, dataset_version=dataset_version)
    inv = build_inventory(archive, verify_hashes=verify_hashes, workers=concurrency, progress=progress)
    if out is not None:
        write_inventory(inv, out)
    return InventoryReport(inv, os.fspath(out) if out is not None else None, retry_count() - retried_before)


def source_inventory(source: str, given: Any, options: S3Options, progress: bool,
                     dataset_version: str | None = None) -> Inventory:
    """The inventory a verb works from: one given as an object, a saved Parquet inventory, or one made now;
    `dataset_version` overrides the dataset it names."""
    from transcode.engine.convert import ConvertOptions, load_inventory
    from transcode.legacy.dataset import resolve

    if isinstance(given, (InventoryReport, Inventory)):
        inv = given.inventory if isinstance(given, InventoryReport) else given
        if dataset_version:
            inv = replace(inv, dataset=resolve(list(inv.dataset.claims), dataset_version))
        return inv
    path = os.fspath(given) if given is not None else None
    return load_inventory(source, ConvertOptions(inventory=path, source_options=options, progress=progress,
                                                 dataset_version=dataset_version))


@dataclass
class PlanReport:
    """What a conversion would write: the plan (zones, shards and the tile windows that fill them)."""

    plan: Any  # transcode.engine.plan.Plan
    units: bool = False  # list every work unit in the JSON document

    @property
    def ok(self) -> bool:
        """Every usable tile finds its place: none skipped or clipped."""
        return not self.plan.skipped and not self.plan.clipped

    def to_json(self) -> dict:
        """The `plan --json` document (every work unit with `units`) and the source's dataset."""
        return {**self.plan.summary(units=self.units), "dataset": self.plan.inventory.dataset.to_dict()}


def plan(source: str | os.PathLike[str], *, years: Iterable[int] | None = None, zones: Iterable[int] | None = None,
         shard_size: int | Sequence[int] | None = None, chunk_size: int | Sequence[int] | None = None,
         inventory: Any = None, dataset_version: str | None = None, units: bool = False, progress: bool = False,
         **s3: Any) -> PlanReport:
    """Place every usable tile in its UTM zone grid and group the tile windows by shard; nothing is written.
    `inventory`: a saved Parquet inventory or an InventoryReport, instead of listing the source; `units`: list
    every work unit in the report's JSON. S3 keywords as for `inventory`."""
    from transcode.engine.plan import make_plan

    options = s3_options(s3, "plan")
    no_other_keywords(s3, "plan")
    shard, chunk = layout(shard_size, chunk_size)
    inv = source_inventory(os.fspath(source), inventory, options, progress, dataset_version)
    return PlanReport(make_plan(inv, years=sorted_list(years), zones=sorted_list(zones), shard=shard, chunk=chunk),
                      units)


@dataclass
class BenchReport:
    """Codec options measured on sampled tiles and projected to the whole archive, with a recommendation."""

    source: str
    sample: Any  # transcode.codecs.bench.Sample
    results: list = field(default_factory=list)  # transcode.codecs.bench.CodecResult, one per option
    recommendation: Any = None  # the recommended CodecResult, or None

    @property
    def ok(self) -> bool:
        """Every option decoded back to the exact bytes."""
        return all(r.bit_exact for r in self.results)

    def to_json(self) -> dict:
        """The `bench-codecs --json` document."""
        from transcode.format.arrays import EMBEDDINGS

        s = self.sample
        return {"source": self.source,
                "sample": {"tiles": s.tiles, "input_bytes": s.input_bytes, "build_seconds": s.build_seconds,
                           "chunks": s.chunks_total[EMBEDDINGS.name],
                           "chunks_measured": len(s.chunks[EMBEDDINGS.name])},
                "archive": {"tile_years": s.archive_tiles, "input_bytes": s.archive_input_bytes},
                "results": [r.to_dict() for r in self.results],
                "recommendation": self.recommendation.option if self.recommendation else None}


def bench_codecs(source: str | os.PathLike[str], *, sample: int = 4, codecs: Iterable[str] | None = None,
                 budget: int = 24, years: Iterable[int] | None = None, shard_size: int | Sequence[int] | None = None,
                 chunk_size: int | Sequence[int] | None = None, inventory: Any = None, progress: bool = False,
                 **s3: Any) -> BenchReport:
    """Cut `sample` tiles into inner chunks exactly as convert does and time every codec option (`codecs`, default
    the standard list) on one core, `budget` MiB of raw chunks each. S3 keywords as for `inventory`."""
    from tqdm import tqdm

    from transcode.codecs import bench
    from transcode.codecs.spec import parse_codec_spec

    options = s3_options(s3, "bench_codecs")
    no_other_keywords(s3, "bench_codecs")
    positive(sample, "--sample")
    positive(budget, "--budget")
    shard, chunk = layout(shard_size, chunk_size)
    specs = [parse_codec_spec(c).text for c in codecs] if codecs else list(bench.BENCH_OPTIONS)
    src = os.fspath(source)
    inv = source_inventory(src, inventory, options, progress)
    bar = tqdm(desc="bench-codecs", unit="step", disable=not progress)
    tick: Callable[[], None] = lambda: bar.update(1)
    try:
        taken = bench.take_sample(src, inv, sample, shard=shard, chunk=chunk, years=sorted_list(years),
                                  budget=budget * 1024 * 1024, source_options=options, tick=tick)
        bar.total = bar.n + len(specs)
        results = bench.run(taken, specs, tick=tick)
    finally:
        bar.close()
    return BenchReport(src, taken, results, bench.recommend(results))
