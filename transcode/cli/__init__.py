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
    g.add_argument(f"--{prefix}ca-bundle", metavar="PEM", help="CA certificates for an HTTPS endpoint (self-signed gateways)")


def s3_options(args: argparse.Namespace, prefix: str = "") -> S3Options:
    """The S3Options the user gave with `add_s3_options`."""
    p = prefix.replace("-", "_")
    return S3Options(
        endpoint_url=getattr(args, f"{p}endpoint_url"),
        region=getattr(args, f"{p}region"),
        profile=getattr(args, f"{p}profile"),
        anonymous=getattr(args, f"{p}anonymous"),
        path_style=getattr(args, f"{p}path_style"),
        ca_bundle=getattr(args, f"{p}ca_bundle"),
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
    _add_dataset_option(inv)
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
    _add_dataset_option(pl)
    pl.add_argument("--units", action="store_true", help="list every work unit (shard and its tiles; with --json, "
                    "as the document's 'units')")
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

    va = sub.add_parser(
        "validate",
        help="check a store's conventions, structure, content and fidelity to its source",
        description="Validate a Zarr v3 store (local directory or s3://bucket/prefix) up to a level; each level "
        "includes the cheaper ones. metadata: every zarr.json is valid Zarr v3, the conventions sit at the right "
        "nodes and agree with the arrays, the consolidated metadata is current (reads zarr.json and the small "
        "coordinate arrays only). structure: orphan objects, every shard index (one ranged read of its tail: "
        "CRC32C, chunks inside the object, no overlaps), coverage per zone and year. content: every chunk (or "
        "--sample N chunks) decodes, object checksums match the store manifest, scale sentinels, statistics of "
        "valid pixels. fidelity: every pixel (or the sampled chunks) equals the legacy tile it came from. "
        "Nothing is written.",
        epilog="Exit codes: 0 no errors (warnings allowed), 1 errors found, 2 unusable input.",
    )
    va.add_argument("store", metavar="STORE", help="store root: a directory or s3://bucket/prefix")
    va.add_argument("--level", choices=["metadata", "structure", "content", "fidelity"], default="structure",
                    help="how deep to check (default structure)")
    va.add_argument("--profile", choices=["tessera", "geoemb", "interop"], default="tessera",
                    help="tessera: the layout of FORMATS.md §2 (default); geoemb: the convention only, for stores "
                    "of other producers; interop: tessera plus portability warnings")
    va.add_argument("--source", metavar="ARCHIVE", help="legacy archive for --level fidelity (default: the one the "
                    "store records)")
    va.add_argument("--sample", type=_positive_int, metavar="N",
                    help="content and fidelity check N randomly chosen written chunks instead of all")
    va.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --sample draw (default 0)")
    va.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                    help="worker processes for content and fidelity (default 1)")
    va.add_argument("--max-mismatches", type=_positive_int, default=1000, metavar="N",
                    help="fidelity mismatches listed pixel by pixel (default 1000; all are counted per tile)")
    _add_output_options(va)
    add_s3_options(va, "store-", "store")
    add_s3_options(va, "source-", "source")
    va.set_defaults(func=cmd_validate)

    cc = sub.add_parser(
        "codecs",
        help="list every codec, its Zarr v3 name and which readers decode it",
        description="Every codec `--codec` accepts, the Zarr v3 name it is written under, and which readers "
        "(zarr-python, tensorstore, zarrs, zarrita.js) decode it, as verified by the interop matrix "
        "(tools/interop/matrix.py; README).",
    )
    cc.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of a table")
    cc.set_defaults(func=cmd_codecs)

    bc = sub.add_parser(
        "bench-codecs",
        help="measure every codec option on real tiles of an archive",
        description="Pick N tiles of the archive, cut them into inner chunks exactly as convert does, and print "
        "for every codec option: compression ratio, compress and decompress MB/s per core, projected store size "
        "and single-core transcode time for the whole archive, portability; then a recommendation.",
    )
    bc.add_argument("source", metavar="SOURCE", help="archive root: a directory or s3://bucket/prefix")
    bc.add_argument("--sample", type=_positive_int, default=4, metavar="N", help="tiles to sample (default 4)")
    bc.add_argument("--codec", action="append", metavar="SPEC",
                    help="measure only these options (repeatable; default: the standard list)")
    bc.add_argument("--budget", type=_positive_int, default=24, metavar="MiB",
                    help="raw chunk bytes each option compresses, drawn evenly from the sample (default 24)")
    bc.add_argument("--years", type=parse_years, metavar="LIST", help="sample and project only these years")
    _add_layout_options(bc)
    bc.add_argument("--inventory", metavar="PATH", help="reuse a Parquet inventory instead of listing SOURCE")
    _add_output_options(bc)
    add_s3_options(bc)
    bc.set_defaults(func=cmd_bench_codecs)

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

    from transcode.mirrors.spec import allow_intermixed, non_negative_int

    vm = sub.add_parser(
        "verify-mirrors",
        help="check that the mirrors of a store hold exactly the same objects; plan or make repairs",
        description="Compare two or more copies of a store (local directories or s3://bucket/prefix, each with "
        "its own S3 settings) by a streaming merge of their sorted listings, at a level chosen by cost; each level "
        "includes the cheaper ones. list: presence and size. etag: ETags where they can prove equality (single-part "
        "MD5s; multipart ETags with the same part count and a known part size); copies they cannot prove are "
        "'unproven', never equal. manifest: each mirror against the store manifest written by convert (size, MD5, "
        "CRC32C). zarr: zarr.json and other small objects read whole (JSON differences named), each shard's index "
        "read with one ranged GET. content: every copy streamed and hashed (--sample N: N random objects plus "
        "whatever the cheaper levels left unproven). Nothing is written to a mirror unless --repair is given. An "
        "interrupted run resumes from its state file.",
        epilog="Mirrors: NAME=URL (or URL, named m1, m2, ...), options per mirror with -O NAME:KEY=VALUE, keys "
        "endpoint-url, region, profile, anonymous, path-style, ca-bundle, part-size (MiB, asserted for a server "
        "that cannot report it); or a TOML/JSON --mirrors-file with [mirrors.NAME] tables (url = ..., and the same "
        "keys). Exit codes: 0 in sync, 1 out of sync (or unproven), 2 unusable input, 130 interrupted.",
    )
    vm.add_argument("mirrors", nargs="*", metavar="MIRROR",
                    help="[NAME=]URL: a directory or s3://bucket/prefix; with --mirrors-file, the names to use")
    vm.add_argument("--mirrors-file", metavar="FILE", help="TOML (or .json) file naming each mirror")
    vm.add_argument("--mirror-option", "-O", action="append", default=[], metavar="NAME:KEY=VALUE",
                    help="an S3 setting of one mirror, e.g. ceph:endpoint-url=https://rgw.example.org (repeatable)")
    vm.add_argument("--level", choices=["list", "etag", "manifest", "zarr", "content"], default="list",
                    help="how far to go (default list)")
    vm.add_argument("--sample", type=non_negative_int, metavar="N",
                    help="content level: hash N random objects plus everything still unproven (0: only those)")
    vm.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --sample draw (default 0)")
    vm.add_argument("--manifest", metavar="NAME|FILE",
                    help="store manifest to check against: a mirror's, or a local manifest.parquet (default: the "
                    "source of truth's, else the first mirror's that has one)")
    vm.add_argument("--source-of-truth", metavar="NAME", help="the mirror the others must match (and repairs copy from)")
    vm.add_argument("--repair-plan", metavar="FILE", help="write the copies and deletions that would bring every "
                    "mirror in line with the source of truth (JSON lines)")
    vm.add_argument("--repair", action="store_true", help="carry the plan out, then verify again")
    vm.add_argument("--part-size", type=_positive_int, metavar="MiB", help="part size of repair copies whose source "
                    "part size cannot be read (default: the store's recorded one)")
    vm.add_argument("--keep-extra", action="store_true", help="repairs leave objects missing from the source alone")
    vm.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                    help="leave keys matching this pattern out, e.g. '.tessera/journal/*' (repeatable)")
    vm.add_argument("--concurrency", type=_positive_int, default=16, metavar="N",
                    help="requests in flight at once (default 16)")
    vm.add_argument("--retries", type=_positive_int, default=8, metavar="N",
                    help="attempts per request on throttling (503 SlowDown), resets and timeouts (default 8)")
    vm.add_argument("--timeout", type=float, metavar="SECONDS", help="connect/read timeout per request (default 60)")
    vm.add_argument("--state", metavar="FILE", help="checkpoint file (default ./.tessera-verify-mirrors/<id>.json); "
                    "a run of the same verification resumes from it")
    vm.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    vm.add_argument("--json", action="store_true", help="JSON lines on stdout: one per difference, then a summary")
    vm.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    vm.set_defaults(func=cmd_verify_mirrors)
    allow_intermixed(vm)
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
    _add_dataset_option(p)
    _add_output_options(p)
    add_s3_options(p, "source-", "source")
    add_s3_options(p, "store-", "store")


