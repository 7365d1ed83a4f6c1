"""`tessera-transcode bench-codecs SOURCE`."""

from __future__ import annotations

import argparse

from transcode.cli import common


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The verb's flags."""
    p = common.add_verb(
        sub, "bench-codecs", "measure every codec option on real tiles of an archive",
        "Pick N tiles of the archive, cut them into inner chunks exactly as convert does, and print "
        "for every codec option: compression ratio, compress and decompress MB/s per core, projected store size "
        "and single-core transcode time for the whole archive, portability; then a recommendation.",
        "measured", "an option did not decode to the same bytes",
    )
    common.add_source_argument(p)
    p.add_argument("--sample", type=common.positive_int, default=4, metavar="N", help="tiles to sample (default 4)")
    p.add_argument("--codec", action="append", metavar="SPEC",
                   help="measure only these options (repeatable; default: the standard list)")
    p.add_argument("--budget", type=common.positive_int, default=24, metavar="MiB",
                   help="raw chunk bytes each option compresses, drawn evenly from the sample (default 24)")
    p.add_argument("--years", type=common.parse_years, metavar="LIST",
                   help="sample and project only these years (default: every year)")
    common.add_layout_options(p)
    common.add_inventory_option(p)
    common.add_output_options(p)
    common.add_s3_options(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the verb and print its report."""
    import transcode

    report = transcode.bench_codecs(args.source, sample=args.sample, codecs=args.codec, budget=args.budget,
                                    years=args.years, shard_size=args.shard_size, chunk_size=args.chunk_size,
                                    inventory=args.inventory, progress=common.progress(args),
                                    **common.s3_keywords(args))
    return common.finish(args, report, print_bench)


def print_bench(report) -> None:
    """The readable table of codec options and the recommendation."""
    sample, best = report.sample, report.recommendation
    print(f"sample     {len(sample.tiles)} tiles ({', '.join(sample.tiles)}): {common.mb(sample.input_bytes)} input, "
          f"{sample.chunks_total['embeddings']} inner chunks, {len(sample.chunks['embeddings'])} measured")
    print(f"archive    {sample.archive_tiles} tile-years, {common.mb(sample.archive_input_bytes)} input; "
          "projections scale the sample by input bytes; speeds are per core")
    print(f"\n{'CODEC OPTION':24s} {'RATIO':>6s} {'EMB':>5s} {'SCALES':>6s} {'COMPRESS':>10s} {'DECOMPRESS':>10s} "
          f"{'STORE':>10s} {'1-CORE TIME':>11s}  PORTABILITY")
    for r in report.results:
        no = [k for k in ("tensorstore", "zarrs", "zarrita.js") if not r.readers[k]]
        port = "every reader" if not no else "not " + ", ".join(no)
        speeds = ("(copy)", "(copy)") if r.option == "none" else \
            (f"{r.compress_mb_s:.0f} MB/s", f"{r.decompress_mb_s:.0f} MB/s")
        print(f"{r.option:24s} {r.ratio:6.2f} {r.ratio_embeddings:5.2f} {r.ratio_scales:6.2f} "
              f"{speeds[0]:>10s} {speeds[1]:>10s} {common.mb(r.projected_store_bytes):>10s} "
              f"{common.duration(r.projected_seconds):>11s}  {port}" + ("" if r.bit_exact else "  NOT BIT-EXACT"))
    if best:
        print(f"\nrecommendation: --codec {best.option}  ({best.ratio:.2f}x, {common.mb(best.projected_store_bytes)}, "
              f"{common.duration(best.projected_seconds)} on one core, decodes {best.decompress_mb_s:.0f} MB/s "
              "per core; "
              "smallest store every reader decodes at >= 100 MB/s, within 2x the fastest portable transcode)")
    else:
        print("\nrecommendation: none of the measured options is portable, bit-exact and fast enough to decode")
