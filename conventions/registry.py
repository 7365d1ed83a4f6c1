"""The conventions we know: uuids, current URLs, every accepted variant; identity by uuid or URL.

Current (canonical) URLs are the ones we write:
- geoemb:     the URLs the convention's own README and schema publish (refs/tags/v1); the
              tag does not exist yet, but the published schema pins these URLs with `const`,
              so writing anything else would fail it. Identity is by uuid regardless.
- spatial:, proj:, multiscales: the v0.1 releases under github.com/zarr-conventions
  (proj moved there from zarr-experimental/geo-proj; v0.1 names have no trailing colon), which is what zarr-cm
  writes for them (tests/test_conventions.py checks the entries are equal).

Accepted variants: ours (FORMATS.md §3) plus every URL zarr-cm knows for the three conventions it implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import zarrcm

_RAW = "https://raw.githubusercontent.com"
_GH = "https://github.com"

# geo-embeddings/embeddings-zarr-convention commit that others pin to (it resolves; v1 does not).
_GEOEMB_COMMIT = "0655212938f36351245dbd3e5e8868f811d43663"


@dataclass(frozen=True)
class Convention:
    """One known convention: identity, what we write, and the variants real stores carry."""

    key: str  # our short name: "geoemb", "spatial", "proj", "multiscales"
    uuid: str
    name: str  # canonical `name` we write
    description: str
    schema_url: str  # canonical
    spec_url: str  # canonical
    schema_urls: frozenset[str]  # every accepted schema_url, canonical included
    spec_urls: frozenset[str]  # every accepted spec_url, canonical included
    names: frozenset[str]  # every known `name` (informative only, never identifying)
    unresolvable: frozenset[str]  # known URLs that do not resolve (e.g. refs/tags/v1)
    prefix: str  # attribute key prefix ("geoemb:") or the single key ("multiscales")


def _schema_url(repo: str, ref: str) -> str:
    """The raw.githubusercontent schema URL of `repo` at tag `ref` ("main": the main branch)."""
    return f"{_RAW}/{repo}/main/schema.json" if ref == "main" else f"{_RAW}/{repo}/refs/tags/{ref}/schema.json"


def _spec_url(repo: str, ref: str) -> str:
    """The github.com README URL of `repo` at tag or branch `ref`."""
    return f"{_GH}/{repo}/blob/{ref}/README.md"


def _convention(key: str, uuid: str, name: str, description: str, prefix: str,
                current: tuple[str, str], published: dict[str, tuple[str, ...]], names: tuple[str, ...],
                extra: tuple[tuple[str, str], ...] = ()) -> Convention:
    """Assemble a Convention from (repository, ref) pairs: the current one and every one published.

    Every repository also gets its main-branch URLs; `extra` adds explicit (schema_url, spec_url)
    pairs; zarr-cm's known URLs are added for the conventions it implements; URLs of tags named "v1"
    are recorded as unresolvable (docs/format.md, "Conventions": no v1 tag exists).
    """
    pairs = [(repo, ref) for repo, refs in published.items() for ref in (*refs, "main")]
    schema_urls = {_schema_url(repo, ref) for repo, ref in pairs} | {s for s, _ in extra}
    schema_urls |= {f"{_RAW}/{repo}/refs/heads/main/schema.json" for repo in published}
    spec_urls = {_spec_url(repo, ref) for repo, ref in pairs} | {s for _, s in extra}
    if key in zarrcm.WRITTEN:
        library_schema_urls, library_spec_urls = zarrcm.known_urls(key)
        schema_urls |= library_schema_urls
        spec_urls |= library_spec_urls
    dead = {url for url in schema_urls | spec_urls if "/refs/tags/v1/" in url or "/blob/v1/" in url}
    conv = Convention(key=key, uuid=uuid, name=name, description=description,
                      schema_url=_schema_url(*current), spec_url=_spec_url(*current),
                      schema_urls=frozenset(schema_urls), spec_urls=frozenset(spec_urls),
                      names=frozenset(names), unresolvable=frozenset(dead), prefix=prefix)
    assert conv.schema_url in conv.schema_urls and conv.spec_url in conv.spec_urls and name in conv.names
    return conv


_GEOEMB_REPO = "geo-embeddings/embeddings-zarr-convention"
GEOEMB = _convention(
    "geoemb", "61c12cc5-0e28-4056-999a-480cf3fb7e4c", "geoemb:",
    "Geoembeddings convention for geospatial embedding arrays with model provenance", "geoemb:",
    (_GEOEMB_REPO, "v1"), {_GEOEMB_REPO: ("v1",)}, ("geoemb:", "geoemb"),
    extra=((f"{_RAW}/{_GEOEMB_REPO}/{_GEOEMB_COMMIT}/schema.json", _spec_url(_GEOEMB_REPO, _GEOEMB_COMMIT)),),
)
SPATIAL = _convention(
    "spatial", "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4", "spatial", "Spatial coordinate information", "spatial:",
    ("zarr-conventions/spatial", "v0.1"), {"zarr-conventions/spatial": ("v0.1", "v1")}, ("spatial", "spatial:"),
)
PROJ = _convention(
    "proj", "f17cb550-5864-4468-aeb7-f3180cfb622f", "proj",
    "Coordinate reference system information for geospatial data", "proj:",
    ("zarr-conventions/proj", "v0.1"),
    {"zarr-conventions/proj": ("v0.1",),  # current home
     "zarr-conventions/geo-proj": ("v1", "v0.1.0"),  # transferred, not yet renamed
     "zarr-experimental/geo-proj": ("v1", "v0")},  # original home
    ("proj", "proj:", "geo-proj"),
)
MULTISCALES = _convention(
    "multiscales", "d35379db-88df-4056-af3a-620245f8e347", "multiscales", "Multiscale layout of zarr datasets",
    "multiscales", ("zarr-conventions/multiscales", "v0.1"),
    {"zarr-conventions/multiscales": ("v0.1", "v0.1.0", "v1", "v0")}, ("multiscales",),
)

CONVENTIONS: tuple[Convention, ...] = (GEOEMB, SPATIAL, PROJ, MULTISCALES)
_BY_UUID = {c.uuid: c for c in CONVENTIONS}


def _text(entry: dict, field: str) -> str | None:
    """The stripped string value of `field`, or None when absent or not a string."""
    value = entry.get(field)
    return value.strip() if isinstance(value, str) and value.strip() else None


def identify(entry: Any) -> Convention | None:
    """The convention a `zarr_conventions` entry declares: by uuid, else schema_url, else spec_url.

    A uuid we do not know identifies some other convention (None); `name` alone never identifies.
    """
    if not isinstance(entry, dict):
        return None
    uuid = _text(entry, "uuid")
    if uuid is not None:
        return _BY_UUID.get(uuid.lower())
    schema_url = _text(entry, "schema_url")
    if schema_url is not None:
        return next((c for c in CONVENTIONS if schema_url in c.schema_urls), None)
    spec_url = _text(entry, "spec_url")
    if spec_url is not None:
        return next((c for c in CONVENTIONS if spec_url in c.spec_urls), None)
    return None


def identities(entry: dict) -> dict[str, Convention | None]:
    """What each identifying field present in `entry` alone points to (to spot conflicts)."""
    found: dict[str, Convention | None] = {}
    for field in ("uuid", "schema_url", "spec_url"):
        value = _text(entry, field)
        if value is not None:
            found[field] = identify({field: value})
    return found


def get(key: str) -> Convention:
    """Our own convention by short name or any of its names ("proj", "proj:", "geo-proj")."""
    for conv in CONVENTIONS:
        if key == conv.key or key in conv.names:
            return conv
    raise KeyError(f"unknown convention {key!r}; known: {', '.join(c.key for c in CONVENTIONS)}")


def conventions_entry(name: str) -> dict:
    """The `zarr_conventions` entry we write for convention `name` (a fresh dict)."""
    conv = get(name)
    return {"uuid": conv.uuid, "schema_url": conv.schema_url, "spec_url": conv.spec_url,
            "name": conv.name, "description": conv.description}


def declared(attrs: dict, conv: Convention) -> list[int]:
    """Indices of the `zarr_conventions` entries of `attrs` that identify as `conv`."""
    entries = attrs.get("zarr_conventions") if isinstance(attrs, dict) else None
    if not isinstance(entries, list):
        return []
    return [i for i, entry in enumerate(entries) if identify(entry) is conv]