def _add_dataset_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-version", metavar="VERSION[-VARIANT]",
                   help="the source's dataset, e.g. 1.1 or v2-vultr, when the archive does not say it (or says it "
                   "wrong): recorded as overridden")


def _convert_options(args: argparse.Namespace):
    from transcode.codecs.spec import parse_codec_options
    from transcode.engine.convert import ConvertOptions

    return ConvertOptions(
        years=args.years, zones=args.zones, workers=args.workers, scheduler=args.scheduler,
        shard=args.shard_size, chunk=args.chunk_size, codecs=parse_codec_options(args.codec) if args.codec else None,
        part_size=args.part_size * 1024 * 1024 if args.part_size else None, strict=args.strict, progress=_progress(args),
        inventory=args.inventory, source_options=s3_options(args, "source-"), store_options=s3_options(args, "store-"),
        dataset_version=args.dataset_version,
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
                           landmask_version=args.landmask_version, years=args.years,
                           dataset_version=args.dataset_version)
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
    from transcode.engine.convert import ConvertOptions, load_inventory
    from transcode.engine.plan import DEFAULT_CHUNK, DEFAULT_SHARD, make_plan

    args.shard_size = args.shard_size or DEFAULT_SHARD
    args.chunk_size = args.chunk_size or DEFAULT_CHUNK
    if args.shard_size[0] % args.chunk_size[0] or args.shard_size[1] % args.chunk_size[1]:
        raise UsageError("--shard-size", f"{args.shard_size} is not a multiple of --chunk-size {args.chunk_size}")
    opts = ConvertOptions(inventory=args.inventory, source_options=s3_options(args), progress=_progress(args),
                          dataset_version=args.dataset_version)
    inv = load_inventory(args.source, opts)
    plan = make_plan(inv, years=args.years, zones=args.zones, shard=args.shard_size, chunk=args.chunk_size)
    doc = plan.summary(units=args.units and args.json)
    doc["dataset"] = inv.dataset.to_dict()
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK if not plan.skipped and not plan.clipped else EXIT_PROBLEMS
    print(f"time       {plan.time[0]}..{plan.time[-1]}" if plan.time else "time       (empty)")
    print(f"shards     {doc['shards']} of {plan.shard[0]}x{plan.shard[1]} px, chunks {plan.chunk[0]}x{plan.chunk[1]} px")
    for zone, z in doc["zones"].items():
        print(f"{zone}      EPSG:{z['epsg']} origin ({z['origin_x']:.0f}, {z['origin_y']:.0f}) {z['height']}x{z['width']} px, "
              f"{z['shards']} shards, {z['tile_years']} tile-years")
    print(f"tiles      {doc['tile_years']} tile-years, {_mb(doc['input_bytes'])} to read")
    print(f"dataset    {_dataset_line(inv.dataset)}")
    for p in plan.skipped + plan.clipped:
        print(f"  {p.severity:7s} {p.kind:14s} {p.path}: {p.message}")
    if args.units:
        for task in plan.iter_tasks():
            print(f"  {task.name}: {', '.join(p.tile for p in task.placements)}")
    return EXIT_OK if not plan.skipped and not plan.clipped else EXIT_PROBLEMS


