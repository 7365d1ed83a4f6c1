"""`tessera-transcode convert SOURCE STORE` and `tessera-transcode extend STORE --years ...`."""

from __future__ import annotations

import argparse

from transcode.cli import common
from transcode.format.arrays import MAX_STRETCH_SAMPLE_SIZE, STRETCH_SAMPLE_SIZE


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Both verbs' flags."""
    cv = common.add_verb(
        sub, "convert", "transcode a legacy archive into a sharded Zarr v3 store",
        "Write the store of docs/format.md, 'Layout' (local directory or s3://bucket/prefix): every shard "
        "whole, once, from all tiles that overlap it, visible only when complete. Re-running resumes (finished shards "
        "are not redone) and picks up tiles added to the source. The source is never modified.",
        "converted", "tiles skipped or shards failed",
    )
    common.add_source_argument(cv)
    common.add_store_argument(cv)
    _add_options(cv)
    cv.set_defaults(func=command)

    ex = common.add_verb(
        sub, "extend", "append years to a store's time axis and convert them",
        "Append later years to the time axis (a metadata resize; existing shards are untouched) and "
        "convert those years from the source recorded in the store (or --source). Prepending is refused.",
        "converted", "tiles skipped or shards failed",
    )
    common.add_store_argument(ex)
    ex.add_argument("--source", metavar="SOURCE", help="archive root (default: the one recorded in the store)")
    _add_options(ex, years_required=True)
    ex.set_defaults(func=command)


def _add_options(p: argparse.ArgumentParser, years_required: bool = False) -> None:
    common.add_selection_options(p, years_required)
    common.add_layout_options(p)
    p.add_argument("--codec", action="append", metavar="[ARRAY=]SPEC",
                   help="codec for embeddings and/or scales, e.g. embeddings=blosc:zstd:3:bit, scales=zstd:5 "
                   "(repeatable; default: an existing store's, else blosc:zstd:3 for both; see `codecs`)")
    p.add_argument("--depths", type=common.parse_int_list, metavar="LIST",
                   help="nested depths, e.g. 4,16: an embeddings_d{D} array with the first D bands beside "
                   "embeddings (docs/format.md, 'Nested depths'); datasets of version 2 and later only (default: an "
                   "existing store's, else none)")
    p.add_argument("--stretch-sample-size", type=common.positive_int, metavar="K",
                   help="sampled pixels per zone and year in the stretch statistics (docs/format.md, 'Stretch "
                   f"statistics'; at most {MAX_STRETCH_SAMPLE_SIZE}; default: an existing store's, else "
                   f"{STRETCH_SAMPLE_SIZE})")
    p.add_argument("--no-stretch-stats", dest="stretch_stats", action="store_false", default=None,
                   help="do not collect stretch statistics: their arrays stay at count 0 and an empty coverage "
                   "mask, 'not collected' (default: an existing store's setting, else collect them)")
    common.add_workers(p, "the shards")
    p.add_argument("--threads-per-worker", type=common.positive_int, metavar="T",
                   help="threads encoding each shard in a worker (or with --scheduler, in each Dask task); the store's "
                   "bytes are the same for any T (default: every core the worker may use, so --workers N keeps the "
                   "machine's cores busy also when fewer than N shards are left)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask distributed cluster, e.g. tcp://host:8786 (default: local processes)")
    p.add_argument("--part-size", type=common.positive_int, metavar="MiB",
                   help="S3 multipart part size in MiB, fixed and recorded (default: an existing store's, else 64)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first bad tile instead of skipping it (default: off)")
    common.add_inventory_option(p)
    common.add_dataset_option(p)
    common.add_output_options(p)
    common.add_s3_options(p, "source", "the source")
    common.add_s3_options(p, "store", "the store", writes=True)


def command(args: argparse.Namespace) -> int:
    """Run convert or extend and print its report."""
    import transcode

    options = dict(zones=args.zones, shard_size=args.shard_size, chunk_size=args.chunk_size, codecs=args.codec,
                   workers=args.workers, threads_per_worker=args.threads_per_worker, scheduler=args.scheduler, part_size=args.part_size, strict=args.strict,
                   inventory=args.inventory, progress=common.progress(args), dataset_version=args.dataset_version,
                   depths=args.depths, stretch_sample_size=args.stretch_sample_size, stretch_stats=args.stretch_stats,
                   **common.s3_keywords(args, "source"),
                   **common.s3_keywords(args, "store", writes=True))
    if args.command == "convert":
        report = transcode.convert(args.source, args.store, years=args.years, **options)
    else:
        report = transcode.extend(args.store, args.years, source=args.source, **options)
    return common.finish(args, report, print_convert)


def print_convert(report) -> None:
    """The readable conversion report."""
    if report.nothing_to_do:
        print(f"store      {report.store} is complete and current: nothing to do")
    else:
        rate = report.input_bytes / report.seconds / 1e6 if report.seconds else 0
        print(f"store      {report.store}  (years {report.time[0]}..{report.time[-1]})")
        print(f"shards     {report.shards_written} written, {report.shards_already_done} already done, "
              f"{report.shards_planned} planned; {report.metadata_written} metadata objects written")
        print(f"data       {common.mb(report.input_bytes)} read, {common.mb(report.output_bytes)} written, "
              f"{report.seconds:.1f} s, {rate:.1f} MB/s ({report.executor}, {report.threads_per_worker} threads per worker)")
        print(f"manifest   {report.manifest}")
    for p in report.skipped_tiles + report.clipped_tiles:
        print(common.problem_line(p))
    for f in report.failed:
        print(f"  error   failed-shard   {f['shard']}: {f['error']}")
    if report.years_outside_time_axis:
        print(f"note       the source also has years {report.years_outside_time_axis} outside the store's time axis "
              f"{report.time[0]}..{report.time[-1]}: add later years with `tessera-transcode extend`")
