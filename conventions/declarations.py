"""The `zarr_conventions` array: entry form, identity, and known variants (old URLs and names)."""

from __future__ import annotations

from typing import Any

from .issues import ERROR, INFO, WARNING, Issue, pointer
from .registry import Convention, declared, identify, identities
from .schemas import apply_schema

KEY = "zarr_conventions"
_ENTRY_FIELDS = ("uuid", "schema_url", "spec_url", "name", "description")


def require_declared(attrs: Any, conv: Convention) -> list[Issue]:
    """An error unless some `zarr_conventions` entry identifies as `conv` (by uuid or URL)."""
    if not isinstance(attrs, dict) or declared(attrs, conv):
        return []
    named = _named_only(attrs, conv)
    hint = f"; entry {named} names it but identity is by uuid or URL, never by name" if named is not None else ""
    return [Issue(ERROR, KEY, f"{KEY}: no entry declares the {conv.name} convention "
                  f"(uuid {conv.uuid}){hint}", pointer(KEY))]


def validate_zarr_conventions(attrs: Any) -> list[Issue]:
    """Every finding about the `zarr_conventions` array: schema, identity conflicts, variants."""
    issues = apply_schema("zarr-conventions", attrs)
    entries = attrs.get(KEY) if isinstance(attrs, dict) else None
    if not isinstance(entries, list):
        return issues
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        issues += _entry_findings(index, entry)
        conv = identify(entry)
        if conv is not None and conv.key in seen:
            issues.append(Issue(WARNING, KEY, f"{KEY}/{index}: declares {conv.name} again "
                                f"(already entry {seen[conv.key]})", pointer(KEY, index)))
        elif conv is not None:
            seen[conv.key] = index
    return issues


def _named_only(attrs: dict, conv: Convention) -> int | None:
    """Index of an unidentified entry whose `name` is one of `conv`'s names, if any."""
    for index, entry in enumerate(attrs.get(KEY) or []):
        if isinstance(entry, dict) and identify(entry) is None and entry.get("name") in conv.names:
            return index
    return None


def _entry_findings(index: int, entry: dict) -> list[Issue]:
    """Identity conflicts, unknown fields, and notes on old-but-accepted URLs and names."""
    where = f"{KEY}/{index}"
    out: list[Issue] = []
    for field in entry:
        if field not in _ENTRY_FIELDS:
            out.append(Issue(WARNING, KEY, f"{where}/{field}: not a field of a convention entry "
                             f"(allowed: {', '.join(_ENTRY_FIELDS)})", pointer(KEY, index, field)))
    conv = identify(entry)
    if conv is None:
        if "uuid" in entry or "schema_url" in entry or "spec_url" in entry:
            out.append(Issue(INFO, KEY, f"{where}: a convention we do not check", pointer(KEY, index)))
        return out
    for field, other in identities(entry).items():
        if other is None:
            out.append(Issue(INFO, KEY, f"{where}/{field}: not a {conv.name} {field} we know "
                             f"(entry identified by its {_first_field(entry)})", pointer(KEY, index, field)))
        elif other is not conv:
            out.append(Issue(WARNING, KEY, f"{where}/{field}: points to {other.name} but the entry is identified "
                             f"as {conv.name} by its {_first_field(entry)}", pointer(KEY, index, field)))
    out += _variant_notes(where, index, entry, conv)
    return out


def _first_field(entry: dict) -> str:
    """The identifying field that decided the entry's identity."""
    return next(f for f in ("uuid", "schema_url", "spec_url") if isinstance(entry.get(f), str) and entry[f].strip())


def _variant_notes(where: str, index: int, entry: dict, conv: Convention) -> list[Issue]:
    """Info notes for accepted but non-current URLs and names of an identified entry."""
    out: list[Issue] = []
    for field, current, known in (("schema_url", conv.schema_url, conv.schema_urls),
                                  ("spec_url", conv.spec_url, conv.spec_urls)):
        url = entry.get(field)
        if not isinstance(url, str) or url == current or url not in known:
            continue
        dead = " (does not resolve)" if url in conv.unresolvable else ""
        out.append(Issue(INFO, KEY, f"{where}/{field}: older {conv.name} URL{dead}; current is {current}",
                         pointer(KEY, index, field)))
    name = entry.get("name")
    if isinstance(name, str) and name != conv.name:
        kind = "an older name" if name in conv.names else "an unfamiliar name"
        out.append(Issue(INFO, KEY, f"{where}/name: {name!r} is {kind} of {conv.name!r} (informative only)",
                         pointer(KEY, index, "name")))
    return out