def _check_shape(args: argparse.Namespace) -> None:
    from transcode.engine.plan import DEFAULT_CHUNK, DEFAULT_SHARD

    shard, chunk = args.shard_size or DEFAULT_SHARD, args.chunk_size or DEFAULT_CHUNK
    if shard[0] % chunk[0] or shard[1] % chunk[1]:
        raise UsageError("--shard-size", f"{shard} is not a multiple of --chunk-size {chunk}")
    if args.part_size is not None and args.part_size < 5:
        raise UsageError("--part-size", "S3 multipart parts must be at least 5 MiB")


def cmd_convert(args: argparse.Namespace) -> int:
    """`convert SOURCE STORE`."""
    from transcode.engine.convert import convert

    _check_shape(args)
    if _inside(Path(args.store), args.source) and not args.store.startswith("s3://"):
        raise UsageError(args.store, "the store would be written inside the source archive; choose another place")
    options = _convert_options(args)
    _warn_portability(args, options.codecs)
    report = convert(args.source, args.store, options)
    return _print_convert(args, report)


def cmd_extend(args: argparse.Namespace) -> int:
    """`extend STORE --years ...`."""
    from transcode.engine.convert import extend

    _check_shape(args)
    options = _convert_options(args)
    _warn_portability(args, options.codecs)
    report = extend(args.store, args.years, options, source=args.source)
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


