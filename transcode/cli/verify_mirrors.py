"""`tessera-transcode verify-mirrors MIRROR MIRROR [MIRROR...]`."""

from __future__ import annotations

import argparse
import sys
import warnings

from transcode.api.mirrors import DEFAULT_MAX_DIFFERENCES
from transcode.cli import common
from transcode.errors import DeprecatedSpellingWarning, UsageError
from transcode.mirrors.evidence import LEVELS
from transcode.storage.settings import settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The verb's flags."""
    keys = ", ".join(s.name for s in settings(writes=True))
    p = common.add_verb(
        sub, "verify-mirrors", "check that the mirrors of a store hold exactly the same objects; plan or make repairs",
        "Compare two or more copies of a store (local directories or s3://bucket/prefix, each with "
        "its own S3 settings) by a streaming merge of their sorted listings, at a level chosen by cost; each level "
        "includes the cheaper ones. list: presence and size. etag: ETags where they can prove equality (single-part "
        "MD5s; multipart ETags with the same part count and a known part size); copies they cannot prove are "
        "'unproven', never equal. manifest: each mirror against the store manifest written by convert (size, MD5, "
        "CRC32C). zarr: zarr.json and other small objects read whole (JSON differences named), each shard's index "
        "read with one ranged GET. content: every copy streamed and hashed (--sample N: N random objects plus "
        "whatever the cheaper levels left unproven). Nothing is written to a mirror unless --repair is given. An "
        "interrupted run resumes from its state file.",
        "in sync", "out of sync (or unproven)",
        before=f"Mirrors: NAME=URL (or URL, named m1, m2, ...), options per mirror with -O NAME:KEY=VALUE, keys "
        f"{keys} (the S3 flags of the other verbs; acl for --repair writes), part-size (MiB, asserted for a "
        "server that cannot report it); or a TOML/JSON --mirrors-file with [mirrors.NAME] tables (url = ..., and "
        "the same keys). ",
    )
    p.add_argument("mirrors", nargs="*", metavar="MIRROR",
                   help="[NAME=]URL: a directory or s3://bucket/prefix; with --mirrors-file, the names to use "
                   "(default: every mirror of the file)")
    p.add_argument("--mirrors-file", metavar="FILE", help="TOML (or .json) file naming each mirror (default: none)")
    p.add_argument("--mirror-option", "-O", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="an S3 setting of one mirror, e.g. ceph:endpoint-url=https://rgw.example.org (repeatable; "
                   "default: none)")
    p.add_argument("--level", choices=LEVELS, default="list", help="how far to go (default list)")
    p.add_argument("--sample", type=common.non_negative_int, metavar="N",
                   help="content level: hash N random objects plus everything still unproven (0: only those; "
                   "default: hash every object)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the --sample draw (default 0)")
    p.add_argument("--manifest", metavar="NAME|FILE",
                   help="store manifest to check against: a mirror's, or a local manifest.parquet (default: the "
                   "source of truth's, else the first mirror's that has one)")
    p.add_argument("--source-of-truth", metavar="NAME",
                   help="the mirror the others must match, and repairs copy from (default: none)")
    p.add_argument("--repair-plan", metavar="FILE", help="write the copies and deletions that would bring every "
                   "mirror in line with the source of truth, as JSON lines (default: none)")
    p.add_argument("--repair", action="store_true", help="carry the plan out, then verify again (default: off)")
    p.add_argument("--part-size", type=common.positive_int, metavar="MiB",
                   help="part size of repair copies whose source part size cannot be read (default: the store's "
                   "recorded one)")
    p.add_argument("--keep-extra", action="store_true",
                   help="repairs leave objects missing from the source of truth alone (default: off, deleted)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="leave keys matching this pattern out, e.g. '.tessera/journal/*' (repeatable; default: none)")
    p.add_argument("--concurrency", type=common.positive_int, default=16, metavar="N",
                   help="requests in flight at once, in threads (default 16)")
    p.add_argument("--retries", type=common.positive_int, default=8, metavar="N",
                   help="attempts per request on throttling (503 SlowDown), resets and timeouts (default 8)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="connect/read timeout per request (default 60)")
    p.add_argument("--state", metavar="FILE", help="checkpoint file (default ./.tessera-verify-mirrors/<id>.json); "
                   "a run of the same verification resumes from it")
    p.add_argument("--restart", action="store_true",
                   help="ignore an existing checkpoint and start over (default: off, resume)")
    common.add_output_options(p)
    p.add_argument("--json-lines", action="store_true",
                   help="stream JSON lines on stdout instead: one per difference and repair step as it is found, "
                   "then the summary (default: off)")
    p.add_argument("--max-differences", type=common.positive_int, default=DEFAULT_MAX_DIFFERENCES, metavar="N",
                   help="differences listed per pass in the --json document; all are counted in its summaries "
                   f"(default {DEFAULT_MAX_DIFFERENCES})")
    p.set_defaults(func=command)
    _allow_intermixed(p)


def _allow_intermixed(parser: argparse.ArgumentParser) -> None:
    """Let MIRROR arguments and options come in any order (`A -O a:k=v B`): argparse alone stops reading
    positionals at the first option."""
    base = parser.__class__

    def parse_known_args(self, args=None, namespace=None):
        if getattr(self, "_intermixing", False):
            return base.parse_known_args(self, args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    parser.__class__ = type(base.__name__, (base,), {"parse_known_args": parse_known_args})


def command(args: argparse.Namespace) -> int:
    """Run the verb; print its records as they come (text or --json-lines), or one document at the end."""
    import transcode
    from transcode.mirrors.report import Reporter
    from transcode.mirrors.run import sigterm_interrupts

    if args.json and args.json_lines:
        raise UsageError("--json", "give --json (one document at the end) or --json-lines (a stream), not both")
    if args.json:
        warnings.warn("verify-mirrors --json now prints one JSON document when the run ends, as every other verb "
                      "does (it printed JSON lines until this release); for the stream of JSON lines use --json-lines",
                      DeprecatedSpellingWarning, stacklevel=2)
    on_record = None if args.json else Reporter(sys.stdout, json_lines=args.json_lines).record
    with sigterm_interrupts():
        report = transcode.verify_mirrors(
            args.mirrors, mirrors_file=args.mirrors_file, mirror_options=args.mirror_option, level=args.level,
            sample=args.sample, seed=args.seed, manifest=args.manifest, source_of_truth=args.source_of_truth,
            exclude=args.exclude, concurrency=args.concurrency, retries=args.retries, timeout=args.timeout,
            state=args.state, restart=args.restart, repair_plan=args.repair_plan, repair=args.repair,
            part_size=args.part_size, keep_extra=args.keep_extra, max_differences=args.max_differences,
            progress=common.progress(args), on_record=on_record)
    return common.finish(args, report, lambda r: None)  # the readable lines went out as they came
