"""What every verb of the command line shares: exit codes, value parsers, the S3, worker and output options (one
meaning per flag name across verbs), deprecated spellings, and the output helpers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from transcode.api.keywords import DEFAULT_WORKERS
from transcode.errors import DeprecatedSpellingWarning
from transcode.mirrors.report import human_bytes as mb  # noqa: F401 - the byte sizes of every report
from transcode.storage.settings import DEPRECATED_NAMES, settings

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEPRECATED_GROUP = "deprecated spellings (still accepted in this release, with a warning naming the new one)"


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as one clear line and exit code 2."""

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# ------------------------------------------------------------------ values

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


def parse_int_list(text: str) -> list[int]:
    """'4,16' -> [4, 16] (the order and repeats are kept: the verb checks them)."""
    try:
        values = [int(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers like 4,16: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    return values


def _int_at_least(text: str, low: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}: {n}")
    return n


def positive_int(text: str) -> int:
    """1, 2, 3, ..."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """0, 1, 2, ..."""
    return _int_at_least(text, 0)


# ------------------------------------------------------------------ deprecated spellings

class DeprecatedAlias(argparse.Action):
    """An old flag: stores into the new flag's destination and warns, naming the new flag and what changed."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", change: str = "same meaning",
                 **kw: Any) -> None:
        self.new, self.change = new, change
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        DeprecatedSpellingWarning.issue(str(option_string), self.new, self.change)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def deprecated_flag(p: argparse.ArgumentParser, old: str, new: str, dest: str, change: str = "same meaning",
                    **kw: Any) -> None:
    """Accept `old` as a spelling of `new` for one release (listed in --help under the deprecated spellings)."""
    group = next((g for g in p._action_groups if g.title == DEPRECATED_GROUP), None) \
        or p.add_argument_group(DEPRECATED_GROUP)
    group.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, change=change,
                       help=f"old spelling of {new} ({change}); no default of its own", **kw)


# ------------------------------------------------------------------ verbs and shared options

def add_verb(sub: argparse._SubParsersAction, name: str, summary: str, description: str, ok: str,
             problems: str | None, before: str = "") -> argparse.ArgumentParser:
    """A verb's parser; its epilog states the exit codes (0 `ok`, 1 `problems`, 2 usage, 130 interrupted)."""
    codes = f"0 {ok}, " + (f"1 {problems}, " if problems else "") + "2 usage error or unusable input, 130 interrupted"
    return sub.add_parser(name, help=summary, description=description, epilog=f"{before}Exit codes: {codes}.")


def add_source_argument(p: argparse.ArgumentParser) -> None:
    """The SOURCE positional: a legacy archive."""
    p.add_argument("source", metavar="SOURCE", help="archive root: a directory or s3://bucket/prefix")


def add_store_argument(p: argparse.ArgumentParser) -> None:
    """The STORE positional: a Zarr store."""
    p.add_argument("store", metavar="STORE", help="store root: a directory or s3://bucket/prefix")


def add_s3_options(p: argparse.ArgumentParser, side: str = "", what: str = "the source",
                   writes: bool = False) -> None:
    """The S3 settings of one side (`side` 'source' or 'store' prefixes each flag on verbs with two sides)."""
    prefix = f"{side}-" if side else ""
    g = p.add_argument_group(f"S3 options for {what} (credentials come from the usual AWS sources)")
    for s in settings(writes):
        if s.is_flag:
            g.add_argument(f"--{prefix}{s.name}", action="store_true", help=s.help)
        else:
            g.add_argument(f"--{prefix}{s.name}", metavar=s.metavar, help=s.help)
    for old, new in DEPRECATED_NAMES.items():
        deprecated_flag(p, f"--{prefix}{old}", f"--{prefix}{new}", f"{prefix}{new}".replace("-", "_"),
                        metavar="NAME")