def cmd_validate(args: argparse.Namespace) -> int:
    """`validate STORE`."""
    from transcode.validate import ValidateOptions, validate

    report = validate(args.store, ValidateOptions(
        level=args.level, profile=args.profile, source=args.source, sample=args.sample, seed=args.seed,
        workers=args.workers, progress=_progress(args), max_mismatches=args.max_mismatches,
        store_options=s3_options(args, "store-"), source_options=s3_options(args, "source-")))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
    return report.exit_code


def _warn_portability(args: argparse.Namespace, codecs: dict | None) -> None:
    """One line on stderr when the browser or Rust/C++ readers cannot decode the codecs given with --codec."""
    from transcode.codecs.catalog import portability_warning

    warning = portability_warning(codecs) if codecs else None
    if warning:
        print(f"tessera-transcode {args.command}: warning: {warning}", file=sys.stderr)


def cmd_codecs(args: argparse.Namespace) -> int:
    """`codecs`: every codec, its Zarr v3 name and the readers that decode it."""
    from transcode.codecs.catalog import catalog

    doc = catalog()
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    names = {r: v["name"] for r, v in doc["readers"].items()}
    print(f"{'CODEC':8s} {'SPEC FORM':34s} {'ZARR V3 NAME (CONFIGURATION)':44s} DECODED BY (verified)")
    for c in doc["codecs"]:
        ok = c["readers"]
        yes = [names[r] for r, v in ok.items() if v and not (r == "zarr-python+tessera" and ok["zarr-python"])]
        no = [names[r] for r, v in ok.items() if not v]
        conf = f" ({c['configuration']})" if c["configuration"] else ""
        print(f"{c['codec']:8s} {c['form']:34s} {c['zarr_name'] + conf:44s} {', '.join(yes)}"
              + (f"; NOT {', '.join(no)}" if no else ""))
    print(f"\ndefault: {doc['default']} for both arrays. Readers: "
          + "; ".join(f"{v['name']} {v['version']} ({v['kind']})".replace("  ", " ")
                      for r, v in doc["readers"].items() if r != "zarr-python+tessera")
          + ". Matrix per option: README, `--json`, tools/interop/matrix.py.")
    return EXIT_OK


