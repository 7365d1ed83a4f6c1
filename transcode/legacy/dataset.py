"""Which dataset (version and variant) a legacy tree holds (FORMATS.md §1.5), and whether two agree."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from transcode.errors import ArchiveError, UsageError

METADATA_FILE = "tessera_metadata.json"
DEFAULT_VARIANT = "vultr"
# short variant suffixes of published npy/<dataset> directory names and the variant they stand for
_VARIANT_ALIASES = {"cam": "cambridge"}
_DIR_RE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:-(.+))?$")


@dataclass(frozen=True)
class Claim:
    """What one place in the tree says the dataset is."""

    where: str
    version: str
    variant: str


@dataclass(frozen=True)
class Dataset:
    """A source's dataset: version ('1.0', '1.1', '2.0', ...) and variant, where it was read, and whether the
    user overrode it; `conflicts` lists the claims of a tree that mixes datasets."""

    version: str | None
    variant: str | None
    source: str
    overridden: bool = False
    claims: tuple[Claim, ...] = field(default_factory=tuple)
    conflicts: tuple[Claim, ...] = field(default_factory=tuple)

    @property
    def known(self) -> bool:
        return self.version is not None

    @property
    def label(self) -> str:
        """'1.1 (cambridge)', or 'unknown'."""
        return f"{self.version} ({self.variant})" if self.known else "unknown"

    @property
    def needs_landmask(self) -> bool:
        """v1/v1.1 tiles are masked by landmasks; from v2 on every pixel of a present tile is data."""
        return not self.known or int(str(self.version).split(".")[0]) < 2

    def record(self) -> dict:
        """What a store's settings keep of it (compared by a later run)."""
        return {"version": self.version, "variant": self.variant, "overridden": self.overridden}

    def to_dict(self) -> dict:
        """JSON-ready: the record plus where it was read and every claim."""
        d = self.record()
        d["source"] = self.source
        d["claims"] = [asdict(c) for c in self.claims]
        d["conflicts"] = [asdict(c) for c in self.conflicts]
        return d

    @classmethod
    def from_dict(cls, d: object) -> Dataset:
        """Inverse of `to_dict` (an inventory written before datasets were recorded reads as unknown); ValueError
        naming the field that is not what `to_dict` writes."""
        if d is None or d == {}:
            return cls(None, None, "unknown")
        if not isinstance(d, dict):
            raise ValueError(f"dataset: an object expected, got {d!r:.60}")  # noqa: TRY004 (a bad value, as below)
        version, variant = d.get("version"), d.get("variant")
        if (version is None) != (variant is None) or version is not None and (
                not isinstance(version, str) or not isinstance(variant, str) or _normal(version) != version):
            raise ValueError(f"dataset: version {version!r:.40} and variant {variant!r:.40} are not a dataset")
        source, overridden = d.get("source", "unknown"), d.get("overridden", False)
        if not isinstance(source, str) or not isinstance(overridden, bool):
            raise ValueError("dataset: 'source' must be a string and 'overridden' true or false")  # noqa: TRY004
        return cls(version, variant, source, overridden, _claims(d, "claims"), _claims(d, "conflicts"))

    def same_as(self, other: dict | Dataset) -> bool:
        """True when both name the same version and variant."""
        o = other.record() if isinstance(other, Dataset) else other
        return (self.version, self.variant) == (o.get("version"), o.get("variant"))


def _normal(version: str) -> str | None:
    """The version as `normalize_version` writes it, None when it is not one."""
    try:
        return normalize_version(version)
    except ValueError:
        return None


def _claims(d: dict, name: str) -> tuple[Claim, ...]:
    """A dataset record's list of claims; ValueError when it is not one."""
    items = d.get(name, [])
    fields = set(Claim.__dataclass_fields__)
    if not isinstance(items, list) or not all(
            isinstance(c, dict) and set(c) == fields and all(isinstance(v, str) for v in c.values()) for c in items):
        raise ValueError(f"dataset: {name!r} must be a list of claims ({', '.join(sorted(fields))}: strings)")
    return tuple(Claim(**c) for c in items)


def normalize_version(text: str) -> str:
    """'v1', '1', '1.0', 'v1.0' -> '1.0'; 'v1.1' -> '1.1'; ValueError otherwise."""
    m = _DIR_RE.match(str(text).strip())
    if not m or m.group(3):
        raise ValueError(f"not a dataset version like 1.0, v1.1 or 2.0: {text!r}")
    return f"{int(m.group(1))}.{int(m.group(2) or 0)}"


def normalize_variant(text: str | None) -> str:
    """A variant name as the trees spell it, with published short suffixes expanded ('cam' -> 'cambridge')."""
    text = (text or "").strip()
    return _VARIANT_ALIASES.get(text, text) or DEFAULT_VARIANT


def parse_dataset_name(text: str) -> tuple[str, str]:
    """A dataset directory name or `--dataset-version` value -> (version, variant):
    'v1' -> ('1.0', 'vultr'), 'v1.1-cam' -> ('1.1', 'cambridge'), '2.0-vultr' -> ('2.0', 'vultr')."""
    m = _DIR_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"not a dataset name like v1, v1.1, 1.1-cambridge or v2-vultr: {text!r}")
    return f"{int(m.group(1))}.{int(m.group(2) or 0)}", normalize_variant(m.group(3))


def parse_override(text: str) -> tuple[str, str]:
    """The `--dataset-version` value, as a usage error when it is not a dataset name."""
    try:
        return parse_dataset_name(text)
    except ValueError as e:
        raise UsageError("--dataset-version", str(e)) from None


def metadata_claim(where: str, data: bytes) -> Claim:
    """The claim of a `tessera_metadata.json` (dataset_version, dataset_variant)."""
    try:
        doc = json.loads(data)
        version = normalize_version(doc["dataset_version"])
    except (ValueError, KeyError, TypeError) as e:
        raise ArchiveError(where, f"not a usable dataset description (needs dataset_version): {e}") from e
    return Claim(where, version, normalize_variant(doc.get("dataset_variant")))


def resolve(claims: list[Claim], override: str | None) -> Dataset:
    """The dataset of a tree from every claim found in it and an optional user override."""
    claims_t = tuple(claims)
    if override is not None:
        version, variant = parse_override(override)
        return Dataset(version, variant, "--dataset-version", True, claims_t)
    if not claims:
        return Dataset(None, None, "unknown")
    first = claims[0]
    conflicts = tuple(c for c in claims if (c.version, c.variant) != (first.version, first.variant))
    return Dataset(first.version, first.variant, first.where, False, claims_t,
                   (first, *conflicts) if conflicts else ())