def s3_keywords(args: argparse.Namespace, side: str = "", writes: bool = False) -> dict[str, Any]:
    """The API keywords of the S3 flags `add_s3_options` added: the flag's name with '_' for '-'."""
    prefix = f"{side}_" if side else ""
    return {prefix + s.keyword: getattr(args, prefix + s.keyword) for s in settings(writes)}


def add_workers(p: argparse.ArgumentParser, what: str) -> None:
    """`--workers N`: worker processes, the same default in every verb."""
    p.add_argument("--workers", type=positive_int, default=DEFAULT_WORKERS, metavar="N",
                   help=f"worker processes for {what} (default {DEFAULT_WORKERS})")


def add_selection_options(p: argparse.ArgumentParser, years_required: bool = False) -> None:
    """`--years`, `--zones`."""
    p.add_argument("--years", type=parse_years, metavar="LIST", required=years_required,
                   help="only these years, e.g. 2017-2020,2024 " + ("(required)" if years_required else
                                                                   "(default: every year)"))
    p.add_argument("--zones", type=parse_zones, metavar="LIST", help="only these UTM zones, e.g. 30,31 "
                   "(default: every zone)")


def add_layout_options(p: argparse.ArgumentParser) -> None:
    """`--shard-size`, `--chunk-size`."""
    p.add_argument("--shard-size", type=parse_size2, metavar="HxW",
                   help="shard size in pixels (default: an existing store's, else 4096)")
    p.add_argument("--chunk-size", type=parse_size2, metavar="HxW",
                   help="inner chunk size in pixels (default: an existing store's, else 32)")


def add_dataset_option(p: argparse.ArgumentParser) -> None:
    """`--dataset-version VERSION[-VARIANT]`."""
    p.add_argument("--dataset-version", metavar="VERSION[-VARIANT]",
                   help="the source's dataset, e.g. 1.1 or v2-vultr, when the archive does not say it or says it "
                   "wrong; recorded as overridden (default: what the archive says)")


def dataset_line(dataset: Any) -> str:
    """The dataset of a source, for a readable report."""
    if dataset.overridden:
        return f"{dataset.label}, given with --dataset-version (overridden)"
    if not dataset.known:
        return "unknown (no tessera_metadata.json, no npy/<dataset> name, no version in manifest.parquet)"
    return f"{dataset.label}, from {dataset.source}" + ("  (MIXED: see problems)" if dataset.conflicts else "")


def add_inventory_option(p: argparse.ArgumentParser) -> None:
    """`--inventory PATH`."""
    p.add_argument("--inventory", metavar="PATH",
                   help="reuse a Parquet inventory instead of listing SOURCE (default: list SOURCE now)")


def add_output_options(p: argparse.ArgumentParser, progress: bool = True) -> None:
    """`--json` (one document on stdout when the command ends) and `--no-progress`."""
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout when the command ends, instead of a readable report "
                   "(default: off)")
    if progress:
        p.add_argument("--no-progress", action="store_true",
                       help="no progress bars on stderr (default: bars when stderr is a terminal)")


def progress(args: argparse.Namespace) -> bool:
    """Progress bars on stderr: only on a terminal, and not with --no-progress."""
    return not args.no_progress and sys.stderr.isatty()


# ------------------------------------------------------------------ output

def print_json(doc: dict) -> None:
    """The one JSON document of `--json`."""
    print(json.dumps(doc, indent=2))


def exit_code(report: Any) -> int:
    """0 when the report is ok, 1 when it found problems."""
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def finish(args: argparse.Namespace, report: Any, text: Callable[[Any], None]) -> int:
    """Print the report (`--json`: its one document; else `text(report)`), and its exit code."""
    if args.json:
        print_json(report.to_json())
    else:
        text(report)
    return exit_code(report)


def duration(seconds: float) -> str:
    """90 -> '1.5 min'."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} s"


def problem_line(p: Any, width: int = 14) -> str:
    """One problem (skipped or clipped tile, inventory problem) as an indented line."""
    return f"  {p.severity:7s} {p.kind:{width}s} {p.path}: {p.message}"
