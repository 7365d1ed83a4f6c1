"""Mirror specifications: `[NAME=]URL` arguments, `NAME:KEY=VALUE` options and a TOML/JSON mirrors file."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from transcode.errors import DeprecatedSpellingWarning, UsageError
from transcode.storage import S3Options, Storage, open_storage
from transcode.storage.settings import DEPRECATED_NAMES, settings

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MiB = 1024 * 1024
# option name -> (S3Options field or "part_size", kind): the S3 settings of every verb, plus the part size
OPTION_KEYS = {s.name: (s.field, bool if s.is_flag else str) for s in settings(writes=True)}
OPTION_KEYS["part-size"] = ("part_size", int)
# old option names -> the ones that replaced them (same meaning)
OLD_OPTION_KEYS = {**DEPRECATED_NAMES, "endpoint": "endpoint-url"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Mirror:
    """One named copy of the store: a local directory or an s3://bucket/prefix with its own S3 settings."""

    name: str
    url: str
    options: S3Options = field(default_factory=S3Options)
    part_size: int | None = None  # declared multipart part size (bytes) of every multipart object on it

    @property
    def is_s3(self) -> bool:
        """True for an s3:// mirror."""
        return self.url.startswith("s3://")

    def open(self, max_attempts: int | None = None, timeout: float | None = None,
             max_connections: int | None = None) -> Storage:
        """The mirror as a Storage (S3 clients get the run's retry, timeout and pool settings)."""
        opts = self.options
        if self.is_s3:
            opts = replace(opts, max_attempts=max_attempts or opts.max_attempts, timeout=timeout or opts.timeout,
                           max_connections=max_connections or opts.max_connections)
        return open_storage(self.url, opts)

    def describe(self) -> dict:
        """JSON-able description (for reports and the checkpoint fingerprint); no credentials are involved."""
        o = self.options
        d = {"name": self.name, "url": self.url}
        if self.is_s3:
            d.update({"endpoint_url": o.endpoint_url, "region": o.region, "profile": o.profile,
                      "anonymous": o.anonymous, "path_style": o.path_style})
            d.update({k: v for k, v in (("acl", o.acl), ("requester_pays", o.requester_pays)) if v})
        if self.part_size:
            d["part_size"] = self.part_size
        return d


