"""`tessera-transcode validate STORE`."""

from __future__ import annotations

import argparse

from transcode.cli import common
from transcode.validate.report import LEVELS
from transcode.validate.report import PROFILES as RULES


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The verb's flags."""
    p = common.add_verb(
        sub, "validate", "check a store's conventions, structure, content and fidelity to its source",
        "Validate a Zarr v3 store (local directory or s3://bucket/prefix) up to a level; each level "
        "includes the cheaper ones. metadata: every zarr.json is valid Zarr v3, the conventions sit at the right "
        "nodes and agree with the arrays, the consolidated metadata is current (reads zarr.json and the small "
        "coordinate arrays only). structure: orphan objects, every shard index (one ranged read of its tail: "
        "CRC32C, chunks inside the object, no overlaps), coverage per zone and year. content: every chunk (or "
        "--sample N chunks) decodes, object checksums match the store manifest, scale sentinels, statistics of "
        "valid pixels. fidelity: every pixel (or the sampled chunks) equals the legacy tile it came from. "
        "Nothing is written.",
        "no errors (warnings allowed)", "errors found",
    )
    common.add_store_argument(p)
    p.add_argument("--level", choices=LEVELS, default="structure", help="how deep to check (default structure)")
    p.add_argument("--rules", choices=RULES, default="tessera",
                   help="which rules the store is held to: tessera, the layout of docs/format.md, 'Layout' (default); "
                   "geoemb, the convention only, for stores of other producers; interop, tessera plus portability "
                   "warnings")
    p.add_argument("--source", metavar="ARCHIVE",
                   help="legacy archive for --level fidelity (default: the one the store records)")
    p.add_argument("--sample", type=common.positive_int, metavar="N",
                   help="content and fidelity check N randomly chosen written chunks (default: all of them)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --sample draw (default 0)")
    common.add_workers(p, "content and fidelity")
    p.add_argument("--max-mismatches", type=common.positive_int, default=1000, metavar="N",
                   help="fidelity mismatches listed pixel by pixel (default 1000; all are counted per tile)")
    common.add_output_options(p)
    common.add_s3_options(p, "store", "the store")
    common.add_s3_options(p, "source", "the source")
    common.deprecated_flag(p, "--profile", "--rules", "rules", choices=RULES,
                    change="it named the validation rules; the AWS profile is --store-aws-profile / "
                           "--source-aws-profile")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the verb and print its report."""
    import transcode

    report = transcode.validate(args.store, level=args.level, rules=args.rules, source=args.source,
                                sample=args.sample, seed=args.seed, workers=args.workers,
                                max_mismatches=args.max_mismatches, progress=common.progress(args),
                                **common.s3_keywords(args, "store"), **common.s3_keywords(args, "source"))
    return common.finish(args, report, lambda r: print("\n".join(r.lines())))
