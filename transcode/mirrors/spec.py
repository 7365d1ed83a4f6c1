"""Mirror specifications: `[NAME=]URL` arguments, `NAME:KEY=VALUE` options and a TOML/JSON mirrors file."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from transcode.errors import UsageError
from transcode.storage import S3Options, Storage, open_storage

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MiB = 1024 * 1024
# option name -> (S3Options field or "part_size", kind)
OPTION_KEYS = {
    "endpoint-url": ("endpoint_url", str), "endpoint": ("endpoint_url", str), "region": ("region", str),
    "profile": ("profile", str), "anonymous": ("anonymous", bool), "path-style": ("path_style", bool),
    "ca-bundle": ("ca_bundle", str), "part-size": ("part_size", int), "acl": ("acl", str),
    "requester-pays": ("requester_pays", bool),
}
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


def non_negative_int(text: str) -> int:
    """argparse type: 0, 1, 2, ..."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {n}")
    return n


def allow_intermixed(parser) -> None:
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


def _bool(text: str, where: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise UsageError(where, f"not a yes/no value: {text!r}")


def _apply(values: dict, key: str, value, where: str) -> None:
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
    out = []
    for name, body in table.items():
        where = f"{path}: mirrors.{name}"
        if not isinstance(body, dict) or "url" not in body:
            raise UsageError(where, "each mirror needs a 'url'")
        values: dict = {}
        for k, v in body.items():
            if k != "url":
                _apply(values, k.replace("_", "-"), v, where)
        out.append(_make(str(name), str(body["url"]), values, where))
    return out


def parse_mirrors(args: list[str], options: list[str] | None = None, mirrors_file: str | None = None) -> list[Mirror]:
    """Mirrors from the command line: a mirrors file (all of it, or the names given as arguments), then
    `[NAME=]URL` arguments (unnamed ones are m1, m2, ... by position), then `NAME:KEY=VALUE` options."""
    from_file = load_mirrors_file(mirrors_file) if mirrors_file else []
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
    for opt in options or []:
        where = f"--mirror-option {opt}"
        name, sep, rest = opt.partition(":")
        if not sep or not rest:
            raise UsageError(where, "expected NAME:KEY=VALUE, e.g. ceph:endpoint-url=https://rgw.example.org")
        if name not in index:
            raise UsageError(where, f"no mirror named {name!r} (mirrors: {', '.join(names) or 'none'})")
        key, eq, value = rest.partition("=")
        if not eq:
            value = "true"  # a bare flag such as `aws:anonymous`
        values = pending.setdefault(index[name], {})
        _apply(values, key.strip(), value, where)
    for i, values in pending.items():
        m = mirrors[i]
        current = {k: v for k, v in m.options.__dict__.items() if v not in (None, False)}
        if m.part_size:
            current["part_size"] = m.part_size
        mirrors[i] = _make(m.name, m.url, {**current, **values}, "--mirror-option")
    return mirrors
