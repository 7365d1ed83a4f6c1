"""The `tessera-transcode` command line: parse arguments, call the API, print, exit with a code scripts can trust."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from transcode import __version__
from transcode.errors import TranscodeError, UsageError
from transcode.storage import S3Options

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: exit 2 with one clear line
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_years(text: str) -> list[int]:
    """'2017-2020,2024' -> [2017, 2018, 2019, 2020, 2024]."""
    years: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                if int(a) > int(b):
                    raise ValueError(part)
                years.update(range(int(a), int(b) + 1))
            elif part:
                years.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a year list like 2017-2020,2024: {text!r}") from None
    if not years:
        raise argparse.ArgumentTypeError("empty year list")
    return sorted(years)


def add_s3_options(p: argparse.ArgumentParser, prefix: str = "", what: str = "source") -> None:
    """Options that say how to reach an s3:// location (credentials come from the usual AWS sources)."""
    g = p.add_argument_group(f"S3 options for the {what}")
    g.add_argument(f"--{prefix}endpoint-url", metavar="URL", help="S3 endpoint (Ceph RGW, MinIO, ...); default AWS")
    g.add_argument(f"--{prefix}region", metavar="NAME", help="S3 region")
    g.add_argument(f"--{prefix}profile", metavar="NAME", help="AWS profile for credentials")
    g.add_argument(f"--{prefix}anonymous", action="store_true", help="unsigned requests (public buckets)")
    g.add_argument(f"--{prefix}path-style", action="store_true", help="path-style addressing (most non-AWS servers)")