def cmd_bench_codecs(args: argparse.Namespace) -> int:
    """`bench-codecs SOURCE`: codec options measured on N tiles of the archive."""
    from tqdm import tqdm

    from transcode.codecs import bench as codecbench
    from transcode.codecs.spec import parse_codec_spec
    from transcode.engine.convert import ConvertOptions, load_inventory
    from transcode.engine.plan import DEFAULT_CHUNK, DEFAULT_SHARD

    shard, chunk = args.shard_size or DEFAULT_SHARD, args.chunk_size or DEFAULT_CHUNK
    if shard[0] % chunk[0] or shard[1] % chunk[1]:
        raise UsageError("--shard-size", f"{shard} is not a multiple of --chunk-size {chunk}")
    options = [parse_codec_spec(c).text for c in args.codec] if args.codec else list(codecbench.BENCH_OPTIONS)
    inv = load_inventory(args.source, ConvertOptions(inventory=args.inventory, source_options=s3_options(args),
                                                     progress=_progress(args)))
    bar = tqdm(desc="bench-codecs", unit="step", disable=not _progress(args))
    try:
        sample = codecbench.take_sample(args.source, inv, args.sample, shard=shard, chunk=chunk,
                                        years=args.years, budget=args.budget * 1024 * 1024,
                                        source_options=s3_options(args), tick=lambda: bar.update(1))
        bar.total = bar.n + len(options)
        results = codecbench.run(sample, options, tick=lambda: bar.update(1))
    finally:
        bar.close()
    best = codecbench.recommend(results)
    exact = all(r.bit_exact for r in results)
    if args.json:
        print(json.dumps({"source": args.source, "sample": {
            "tiles": sample.tiles, "input_bytes": sample.input_bytes, "build_seconds": sample.build_seconds,
            "chunks": sample.chunks_total["embeddings"], "chunks_measured": len(sample.chunks["embeddings"])},
            "archive": {"tile_years": sample.archive_tiles, "input_bytes": sample.archive_input_bytes},
            "results": [r.to_dict() for r in results], "recommendation": best.option if best else None}, indent=2))
        return EXIT_OK if exact else EXIT_PROBLEMS
    print(f"sample     {len(sample.tiles)} tiles ({', '.join(sample.tiles)}): {_mb(sample.input_bytes)} input, "
          f"{sample.chunks_total['embeddings']} inner chunks, {len(sample.chunks['embeddings'])} measured")
    print(f"archive    {sample.archive_tiles} tile-years, {_mb(sample.archive_input_bytes)} input; "
          "projections scale the sample by input bytes; speeds are per core")
    print(f"\n{'CODEC OPTION':24s} {'RATIO':>6s} {'EMB':>5s} {'SCALES':>6s} {'COMPRESS':>10s} {'DECOMPRESS':>10s} "
          f"{'STORE':>10s} {'1-CORE TIME':>11s}  PORTABILITY")
    for r in results:
        no = [k for k in ("tensorstore", "zarrs", "zarrita.js") if not r.readers[k]]
        port = "every reader" if not no else "not " + ", ".join(no)
        speeds = ("(copy)", "(copy)") if r.option == "none" else \
            (f"{r.compress_mb_s:.0f} MB/s", f"{r.decompress_mb_s:.0f} MB/s")
        print(f"{r.option:24s} {r.ratio:6.2f} {r.ratio_embeddings:5.2f} {r.ratio_scales:6.2f} "
              f"{speeds[0]:>10s} {speeds[1]:>10s} {_mb(r.projected_store_bytes):>10s} "
              f"{_duration(r.projected_seconds):>11s}  {port}" + ("" if r.bit_exact else "  NOT BIT-EXACT"))
    if best:
        print(f"\nrecommendation: --codec {best.option}  ({best.ratio:.2f}x, {_mb(best.projected_store_bytes)}, "
              f"{_duration(best.projected_seconds)} on one core, decodes {best.decompress_mb_s:.0f} MB/s per core; "
              "smallest store every reader decodes at >= 100 MB/s, within 2x the fastest portable transcode)")
    else:
        print("\nrecommendation: none of the measured options is portable, bit-exact and fast enough to decode")
    return EXIT_OK if exact else EXIT_PROBLEMS


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} s"


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo [DIR]`: synthetic archive -> inventory -> store."""
    from transcode.engine.convert import ConvertOptions, convert
    from transcode.legacy.archive import open_archive
    from transcode.legacy.inventory import build_inventory, write_inventory
    from transcode.testing.synthetic import make_legacy_archive

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


def cmd_verify_mirrors(args: argparse.Namespace) -> int:
    """`verify-mirrors MIRROR MIRROR [MIRROR...]`."""
    from transcode.mirrors.engine import VerifyOptions
    from transcode.mirrors.report import Reporter
    from transcode.mirrors.run import sigterm_interrupts, verify_mirrors
    from transcode.mirrors.spec import parse_mirrors

    if (args.repair or args.repair_plan) and not args.source_of_truth:
        raise UsageError("--repair" if args.repair else "--repair-plan", "needs --source-of-truth NAME")
    if args.part_size is not None and args.part_size < 5:
        raise UsageError("--part-size", "S3 multipart parts must be at least 5 MiB")
    mirrors = parse_mirrors(args.mirrors, args.mirror_option, args.mirrors_file)
    opts = VerifyOptions(level=args.level, sample=args.sample, seed=args.seed, manifest=args.manifest,
                         source_of_truth=args.source_of_truth, exclude=tuple(args.exclude),
                         concurrency=args.concurrency, attempts=args.retries, retries=min(args.retries, 4),
                         timeout=args.timeout, state=args.state, restart=args.restart, progress=_progress(args))
    with sigterm_interrupts():
        summary = verify_mirrors(mirrors, opts, Reporter(json_lines=args.json), repair_plan=args.repair_plan,
                                 repair=args.repair, part_size=args.part_size * 1024 * 1024 if args.part_size else None,
                                 keep_extra=args.keep_extra)
    return EXIT_OK if summary["in_sync"] else EXIT_PROBLEMS


def _mb(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"


def _print_inventory(inv, out: Path | None) -> None:
    s = inv.summary()
    print(f"source     {s['source']}  ({s['layout']} layout)")
    print(f"dataset    {_dataset_line(inv.dataset)}")
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


def _dataset_line(dataset) -> str:
    if dataset.overridden:
        return f"{dataset.label}, given with --dataset-version (overridden)"
    if not dataset.known:
        return "unknown (no tessera_metadata.json, no npy/<dataset> name, no version in manifest.parquet)"
    return f"{dataset.label}, from {dataset.source}" + ("  (MIXED: see problems)" if dataset.conflicts else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    # Arrow's default allocator keeps freed per-thread memory; the system one gives it back, which keeps the
    # peak RSS of inventory and plan flat on millions of tiles (set before pyarrow is first imported)
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
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


def run() -> None:
    """Console-script entry: run, flush, and leave without interpreter finalisation, where native thread pools
    (pyarrow's, PROJ's) can abort the process ("terminate called without an active exception") after the work
    is done and the exit code is decided."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    run()