def _bool(text: str, where: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise UsageError(where, f"not a yes/no value: {text!r}")


def _apply(values: dict, key: str, value, where: str) -> None:
    if key in OLD_OPTION_KEYS:
        DeprecatedSpellingWarning.issue(f"mirror option {key!r} ({where})", repr(OLD_OPTION_KEYS[key]))
        key = OLD_OPTION_KEYS[key]
    if key not in OPTION_KEYS:
        raise UsageError(where, f"unknown mirror option {key!r} (known: {', '.join(sorted(OPTION_KEYS))})")
    attr, kind = OPTION_KEYS[key]
    if kind is bool:
        value = value if isinstance(value, bool) else _bool(str(value), where)
    elif kind is int:
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise UsageError(where, f"{key} wants a whole number of MiB, not {value!r}") from None
        if value < 5:
            raise UsageError(where, f"{key} is in MiB and S3 parts are at least 5 MiB, not {value}")
        value *= MiB
    elif not isinstance(value, str) or not value:
        raise UsageError(where, f"{key} wants a non-empty string, not {value!r}")
    values[attr] = value


def _make(name: str, url: str, values: dict, where: str) -> Mirror:
    if not NAME_RE.match(name):
        raise UsageError(where, f"mirror name {name!r} must be letters, digits, '-' or '_' (up to 64)")
    if not url:
        raise UsageError(where, f"mirror {name!r} has no URL")
    if "://" in url and not url.startswith("s3://"):
        raise UsageError(where, f"mirror {name!r}: unsupported URL {url!r} (a local path or s3://bucket/prefix)")
    if url.startswith("s3://") and not url[5:].split("/", 1)[0]:
        raise UsageError(where, f"mirror {name!r}: an S3 URL needs a bucket: s3://bucket/prefix")
    values = dict(values)
    part_size = values.pop("part_size", None)
    if values and not url.startswith("s3://"):
        raise UsageError(where, f"mirror {name!r} is a local path: S3 options ({', '.join(values)}) do not apply")
    return Mirror(name, url, S3Options(**values), part_size)


def load_mirrors_file(path: str) -> list[Mirror]:
    """Mirrors named in a TOML (or, by extension, JSON) file: `[mirrors.NAME]` tables with `url` and options."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UsageError(path, f"cannot read the mirrors file: {e.strerror or e}") from e
    try:
        doc = json.loads(raw) if p.suffix.lower() == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(path, f"not a valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'} mirrors file: {e}")
    table = doc.get("mirrors") if isinstance(doc, dict) else None
    if not isinstance(table, dict) or not table:
        raise UsageError(path, "a mirrors file needs a non-empty 'mirrors' table: [mirrors.NAME] url = ...")
    return mirrors_from_table(table, f"{path}: mirrors")


def mirrors_from_table(table: Mapping[str, Mapping | str], where: str) -> list[Mirror]:
    """Mirrors from {NAME: URL} or {NAME: {"url": URL, KEY: VALUE, ...}} (a mirrors file's table, or the API's)."""
    out = []
    for name, body in table.items():
        here = f"{where}.{name}"
        body = {"url": body} if isinstance(body, str) else body
        if not isinstance(body, Mapping) or "url" not in body:
            raise UsageError(here, "each mirror needs a 'url'")
        values: dict = {}
        for k, v in body.items():
            if k != "url":
                _apply(values, k.replace("_", "-"), v, here)
        out.append(_make(str(name), str(body["url"]), values, here))
    return out


def _option_items(options: Sequence[str] | Mapping[str, Mapping] | None) -> list[tuple[str, str, str, object]]:
    """(where, mirror name, key, value) of `NAME:KEY=VALUE` strings (a bare `NAME:KEY` is a yes) or of
    {NAME: {KEY: VALUE}}."""
    if isinstance(options, Mapping):
        return [(f"mirror_options[{name!r}]", name, str(key).replace("_", "-"), value)
                for name, values in options.items() for key, value in values.items()]
    items = []
    for opt in options or []:
        where = f"--mirror-option {opt}"
        name, sep, rest = opt.partition(":")
        if not sep or not rest:
            raise UsageError(where, "expected NAME:KEY=VALUE, e.g. ceph:endpoint-url=https://rgw.example.org")
        key, eq, value = rest.partition("=")
        items.append((where, name, key.strip(), value if eq else "true"))
    return items


def parse_mirrors(args: Sequence[str], options: Sequence[str] | Mapping[str, Mapping] | None = None,
                  mirrors_file: str | None = None, table: Mapping[str, Mapping | str] | None = None) -> list[Mirror]:
    """Mirrors from a mirrors file and/or a `table` like one (all of them, or the names given as arguments), then
    `[NAME=]URL` arguments (unnamed ones are m1, m2, ... by position), then the options of named mirrors."""
    from_file = load_mirrors_file(mirrors_file) if mirrors_file else []
    from_file += mirrors_from_table(table, "mirrors") if table else []
    by_name = {m.name: m for m in from_file}
    chosen: list[Mirror] = []
    inline: list[str] = []
    for a in args:
        if a in by_name:
            chosen.append(by_name[a])
        else:
            inline.append(a)
    mirrors = list(chosen or from_file)
    for i, a in enumerate(inline, start=len(mirrors) + 1):
        name, sep, url = a.partition("=")
        if not sep or not NAME_RE.match(name) or a.startswith(("s3://", "/", ".")):
            name, url = f"m{i}", a
        mirrors.append(_make(name, url, {}, a))
    names = [m.name for m in mirrors]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError("mirrors", f"mirror names must be unique: {', '.join(dup)} given twice")
    index = {m.name: i for i, m in enumerate(mirrors)}
    pending: dict[int, dict] = {}
    for where, name, key, value in _option_items(options):
        if name not in index:
            raise UsageError(where, f"no mirror named {name!r} (mirrors: {', '.join(names) or 'none'})")
        _apply(pending.setdefault(index[name], {}), key, value, where)
    for i, values in pending.items():
        m = mirrors[i]
        current = {k: v for k, v in m.options.__dict__.items() if v not in (None, False)}
        if m.part_size:
            current["part_size"] = m.part_size
        mirrors[i] = _make(m.name, m.url, {**current, **values}, "--mirror-option")
    return mirrors