def s3_options(args: argparse.Namespace, prefix: str = "") -> S3Options:
    """The S3Options the user gave with `add_s3_options`."""
    p = prefix.replace("-", "_")
    return S3Options(
        endpoint_url=getattr(args, f"{p}endpoint_url"),
        region=getattr(args, f"{p}region"),
        profile=getattr(args, f"{p}profile"),
        anonymous=getattr(args, f"{p}anonymous"),
        path_style=getattr(args, f"{p}path_style"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = _Parser(
        prog="tessera-transcode",
        description="Inventory, transcode, validate and verify TESSERA embedding archives and Zarr v3 stores.",
        epilog="Exit codes: 0 clean, 1 problems found, 2 usage or unusable input, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    inv = sub.add_parser(
        "inventory",
        help="list a legacy archive and report every problem in it",
        description="List a legacy archive (local path or s3://bucket/prefix) without reading tile bodies: "
        "tiles per year and UTM zone, bytes, landmask coverage, and every problem with its file and reason. "
        "Writes the inventory as Parquet. Nothing in the source is written.",
    )
    inv.add_argument("source", metavar="SOURCE", help="archive root: a directory or s3://bucket/prefix")
    inv.add_argument("--years", type=parse_years, metavar="LIST", help="only these years, e.g. 2017-2020,2024")
    inv.add_argument("--dataset", help="dataset directory under npy/ (object-store layout)")
    inv.add_argument("--landmask-version", help="version directory under landmasks/ (object-store layout)")
    inv.add_argument("--verify-hashes", action="store_true", help="hash every file and compare with the registries")
    inv.add_argument("--workers", type=_positive_int, default=8, metavar="N", help="parallel reads (default 8)")
    inv.add_argument("--out", "-o", default="inventory.parquet", metavar="PATH",
                     help="where to write the Parquet inventory (default ./inventory.parquet); '-' for none")
    _add_output_options(inv)
    add_s3_options(inv)
    inv.set_defaults(func=cmd_inventory)

    pl = sub.add_parser(
        "plan",
        help="show zones, shards, tiles, input bytes and work units of a conversion",
        description="Place every usable tile of a legacy archive in its UTM zone grid (FORMATS.md §1.4) and "
        "group the tile windows by shard. Nothing is written.",
    )
    pl.add_argument("source", metavar="SOURCE", help="archive root: a directory or s3://bucket/prefix")
    _add_selection_options(pl)
    _add_layout_options(pl)
    pl.add_argument("--inventory", metavar="PATH", help="reuse a Parquet inventory instead of listing SOURCE")
    pl.add_argument("--units", action="store_true", help="list every work unit (shard and its tiles)")
    _add_output_options(pl)
    add_s3_options(pl)
    pl.set_defaults(func=cmd_plan)

    cv = sub.add_parser(
        "convert",
        help="transcode a legacy archive into a sharded Zarr v3 store",
        description="Write the store of FORMATS.md §2 (local directory or s3://bucket/prefix): every shard whole, "
        "once, from all tiles that overlap it, visible only when complete. Re-running resumes (finished shards "
        "are not redone) and picks up tiles added to the source. The source is never modified.",
    )
    cv.add_argument("source", metavar="SOURCE", help="archive root: a directory or s3://bucket/prefix")
    cv.add_argument("store", metavar="STORE", help="store root: a directory or s3://bucket/prefix")
    _add_convert_options(cv)
    cv.set_defaults(func=cmd_convert)

    ex = sub.add_parser(
        "extend",
        help="append years to a store's time axis and convert them",
        description="Append later years to the time axis (a metadata resize; existing shards are untouched) and "
        "convert those years from the source recorded in the store (or --source). Prepending is refused.",
    )
    ex.add_argument("store", metavar="STORE", help="store root: a directory or s3://bucket/prefix")
    ex.add_argument("--source", metavar="SOURCE", help="archive root (default: the one recorded in the store)")
    _add_convert_options(ex, years_required=True)
    ex.set_defaults(func=cmd_extend)

    demo = sub.add_parser(
        "demo",
        help="generate a small synthetic archive and run the toolkit on it",
        description="Generate a small synthetic legacy archive (3 tiles: north and south of the equator, "
        "across the UTM 30/31 boundary) in DIR/archive, inventory it into DIR/inventory.parquet, convert it "
        "into the Zarr v3 store DIR/store.zarr, and print where everything went.",
    )
    demo.add_argument("dir", nargs="?", default="tessera-demo", metavar="DIR", help="output directory (default ./tessera-demo)")
    demo.add_argument("--preset", default="tiny", choices=["tiny", "small"], help="archive size (default tiny)")
    _add_output_options(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {n}")
    return n


def parse_zones(text: str) -> list[int]:
    """'30,31' or 'utm30,utm31' -> [30, 31]."""
    try:
        zones = sorted({int(z.strip().lower().removeprefix("utm")) for z in text.split(",") if z.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a zone list like 30,31: {text!r}") from None
    if not zones or any(not 1 <= z <= 60 for z in zones):
        raise argparse.ArgumentTypeError(f"UTM zones are 1..60: {text!r}")
    return zones


def parse_size2(text: str) -> tuple[int, int]:
    """'4096' or '4096x2048' -> (4096, 4096) / (4096, 2048)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size like 4096 or 4096x4096: {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"not a size like 4096 or 4096x4096: {text!r}")
    return parts[0], parts[1]


def _add_selection_options(p: argparse.ArgumentParser, years_required: bool = False) -> None:
    p.add_argument("--years", type=parse_years, metavar="LIST", required=years_required,
                   help="only these years, e.g. 2017-2020,2024")
    p.add_argument("--zones", type=parse_zones, metavar="LIST", help="only these UTM zones, e.g. 30,31")


def _add_layout_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard-size", type=parse_size2, metavar="HxW",
                   help="shard size in pixels (default: an existing store's, else 4096)")
    p.add_argument("--chunk-size", type=parse_size2, metavar="HxW",
                   help="inner chunk size in pixels (default: an existing store's, else 32)")


def _add_convert_options(p: argparse.ArgumentParser, years_required: bool = False) -> None:
    _add_selection_options(p, years_required)
    _add_layout_options(p)
    p.add_argument("--codec", action="append", metavar="[ARRAY=]SPEC",
                   help="codec for embeddings and/or scales, e.g. embeddings=blosc:zstd:3:bit, scales=zstd:5 "
                   "(default: an existing store's, else blosc:zstd:3 for both; repeatable)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="local worker processes (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask distributed cluster (tcp://host:8786)")
    p.add_argument("--part-size", type=_positive_int, metavar="MiB",
                   help="S3 multipart part size in MiB, fixed and recorded (default: an existing store's, else 64)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad tile instead of skipping it")
    p.add_argument("--inventory", metavar="PATH", help="reuse a Parquet inventory instead of listing SOURCE")
    _add_output_options(p)
    add_s3_options(p, "source-", "source")
    add_s3_options(p, "store-", "store")


def _convert_options(args: argparse.Namespace):
    from transcode.codecs import parse_codec_options
    from transcode.convert import ConvertOptions

    return ConvertOptions(
        years=args.years, zones=args.zones, workers=args.workers, scheduler=args.scheduler,
        shard=args.shard_size, chunk=args.chunk_size, codecs=parse_codec_options(args.codec) if args.codec else None,
        part_size=args.part_size * 1024 * 1024 if args.part_size else None, strict=args.strict, progress=_progress(args),
        inventory=args.inventory, source_options=s3_options(args, "source-"), store_options=s3_options(args, "store-"),
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of a report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _inside(path: Path, root: str) -> bool:
    if root.startswith("s3://"):
        return False
    try:
        path.resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


def cmd_inventory(args: argparse.Namespace) -> int:
    """`inventory SOURCE`."""
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory, write_inventory

    out = None if args.out == "-" else Path(args.out)
    if out is not None and _inside(out, args.source):
        raise UsageError(str(out), "the inventory would be written inside the source archive; choose --out elsewhere")
    archive = open_archive(args.source, s3_options(args), dataset=args.dataset,
                           landmask_version=args.landmask_version, years=args.years)
    inv = build_inventory(archive, verify_hashes=args.verify_hashes, workers=args.workers, progress=_progress(args))
    if out is not None:
        write_inventory(inv, out)
    if args.json:
        doc = inv.to_json()
        doc["inventory_path"] = str(out) if out else None
        print(json.dumps(doc, indent=2))
    else:
        _print_inventory(inv, out)
    return EXIT_OK if inv.clean else EXIT_PROBLEMS


def cmd_plan(args: argparse.Namespace) -> int:
    """`plan SOURCE`."""
    from transcode.convert import ConvertOptions, load_inventory
    from transcode.plan import DEFAULT_CHUNK, DEFAULT_SHARD, make_plan

    args.shard_size = args.shard_size or DEFAULT_SHARD
    args.chunk_size = args.chunk_size or DEFAULT_CHUNK
    if args.shard_size[0] % args.chunk_size[0] or args.shard_size[1] % args.chunk_size[1]:
        raise UsageError("--shard-size", f"{args.shard_size} is not a multiple of --chunk-size {args.chunk_size}")
    opts = ConvertOptions(inventory=args.inventory, source_options=s3_options(args), progress=_progress(args))
    inv = load_inventory(args.source, opts)
    plan = make_plan(inv, years=args.years, zones=args.zones, shard=args.shard_size, chunk=args.chunk_size)
    doc = plan.summary()
    if not args.units and not args.json:
        doc.pop("units")
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK if not plan.skipped and not plan.clipped else EXIT_PROBLEMS
    print(f"time       {plan.time[0]}..{plan.time[-1]}" if plan.time else "time       (empty)")
    print(f"shards     {doc['shards']} of {plan.shard[0]}x{plan.shard[1]} px, chunks {plan.chunk[0]}x{plan.chunk[1]} px")
    for zone, z in doc["zones"].items():
        print(f"{zone}      EPSG:{z['epsg']} origin ({z['origin_x']:.0f}, {z['origin_y']:.0f}) {z['height']}x{z['width']} px, "
              f"{z['shards']} shards, {z['tile_years']} tile-years")
    print(f"tiles      {doc['tile_years']} tile-years, {_mb(doc['input_bytes'])} to read")
    for p in plan.skipped + plan.clipped:
        print(f"  {p.severity:7s} {p.kind:14s} {p.path}: {p.message}")
    if args.units:
        for u in doc["units"]:
            print(f"  {u['shard']}: {', '.join(u['tiles'])}")
    return EXIT_OK if not plan.skipped and not plan.clipped else EXIT_PROBLEMS


def _check_shape(args: argparse.Namespace) -> None:
    from transcode.plan import DEFAULT_CHUNK, DEFAULT_SHARD

    shard, chunk = args.shard_size or DEFAULT_SHARD, args.chunk_size or DEFAULT_CHUNK
    if shard[0] % chunk[0] or shard[1] % chunk[1]:
        raise UsageError("--shard-size", f"{shard} is not a multiple of --chunk-size {chunk}")
    if args.part_size is not None and args.part_size < 5:
        raise UsageError("--part-size", "S3 multipart parts must be at least 5 MiB")


def cmd_convert(args: argparse.Namespace) -> int:
    """`convert SOURCE STORE`."""
    from transcode.convert import convert

    _check_shape(args)
    if _inside(Path(args.store), args.source) and not args.store.startswith("s3://"):
        raise UsageError(args.store, "the store would be written inside the source archive; choose another place")
    report = convert(args.source, args.store, _convert_options(args))
    return _print_convert(args, report)


def cmd_extend(args: argparse.Namespace) -> int:
    """`extend STORE --years ...`."""
    from transcode.convert import extend

    _check_shape(args)
    report = extend(args.store, args.years, _convert_options(args), source=args.source)
    return _print_convert(args, report)


def _print_convert(args: argparse.Namespace, report) -> int:
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        if report.nothing_to_do:
            print(f"store      {report.store} is complete and current: nothing to do")
        else:
            rate = report.input_bytes / report.seconds / 1e6 if report.seconds else 0
            print(f"store      {report.store}  (years {report.time[0]}..{report.time[-1]})")
            print(f"shards     {report.shards_written} written, {report.shards_already_done} already done, "
                  f"{report.shards_planned} planned; {report.metadata_written} metadata objects written")
            print(f"data       {_mb(report.input_bytes)} read, {_mb(report.output_bytes)} written, "
                  f"{report.seconds:.1f} s, {rate:.1f} MB/s ({report.executor})")
            print(f"manifest   {report.manifest}")
        for p in report.skipped_tiles + report.clipped_tiles:
            print(f"  {p.severity:7s} {p.kind:14s} {p.path}: {p.message}")
        for f in report.failed:
            print(f"  error   failed-shard   {f['shard']}: {f['error']}")
        if report.years_outside_time_axis:
            print(f"note       the source also has years {report.years_outside_time_axis} outside the store's time axis "
                  f"{report.time[0]}..{report.time[-1]}: add later years with `tessera-transcode extend`")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo [DIR]`: synthetic archive -> inventory -> store."""
    from transcode.convert import ConvertOptions, convert
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory, write_inventory
    from transcode.synthetic import make_legacy_archive

    base = Path(args.dir)
    archive_dir = base / "archive"
    if archive_dir.exists() and any(archive_dir.iterdir()):
        made = None  # reuse what an earlier run generated
    else:
        made = make_legacy_archive(archive_dir, years=(2024,), preset=args.preset, progress=_progress(args))
    inv = build_inventory(open_archive(str(archive_dir)), verify_hashes=True, progress=_progress(args))
    inv_path = base / "inventory.parquet"
    write_inventory(inv, inv_path)
    store_dir = base / "store.zarr"
    report = convert(str(archive_dir), str(store_dir), ConvertOptions(progress=_progress(args)), inventory=inv)
    doc = {"archive": str(archive_dir), "generated": made is not None, "inventory": str(inv_path),
           "store": str(store_dir), "summary": inv.summary(), "convert": report.to_json()}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"archive    {archive_dir}  ({'generated' if made else 'reused'})")
        _print_inventory(inv, inv_path)
        _print_convert(argparse.Namespace(json=False), report)
        print(f"\nopen it:   python3 -c \"import zarr; print(zarr.open_group('{store_dir}', mode='r')['utm31/embeddings'].info)\"")
    return EXIT_OK if inv.clean and report.ok else EXIT_PROBLEMS


def _mb(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"


def _print_inventory(inv, out: Path | None) -> None:
    s = inv.summary()
    print(f"source     {s['source']}  ({s['layout']} layout)")
    for year, v in s["per_year"].items():
        print(f"year {year}  {v['tiles']} tiles ({v['usable']} usable), {_mb(v['bytes'])}")
    for zone, years in s["per_zone"].items():
        print(f"{zone:10s} " + ", ".join(f"{y}: {n}" for y, n in years.items()))
    lm = s["landmasks"]
    cov = "n/a" if lm["coverage"] is None else f"{lm['coverage']:.0%}"
    print(f"landmasks  {lm['files']} files, {_mb(lm['bytes'])}; cover {cov} of {s['tile_cells']} tile cells")
    print(f"registries {', '.join(s['registries']) or 'none'}" + ("  (hashes verified)" if s["verified_hashes"] else ""))
    print(f"total      {s['tiles']} tiles, {_mb(s['bytes'])}")
    if inv.problems:
        print(f"problems   {len(inv.problems)}")
        for p in sorted(inv.problems):
            print(f"  {p.severity:7s} {p.kind:20s} {p.path}: {p.message}")
    else:
        print("problems   none")
    if out is not None:
        print(f"inventory  written to {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TranscodeError as e:
        print(f"tessera-transcode {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"tessera-transcode {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
