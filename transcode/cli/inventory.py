"""`tessera-transcode inventory SOURCE`."""

from __future__ import annotations

import argparse

from transcode.cli import common

DEFAULT_OUT = "inventory.parquet"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The verb's flags."""
    p = common.add_verb(
        sub, "inventory", "list a legacy archive and report every problem in it",
        "List a legacy archive (local path or s3://bucket/prefix) without reading tile bodies: "
        "tiles per year and UTM zone, bytes, landmask coverage, and every problem with its file and reason. "
        "Writes the inventory as Parquet. Nothing in the source is written.",
        "clean", "problems found",
    )
    common.add_source_argument(p)
    p.add_argument("--years", type=common.parse_years, metavar="LIST",
                   help="only these years, e.g. 2017-2020,2024 (default: every year)")
    p.add_argument("--dataset", help="dataset directory under npy/ (object-store layout; default: the only one)")
    p.add_argument("--landmask-version", metavar="VERSION",
                   help="version directory under landmasks/ (object-store layout; default: the latest)")
    common.add_dataset_option(p)
    p.add_argument("--verify-hashes", action="store_true",
                   help="hash every file and compare with the registries (default: off, sizes only)")
    p.add_argument("--concurrency", type=common.positive_int, metavar="N",
                   help="reads (and hashes) in flight at once, in threads (default 8; 32 on S3 without "
                        "--verify-hashes: there each header read waits a round trip)")
    p.add_argument("--out", "-o", default=DEFAULT_OUT, metavar="PATH",
                   help=f"where to write the Parquet inventory (default ./{DEFAULT_OUT}); '-' for none")
    common.add_output_options(p)
    common.add_s3_options(p)
    common.deprecated_flag(p, "--workers", "--concurrency", "concurrency", type=common.positive_int, metavar="N",
                    change="it meant parallel reads (threads); --workers means worker processes in convert, "
                           "extend and validate")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the verb and print its report."""
    import transcode

    report = transcode.inventory(
        args.source, years=args.years, dataset=args.dataset, landmask_version=args.landmask_version,
        verify_hashes=args.verify_hashes, concurrency=args.concurrency, out=None if args.out == "-" else args.out,
        dataset_version=args.dataset_version,
        progress=common.progress(args), **common.s3_keywords(args))
    return common.finish(args, report, print_inventory)


def print_inventory(report) -> None:
    """The readable inventory report."""
    s = report.summary
    print(f"source     {s['source']}  ({s['layout']} layout)")
    print(f"dataset    {common.dataset_line(report.inventory.dataset)}")
    for year, v in s["per_year"].items():
        print(f"year {year}  {v['tiles']} tiles ({v['usable']} usable), {common.mb(v['bytes'])}")
    for zone, years in s["per_zone"].items():
        print(f"{zone:10s} " + ", ".join(f"{y}: {n}" for y, n in years.items()))
    lm = s["landmasks"]
    cov = "n/a" if lm["coverage"] is None else f"{lm['coverage']:.0%}"
    print(f"landmasks  {lm['files']} files, {common.mb(lm['bytes'])}; cover {cov} of {s['tile_cells']} tile cells")
    print(f"registries {', '.join(s['registries']) or 'none'}"
          + ("  (hashes verified)" if s["verified_hashes"] else ""))
    print(f"total      {s['tiles']} tiles, {common.mb(s['bytes'])}")
    if report.problems:
        print(f"problems   {len(report.problems)}")
        for p in report.problems:
            print(common.problem_line(p, 20))
    else:
        print("problems   none")
    if report.path is not None:
        print(f"inventory  written to {report.path}")
