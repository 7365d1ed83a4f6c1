"""The keyword rule of the Python API: every flag `--some-name` of a verb is the keyword `some_name` of its
function, with the same meaning and unit; S3 settings included (`endpoint_url=`, `store_acl=`, ...). Old
spellings are accepted for one release with a DeprecatedSpellingWarning naming the new one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from transcode.errors import DeprecatedSpellingWarning, UsageError
from transcode.storage.base import S3Options
from transcode.storage.settings import DEPRECATED_NAMES, settings

MiB = 1024 * 1024
DEFAULT_WORKERS = 1  # worker processes, in every verb that has them (convert, extend, validate)


def renamed(given: dict[str, Any], old: str, new: str, value: Any, default: Any, verb: str,
            change: str = "same meaning") -> Any:
    """The value of keyword `new`, taking it from the deprecated keyword `old` (popped from `given`) if that
    was used instead."""
    if old not in given:
        return value
    old_value = given.pop(old)
    DeprecatedSpellingWarning.issue(f"{verb}({old}=...)", f"{new}=", change)
    if value != default and value != old_value:
        raise TypeError(f"{verb}() got both {old}= (deprecated) and {new}=")
    return old_value


def s3_options(given: dict[str, Any], verb: str, side: str = "", writes: bool = False) -> S3Options:
    """The S3Options of one side from its keywords (popped from `given`): `endpoint_url`, `aws_profile`, ...,
    prefixed with `side` + '_' on verbs with two sides; `acl` only on a side that writes."""
    prefix = f"{side}_" if side else ""
    for old, new in DEPRECATED_NAMES.items():
        old_kw, new_kw = prefix + old.replace("-", "_"), prefix + new.replace("-", "_")
        if old_kw in given:
            given[new_kw] = renamed(given, old_kw, new_kw, given.get(new_kw), None, verb)
    values: dict[str, Any] = {}
    for s in settings(writes):
        keyword = prefix + s.keyword
        value = given.pop(keyword, None)
        if value is None:
            continue
        if s.is_flag and not isinstance(value, bool):
            raise UsageError(f"{verb}({keyword}=...)", f"wants True or False, not {value!r}")
        if not s.is_flag and not isinstance(value, str):
            raise UsageError(f"{verb}({keyword}=...)", f"wants a string, not {value!r}")
        values[s.field] = value
    return S3Options(**values)


def no_other_keywords(given: Mapping[str, Any], verb: str) -> None:
    """Refuse keywords left over after every known one was taken, as Python does for a misspelt keyword."""
    for name in given:
        raise TypeError(f"{verb}() got an unexpected keyword argument {name!r}")


def positive(value: Any, flag: str) -> None:
    """Counts (workers, concurrency, samples, ...) are whole numbers of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(flag, f"wants a whole number of at least 1, not {value!r}")


def size2(value: int | Iterable[int] | None, flag: str) -> tuple[int, int] | None:
    """`shard_size` / `chunk_size`: one number (square) or (height, width) in pixels."""
    if value is None:
        return None
    parts = [value] if isinstance(value, int) else list(value)
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not all(isinstance(p, int) and p >= 1 for p in parts):
        raise UsageError(flag, f"not a size like 4096 or (4096, 2048): {value!r}")
    return parts[0], parts[1]


def layout(shard_size: Any, chunk_size: Any, defaults: bool = True) -> tuple[Any, Any]:
    """(shard, chunk) in pixels from `shard_size` / `chunk_size`; shards must hold whole inner chunks. Without
    `defaults`, a size not given stays None (convert then takes an existing store's)."""
    from transcode.format.arrays import DEFAULT_CHUNK, DEFAULT_SHARD

    shard, chunk = size2(shard_size, "--shard-size"), size2(chunk_size, "--chunk-size")
    s, c = shard or DEFAULT_SHARD, chunk or DEFAULT_CHUNK
    if s[0] % c[0] or s[1] % c[1]:
        raise UsageError("--shard-size", f"{s} is not a multiple of --chunk-size {c}")
    return (s, c) if defaults else (shard, chunk)


def sorted_list(values: Iterable[int] | None) -> list[int] | None:
    """`years` / `zones`: any collection of whole numbers, as a sorted list without repeats."""
    return sorted(set(values)) if values is not None else None


def int_list(values: Iterable[int] | None, flag: str) -> list[int] | None:
    """A list of whole numbers as given (`depths`), order and repeats kept for the verb to check."""
    if values is None:
        return None
    out = list(values)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in out):
        raise UsageError(flag, f"wants whole numbers, not {out!r}")
    return out


def part_size_bytes(mib: int | None) -> int | None:
    """`part_size` is in MiB, as the flag; S3 parts are at least 5 MiB."""
    if mib is None:
        return None
    if not isinstance(mib, int) or mib < 5:
        raise UsageError("--part-size", f"S3 multipart parts are a whole number of MiB, at least 5: {mib!r}")
    return mib * MiB


def codec_list(codecs: str | Mapping[str, str] | Iterable[str] | None) -> list[str] | None:
    """`codecs`: one spec for both arrays, {array: spec}, or the `--codec [ARRAY=]SPEC` items."""
    if codecs is None:
        return None
    if isinstance(codecs, str):
        return [codecs]
    if isinstance(codecs, Mapping):
        return [f"{array}={spec}" for array, spec in codecs.items()]
    return [str(c) for c in codecs]


def inside(path: str | Path, root: str) -> bool:
    """True when a local `path` lies inside the local directory `root` (never for s3:// on either side)."""
    if str(root).startswith("s3://") or str(path).startswith("s3://"):
        return False
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True
