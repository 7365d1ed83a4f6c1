"""The metadata level: every zarr.json is valid Zarr v3, the conventions sit at the right nodes and validate, the
documents agree with each other (spatial: vs arrays, coordinates vs transform, geoemb: vs embeddings), and the
consolidated metadata equals the nodes it summarises. Reads zarr.json objects and the small 1-D coordinate arrays
(time, band, x, y), never a shard."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from transcode.conventions import (
    validate_geoemb,
    validate_multiscales,
    validate_proj,
    validate_spatial,
    validate_zarr_conventions,
)
from transcode.conventions.issues import Issue
from transcode.conventions.registry import GEOEMB, MULTISCALES, PROJ, SPATIAL, identify
from transcode.errors import ObjectNotFoundError, StorageError, TransientStorageError
from transcode.format.arrays import (
    BANDS,
    DEPTH_ARRAY_PREFIX,
    EMBEDDINGS,
    SPATIAL_DIMS,
    STRETCH_ARRAYS,
    STRETCH_SAMPLE,
    STRETCH_SAMPLE_SIZE,
    TIME,
    ArrayDecl,
    Zone,
    depth_array_name,
    depth_of,
    sharded_arrays,
    zone_arrays,
)
from transcode.format.attributes import (
    DEPTHS_ATTR,
    DEPTHS_MIN_VERSION,
    LANDMASK_ATTR,
    REGISTRATION,
    grid_of,
    root_invariants,
    transform_problem,
    zone_crs,
)
from transcode.format.grid import ZoneGrid
from transcode.format.keys import group_zone
from transcode.storage import join_key
from transcode.validate.nodes import Node, StoreView, node_key
from transcode.validate.report import ERROR, INFO, WARNING, Finding, ValidationReport
from transcode.validate.zarrspec import PORTABLE_CODECS, ArraySpec, DecodeError, UnsupportedCodec, _codec, ptr

LEVEL = "metadata"
MAX_COORDINATE = 50_000_000  # 1-D arrays longer than this are not read (400 MB of float64)
ROOT_DOC_WARN_BYTES = 16 * 1024 * 1024
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")

Add = Callable[..., None]


def check_metadata(view: StoreView, profile: str, report: ValidationReport) -> dict[str, dict[str, np.ndarray]]:
    """Run every metadata check; returns the coordinate values read, by group path and array name."""

    def add(severity: str, code: str, key: str, message: str, **kw: Any) -> None:
        report.add(Finding(severity, LEVEL, code, key, message, **kw))

    tessera = profile in ("tessera", "interop")
    for node in sorted(view.nodes.values(), key=lambda n: n.path):
        if node.error is not None:
            add(ERROR, "zarr-json", node.key, node.error)
        for sev, code, pointer, msg in node.problems:
            add(sev, code, node.key, msg, pointer=pointer or None, attribute=_attr_of(pointer))
    for path in view.dirs_without_node:
        parent = view.nodes.get(path.rsplit("/", 1)[0] if "/" in path else "")
        if parent is not None and parent.is_group:
            add(INFO, "no-node", node_key(path), f"directory {path}/ of group /{parent.path} has no zarr.json: "
                "not a node (its objects are orphans)")
    _conventions(view, profile, add)
    coords = _coordinates(view, report, add)
    _spatial_cross_checks(view, coords, add)
    _geoemb_cross_checks(view, profile, add)
    if tessera:
        _tessera_layout(view, coords, add)
    _consolidated(view, profile, add)
    if profile == "interop":
        _portability(view, add)
    return coords


def _attr_of(pointer: str | None) -> str | None:
    """The attribute key a document pointer points into, if any."""
    if pointer and pointer.startswith("/attributes/"):
        return pointer.split("/")[2].replace("~1", "/").replace("~0", "~")
    return None


def _array_ok(node: Node | None) -> bool:
    """An array whose shape (and dimension names, when it has them) the cross-checks can use; the document checks
    report the others (a dimension name per dimension is a rule of the spec)."""
    return (node is not None and node.is_array and node.shape is not None
            and (node.dims is None or len(node.dims) == len(node.shape)))


# ------------------------------------------------------------------------------------------ conventions

def _declared(attrs: dict) -> set[str]:
    entries = attrs.get("zarr_conventions")
    if not isinstance(entries, list):
        return set()
    return {c.key for c in (identify(e) for e in entries) if c is not None}


def _prefixed(attrs: dict) -> set[str]:
    found = set()
    for k in attrs:
        for conv in (GEOEMB, SPATIAL, PROJ):
            if k.startswith(conv.prefix):
                found.add(conv.key)
        if k == MULTISCALES.prefix:
            found.add(MULTISCALES.key)
    return found


def _issue_finding(add: Add, node: Node, issue: Issue, profile: str, code: str = "convention") -> None:
    severity = issue.severity
    if profile == "interop" and severity == INFO and "older" in issue.message and "proj" in issue.key:
        severity, code = WARNING, "portability"
    add(severity, code, node.key, issue.message, attribute=issue.key or None, pointer="/attributes" + issue.pointer)


def _conventions(view: StoreView, profile: str, add: Add) -> None:
    tessera = profile in ("tessera", "interop")
    root = view.nodes[""]
    any_geoemb = False
    for node in sorted(view.nodes.values(), key=lambda n: n.path):
        if not isinstance(node.doc, dict):
            continue
        attrs = node.attrs
        present = _declared(attrs) | _prefixed(attrs)
        required: set[str] = set()
        if tessera and node is root:
            required.add("geoemb")
        if tessera and node.is_group and node.parent == "" and group_zone(node.name) is not None:
            required |= {"proj", "spatial"}
        check = present | required
        issues: list[Issue] = []
        if check or "zarr_conventions" in attrs:
            issues += validate_zarr_conventions(attrs)
        if "geoemb" in check:
            any_geoemb = any_geoemb or node.is_group
            issues += validate_geoemb(attrs)
            if node.is_array:
                add(ERROR, "convention", node.key, "geoemb: attributes belong on a group, not on an array",
                    attribute="zarr_conventions", pointer="/attributes")
            elif tessera and node is not root:
                keys = sorted(k for k in attrs if k.startswith("geoemb:")) or ["zarr_conventions"]
                add(ERROR, "convention", node.key, "geoemb: attributes belong on the root group (docs/format.md, "
                    "'Attributes')", attribute=keys[0], pointer=ptr("attributes", keys[0]))
        if "spatial" in check:
            issues += validate_spatial(attrs, dimension_names=node.dims if node.is_array else None)
            if tessera and node is root:
                add(WARNING, "convention", node.key, "spatial: on the root group: the tessera layout describes each "
                    "UTM zone group instead", attribute="spatial:transform" if "spatial:transform" in attrs else None,
                    pointer="/attributes")
        if "proj" in check:
            issues += validate_proj(attrs)
        if "multiscales" in check:
            issues += validate_multiscales(attrs, node_type="array" if node.is_array else "group")
        for issue in sorted(set(issues), key=lambda i: (i.pointer, i.message)):
            _issue_finding(add, node, issue, profile)
    if profile == "geoemb" and not any_geoemb:
        add(ERROR, "convention", root.key, "no group declares the geoemb: convention "
            f"(uuid {GEOEMB.uuid})", attribute="zarr_conventions", pointer="/attributes")


# ------------------------------------------------------------------------------------------ coordinates

class ChunkUnreadable(DecodeError):
    """A coordinate chunk that cannot be read or decoded; `key` names it."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key


def read_1d(view: StoreView, node: Node) -> np.ndarray:
    """The values of a 1-D, unsharded array (chunk objects read whole; missing chunks are the fill value)."""
    spec = node.spec
    if spec is None or len(spec.shape) != 1 or spec.sharded:
        raise UnsupportedCodec("not a plain 1-D array")
    if spec.shape[0] > MAX_COORDINATE:
        raise UnsupportedCodec(f"{spec.shape[0]} values: too long to read at the metadata level")
    chain = spec.chain()
    out = np.full(spec.shape[0], spec.fill, dtype=spec.dtype)
    n = spec.chunk_shape[0]
    for k in range(spec.grid[0]):
        key = join_key(node.path, spec.chunk_key((k,)))
        try:
            raw = view.storage.read(key)
        except ObjectNotFoundError:
            continue
        except TransientStorageError:
            raise
        except StorageError as e:
            raise ChunkUnreadable(key, e.reason) from e
        view.counters["coordinate_chunks"] += 1
        view.counters["bytes_read"] += len(raw)
        try:
            values = chain.decode(raw)
        except DecodeError as e:
            raise ChunkUnreadable(key, str(e)) from e
        stop = min(spec.shape[0], (k + 1) * n)
        out[k * n:stop] = values[: stop - k * n]
    return out


def _coordinates(view: StoreView, report: ValidationReport, add: Add) -> dict[str, dict[str, np.ndarray]]:
    """Values of the 1-D arrays named like a dimension of their group's arrays (time, band, x, y, ...)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for group in view.groups():
        kids = view.children(group.path)
        dims = {d for k in kids if k.is_array and k.dims for d in k.dims if isinstance(d, str)}
        for k in kids:
            if not (k.is_array and k.dims and len(k.dims) == 1 and k.dims[0] == k.name and k.name in dims):
                continue
            if k.spec is None:
                continue  # its document is broken: already reported
            try:
                out.setdefault(group.path, {})[k.name] = read_1d(view, k)
            except UnsupportedCodec as e:
                add(INFO, "coordinates", k.key, f"coordinate values not checked: {e}")
            except TransientStorageError:
                raise
            except (DecodeError, StorageError) as e:
                key = e.key if isinstance(e, ChunkUnreadable) else k.key
                add(ERROR, "coordinates", key, f"coordinate array {k.name!r} cannot be read: {e}")
    return out


# ------------------------------------------------------------------------------------------ spatial:

def _spatial_ok(attrs: dict) -> tuple[list[str], list[int], list[float]] | None:
    dims, shape, tr = (attrs.get(k) for k in ("spatial:dimensions", "spatial:shape", "spatial:transform"))
    if not (isinstance(dims, list) and len(dims) == 2 and all(isinstance(d, str) for d in dims)):
        return None
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) for v in shape)):
        return None
    if not (isinstance(tr, list) and len(tr) == 6 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                          and math.isfinite(v) for v in tr)):
        return None
    return dims, shape, [float(v) for v in tr]


def _spatial_cross_checks(view: StoreView, coords: dict, add: Add) -> None:
    for group in view.groups() + view.arrays():
        parsed = _spatial_ok(group.attrs)
        if parsed is None:
            continue
        (ydim, xdim), (h, w), (a, b, c, d, e, f) = parsed
        if group.is_array:  # spatial: on an array describes that array's own y/x dimensions
            arrays = [group] if _array_ok(group) and group.dims else []
        else:
            arrays = [k for k in view.children(group.path) if _array_ok(k) and k.dims]
        carriers = [k for k in arrays if ydim in k.dims and xdim in k.dims]
        if arrays and not carriers:
            add(ERROR, "cross-check", group.key, f"spatial:dimensions {[ydim, xdim]} do not both appear in the "
                "dimension_names of any array of the group", attribute="spatial:dimensions",
                pointer="/attributes/spatial:dimensions")
        for k in carriers:
            got = [k.shape[k.dims.index(ydim)], k.shape[k.dims.index(xdim)]]
            if got != [h, w]:
                add(ERROR, "cross-check", group.key, f"spatial:shape {[h, w]} differs from the {ydim}/{xdim} sizes "
                    f"{got} of array {k.path!r}", attribute="spatial:shape", pointer="/attributes/spatial:shape",
                    details={"array": k.key, "array_shape": k.shape})
        for k in arrays:
            if len(k.dims) == 1 and k.dims[0] in (ydim, xdim):
                want = h if k.dims[0] == ydim else w
                if k.shape[0] != want:
                    add(ERROR, "cross-check", k.key, f"coordinate {k.name!r} has {k.shape[0]} values, spatial:shape "
                        f"of /{group.path} says {want}", pointer="/shape")
        reg = group.attrs.get("spatial:registration", "pixel")
        half = 0.5 if reg != "node" else 0.0
        values = coords.get(group.path, {})
        if b == 0 and d == 0:
            for dim, n, scale, origin in ((xdim, w, a, c), (ydim, h, e, f)):
                node = view.child(group.path, dim)
                v = values.get(dim)
                if v is None or node is None or v.dtype.kind not in "fiu" or len(v) != n:
                    continue
                want = origin + (np.arange(n, dtype="float64") + half) * scale
                diff = np.abs(v.astype("float64") - want)
                bad = np.flatnonzero(~(diff <= 1e-6 * max(1.0, abs(scale))))
                if bad.size:
                    i = int(bad[0])
                    chunk = i // node.spec.chunk_shape[0]
                    add(ERROR, "cross-check", join_key(node.path, node.spec.chunk_key((chunk,))),
                        f"{dim} coordinate {i} is {v[i]!r}, the {'pixel centre' if half else 'node'} of the "
                        f"transform is {want[i]!r} ({bad.size} of {n} values differ)", chunk=(chunk,),
                        details={"index": i, "value": float(v[i]), "expected": float(want[i]), "count": int(bad.size)})
        t = values.get("time")
        node = view.child(group.path, "time")
        if t is not None and node is not None:
            if t.dtype.kind not in "iu":
                add(ERROR, "cross-check", node.key, f"time has data type {node.doc.get('data_type')}, not an integer "
                    "type", pointer="/data_type")
            elif len(t) > 1 and not np.all(np.diff(t.astype("int64")) > 0):
                i = int(np.flatnonzero(np.diff(t.astype("int64")) <= 0)[0])
                add(ERROR, "cross-check", join_key(node.path, node.spec.chunk_key((i // node.spec.chunk_shape[0],))),
                    f"time is not strictly increasing: {int(t[i])} then {int(t[i + 1])} at index {i + 1}",
                    details={"index": i + 1})
            for k in arrays:
                if "time" in k.dims and k.dims != ["time"] and k.shape[k.dims.index("time")] != len(t):
                    add(ERROR, "cross-check", k.key, f"time size {k.shape[k.dims.index('time')]} differs from the "
                        f"{len(t)} values of the time coordinate", pointer="/shape")


# ------------------------------------------------------------------------------------------ geoemb:

STRETCH_NAMES = {d.name for d in STRETCH_ARRAYS}


def _band_axis(node: Node, dimensions: int) -> int | None:
    if node.dims and "band" in node.dims:
        return node.dims.index("band")
    hits = [i for i, s in enumerate(node.shape) if s == dimensions]
    return hits[0] if len(hits) == 1 else None


def _geoemb_cross_checks(view: StoreView, profile: str, add: Add) -> None:
    for group in view.groups():
        attrs = group.attrs
        if "geoemb:dimensions" not in attrs and "geoemb:data_type" not in attrs:
            continue
        dims = attrs.get("geoemb:dimensions")
        dims = dims if isinstance(dims, int) and not isinstance(dims, bool) else None
        data_type = attrs.get("geoemb:data_type")
        arrays = [n for n in view.descendants(group.path) if _array_ok(n)]
        if profile in ("tessera", "interop"):
            emb = [n for n in arrays if n.name == EMBEDDINGS.name]
        else:  # the incumbent's stretch statistics have a band axis too, and are no embeddings
            emb = [n for n in arrays if len(n.shape) >= 2 and dims is not None and _band_axis(n, dims) is not None
                   and n.name not in STRETCH_NAMES]
        if not arrays:
            add(INFO, "cross-check", group.key, "no arrays below the geoemb: group: embeddings cross-checks skipped",
                attribute="geoemb:data_type", pointer="/attributes/geoemb:data_type")
            continue
        if not emb:
            add(ERROR if profile != "geoemb" else WARNING, "cross-check", group.key,
                f"no embeddings array below the group (an array with a band axis of geoemb:dimensions = {dims})",
                attribute="geoemb:dimensions", pointer="/attributes/geoemb:dimensions")
            continue
        for e in emb:
            if isinstance(data_type, str) and e.doc.get("data_type") != data_type:
                add(ERROR, "cross-check", group.key, f"geoemb:data_type {data_type!r} differs from the data type "
                    f"{e.doc.get('data_type')!r} of {e.path!r}", attribute="geoemb:data_type",
                    pointer="/attributes/geoemb:data_type", details={"array": e.key})
            axis = _band_axis(e, dims) if dims is not None else None
            if dims is not None and (axis is None or e.shape[axis] != dims):
                add(ERROR, "cross-check", group.key, f"geoemb:dimensions {dims} differs from the band size of "
                    f"{e.path!r} (shape {e.shape}, dimension_names {e.dims})", attribute="geoemb:dimensions",
                    pointer="/attributes/geoemb:dimensions", details={"array": e.key})
            band = view.child(e.parent or "", "band")
            if dims is not None and _array_ok(band) and band.shape != [dims]:
                add(ERROR, "cross-check", band.key, f"band has {band.shape} values, geoemb:dimensions is {dims}",
                    pointer="/shape")
        _quantization(view, group, emb, dims, add)


def _quantization(view: StoreView, group: Node, emb: list[Node], dims: int | None, add: Add) -> None:
    q = group.attrs.get("geoemb:quantization")
    scale = q.get("scale") if isinstance(q, dict) else None
    if not (isinstance(scale, dict) and scale.get("type") == "array"):
        return
    name = scale.get("array_name")
    where = "/attributes/geoemb:quantization/scale/array_name"
    if not isinstance(name, str) or not name:
        return  # the schema already reports it
    for e in emb:
        parent = e.parent or ""
        s = view.nodes.get(join_key(parent, name)) or view.nodes.get(join_key(group.path, name))
        if not _array_ok(s):
            add(ERROR, "cross-check", group.key, f"geoemb:quantization/scale/array_name {name!r} does not resolve to "
                f"an array beside {e.path!r}", attribute="geoemb:quantization", pointer=where,
                details={"array": e.key})
            continue
        axis = _band_axis(e, dims) if dims is not None else None
        want = [v for i, v in enumerate(e.shape) if i != axis] if axis is not None else None
        if want is not None and s.shape != want:
            add(ERROR, "cross-check", s.key, f"scale array {s.path!r} has shape {s.shape}; the embeddings "
                f"{e.path!r} without their band axis are {want}", pointer="/shape",
                details={"embeddings": e.key, "attribute": "geoemb:quantization/scale/array_name"})
        nodata = scale.get("nodata")
        if isinstance(nodata, str | int | float) and not isinstance(nodata, bool) and s.spec is not None:
            try:
                nd = float(nodata)
            except ValueError:
                continue
            fill = float(s.spec.fill) if s.spec.dtype.kind == "f" else None
            if fill is not None and not (nd == fill or (math.isnan(nd) and math.isnan(fill))):
                add(WARNING, "cross-check", s.key, f"fill_value {s.doc.get('fill_value')!r} differs from "
                    f"geoemb:quantization/scale/nodata {nodata!r} of /{group.path}", pointer="/fill_value")


# ------------------------------------------------------------------------------------------ tessera layout

def _tessera_layout(view: StoreView, coords: dict, add: Add) -> None:
    root = view.nodes[""]
    if isinstance(root.doc, dict) and not root.is_group:
        add(ERROR, "layout", root.key, "the root must be a group", pointer="/node_type")
        return
    zones = []
    for kid in view.children(""):
        if kid.is_group and group_zone(kid.name) is not None:
            zones.append(kid)
        else:
            add(WARNING, "layout", kid.key, f"/{kid.path} is not a UTM zone group (utm01..utm60) of the tessera layout")
    if not zones and isinstance(root.doc, dict):
        add(ERROR, "layout", root.key, "no UTM zone groups (utm01..utm60)")
    _root_invariants(root, add)
    depths = _depths(view, root, add)
    times: dict[str, list] = {}
    for z in zones:
        _zone_layout(view, z, coords.get(z.path, {}), add, times, depths)
    if len({tuple(v) for v in times.values()}) > 1:
        first = next(iter(times))
        for path, t in times.items():
            if t != times[first]:
                add(ERROR, "layout", node_key(join_key(path, TIME.name)), f"time axis {t} differs from /{first}'s "
                    f"{times[first]}: every zone shares the store's time axis")


def _root_invariants(root: Node, add: Add) -> None:
    """The root attributes every tessera store has (transcode.format.attributes.ROOT_INVARIANTS)."""
    for path, want in root_invariants().items():
        parts = path.split("/")
        got: Any = root.attrs
        for part in parts[:-1]:
            got = got.get(part) if isinstance(got, dict) else None
        if not isinstance(got, dict) or (len(parts) == 1 and parts[0] not in got):
            continue  # absent or malformed: the geoemb: schema reports it
        got = got.get(parts[-1])
        if got != want:
            add(ERROR, "layout", root.key, f"{path} is {got!r}; the tessera layout has {want!r}", attribute=parts[0],
                pointer=ptr("attributes", *parts))


def _depths(view: StoreView, root: Node, add: Add) -> tuple[int, ...]:
    """`geoemb:depths` (docs/format.md, "Nested depths"): a list of {dimensions, array}, ascending, the full depth
    last as `embeddings`, every other entry's array `embeddings_d{D}`; only for datasets v2 and later (geoemb:model).
    `geoemb:landmask`, when present, is a boolean. Returns the nested depths the zone groups are held to."""
    attrs = root.attrs
    if LANDMASK_ATTR in attrs and not isinstance(attrs[LANDMASK_ATTR], bool):
        add(ERROR, "layout", root.key, f"{LANDMASK_ATTR} must be true or false (absent: true, tiles are masked)",
            attribute=LANDMASK_ATTR, pointer=f"/attributes/{LANDMASK_ATTR}")
    if DEPTHS_ATTR not in attrs:
        return ()
    where = {"attribute": DEPTHS_ATTR, "pointer": f"/attributes/{DEPTHS_ATTR}"}
    entries = attrs[DEPTHS_ATTR]
    if not (isinstance(entries, list) and entries and all(
            isinstance(e, dict) and set(e) == {"dimensions", "array"} and isinstance(e["dimensions"], int)
            and not isinstance(e["dimensions"], bool) and isinstance(e["array"], str) for e in entries)):
        add(ERROR, "depths", root.key, f"{DEPTHS_ATTR} must be a non-empty list of {{dimensions, array}} entries",
            **where)
        return ()
    dims = [e["dimensions"] for e in entries]
    if dims != sorted(set(dims)):
        add(ERROR, "depths", root.key, f"{DEPTHS_ATTR} dimensions {dims} are not ascending and distinct", **where)
    if entries[-1] != {"dimensions": BANDS, "array": EMBEDDINGS.name}:
        add(ERROR, "depths", root.key, f"{DEPTHS_ATTR} must end with the full depth "
            f"{{dimensions: {BANDS}, array: {EMBEDDINGS.name!r}}} (it is complete: readers choose from it)", **where)
    nested = []
    for e in entries:
        d = e["dimensions"]
        if d == BANDS:
            continue
        if not 1 <= d < BANDS or e["array"] != depth_array_name(d):
            add(ERROR, "depths", root.key, f"{DEPTHS_ATTR} entry {e}: a nested depth is 1..{BANDS - 1} held in "
                f"'{DEPTH_ARRAY_PREFIX}{{D}}'", **where)
            continue
        nested.append(d)
    model = attrs.get("geoemb:model")
    version = model.rstrip("/").rsplit("/", 1)[-1] if isinstance(model, str) else None
    try:
        early = version is not None and float(version) < DEPTHS_MIN_VERSION
    except ValueError:
        early = False
    if nested and early:
        add(ERROR, "depths", root.key, f"nested depths in a store of model {version}: only datasets v"
            f"{DEPTHS_MIN_VERSION} and later order their dimensions by importance, so the first bands of v1/v1.1 "
            "embeddings are an arbitrary slice", **where)
    for z in view.children(""):
        for kid in view.children(z.path) if z.is_group and group_zone(z.name) is not None else ():
            d = depth_of(kid.name)
            if d is not None and d not in nested and kid.is_array:
                add(ERROR, "depths", kid.key, f"/{kid.path} is a nested-depth array or coordinate, but "
                    f"{DEPTHS_ATTR} does not list depth {d}", pointer="/node_type")
    return tuple(sorted(set(nested)))


def _zone_layout(view: StoreView, z: Node, coords: dict, add: Add, times: dict, depths: tuple[int, ...] = ()) -> None:
    """A zone group against the format: its attributes, and every declared array (name, data type, dimension names,
    fill value, shape, chunking, shards pairing), with shapes computed for the zone's own grid, time axis and shard
    and chunk sides."""
    zone = group_zone(z.name)
    attrs = z.attrs
    want_code = zone_crs(zone)
    if "proj:code" in attrs and attrs["proj:code"] != want_code:
        add(ERROR, "cross-check", z.key, f"proj:code {attrs['proj:code']!r} does not match group {z.name}: the "
            f"store's canonical CRS for zone {zone} is {want_code}", attribute="proj:code",
            pointer="/attributes/proj:code")
    tr = attrs.get("spatial:transform")
    problem = transform_problem(tr) if isinstance(tr, list) and len(tr) == 6 else None
    if problem:
        add(ERROR, "layout", z.key, problem, attribute="spatial:transform", pointer="/attributes/spatial:transform")
    if attrs.get("spatial:registration", REGISTRATION) != REGISTRATION:
        add(ERROR, "layout", z.key, f"spatial:registration must be {REGISTRATION!r}",
            attribute="spatial:registration", pointer="/attributes/spatial:registration")
    if attrs.get("spatial:dimensions") not in (None, list(SPATIAL_DIMS)):
        add(ERROR, "layout", z.key, f"spatial:dimensions {attrs['spatial:dimensions']!r} is not {list(SPATIAL_DIMS)}",
            attribute="spatial:dimensions", pointer="/attributes/spatial:dimensions")
    nodes: dict[str, Node] = {}
    declared = zone_arrays(depths)
    for decl in declared.values():
        n = view.child(z.path, decl.name)
        key = node_key(join_key(z.path, decl.name))
        if n is None:
            add(ERROR, "layout", key, f"missing array {decl.name!r} of zone group {z.name}")
            continue
        if not n.is_array:
            if isinstance(n.doc, dict):
                add(ERROR, "layout", key, f"{decl.name!r} must be an array", pointer="/node_type")
            continue
        nodes[decl.name] = n
        if n.doc.get("data_type") != decl.data_type:
            add(ERROR, "layout", key, f"data_type {n.doc.get('data_type')!r}: the tessera layout has "
                f"{decl.data_type}", pointer="/data_type")
        if n.dims != list(decl.dims):
            add(ERROR, "layout", key, f"dimension_names {n.dims!r}: the tessera layout has {list(decl.dims)}",
                pointer="/dimension_names")
        if decl.fill_checked and n.doc.get("fill_value") != decl.fill_json:
            add(ERROR, "layout", key, f"fill_value {n.doc.get('fill_value')!r}: the tessera layout has "
                f"{decl.fill_json!r}", pointer="/fill_value")
    t = coords.get(TIME.name)
    if t is not None:
        times[z.path] = [int(v) for v in t]
    shape = _zone_shape(z, nodes, t)
    if shape is None:
        return
    zshape, ref = shape
    for decl in declared.values():
        n = nodes.get(decl.name)
        if _array_ok(n) and len(n.shape) == len(decl.dims):
            _array_layout(decl, n, zshape, ref, coords, add)


def _zone_shape(z: Node, nodes: dict[str, Node], t: np.ndarray | None) -> tuple[Zone, ArrayDecl] | None:
    """The zone as its arrays should see it: the grid of its spatial: attributes (else the first sharded array's
    y/x sizes), its time coordinate (else that array's time size), the shard and chunk sides of that array.
    None when no sharded array is usable to take them from."""
    for ref in sharded_arrays():
        n = nodes.get(ref.name)
        if not (_array_ok(n) and n.spec is not None and n.spec.sharded and len(n.shape) == len(ref.dims)):
            continue
        try:
            grid = grid_of(group_zone(z.name), z.attrs)
        except ValueError:
            grid = ZoneGrid(group_zone(z.name), 0.0, 0.0, *ref.spatial(n.shape))
        time = tuple(int(v) for v in t) if t is not None else tuple(range(n.shape[ref.dims.index(TIME.name)]))
        sample = nodes.get(STRETCH_SAMPLE.name)  # K is the store's choice: take it from the sample array
        k = sample.shape[STRETCH_SAMPLE.dims.index("sample")] if _array_ok(sample) and \
            len(sample.shape) == len(STRETCH_SAMPLE.dims) else STRETCH_SAMPLE_SIZE
        return Zone(grid, time, ref.spatial(n.spec.chunk_shape), ref.spatial(n.spec.shard.inner_shape), k), ref
    return None


def _array_layout(decl: ArrayDecl, n: Node, zone: Zone, ref: ArrayDecl, coords: dict, add: Add) -> None:
    """Shape, chunking and (for coordinates without a spatial rule of their own) values of one declared array."""
    want = list(decl.shape(zone))
    if n.shape != want:
        add(ERROR, "layout", n.key, f"shape {n.shape}: the tessera layout has {list(decl.dims)} = {want}",
            pointer="/shape")
    spec = n.spec
    if spec is None or spec.dtype is None or not decl.chunking.checked:
        pass
    elif decl.sharded and not spec.sharded:
        add(WARNING, "layout", n.key, f"not sharded: the tessera layout stores {decl.name} in sharding_indexed "
            "shards", pointer="/codecs")
    else:
        got = (list(spec.chunk_shape), list(spec.inner_shape) if spec.sharded else None)
        shards = decl.shards(zone)
        exp = (list(shards or decl.chunks(zone)), list(decl.chunks(zone)) if shards else None)
        if got != exp:
            what = f"chunks {got[0]}" + (f" / inner {got[1]}" if got[1] is not None else "")
            has = f"chunks {exp[0]}" + (f" / inner {exp[1]}" if exp[1] is not None else "")
            pairs = decl.sharded and decl is not ref and decl.spatial(got[0]) != decl.spatial(exp[0])
            pair = f"; shards must pair with the {ref.name} shards" if pairs else ""
            add(ERROR, "layout", n.key, f"{what}: the tessera layout has {has}{pair}",
                pointer="/chunk_grid/configuration/chunk_shape")
    values = coords.get(decl.name)
    if decl.values is not None and values is not None and decl.dims[0] not in (*SPATIAL_DIMS, TIME.name) \
            and not np.array_equal(values, decl.values(zone)):
        add(WARNING, "layout", n.key, f"{decl.name} values are not the tessera layout's")


# ------------------------------------------------------------------------------------------ consolidated

def _first_diffs(a: Any, b: Any, path: tuple = (), limit: int = 5) -> list[tuple]:
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                       and not isinstance(a, bool) and not isinstance(b, bool)):
        return [path]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(path + (k,))
            else:
                out += _first_diffs(a[k], b[k], path + (k,), limit)
            if len(out) >= limit:
                break
        return out[:limit]
    if isinstance(a, list):
        if len(a) != len(b):
            return [path]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += _first_diffs(x, y, path + (i,), limit)
            if len(out) >= limit:
                break
        return out[:limit]
    return [] if a == b else [path]


def _consolidated(view: StoreView, profile: str, add: Add) -> None:
    root = view.nodes[""]
    if not isinstance(root.doc, dict):
        return
    cm = root.doc.get("consolidated_metadata")
    if cm is None:
        if root.is_group and profile in ("tessera", "interop"):
            add(ERROR, "consolidated", root.key, "no consolidated metadata: HTTP readers cannot list a bucket "
                "(docs/format.md, 'Consolidated metadata': it must be inline)", pointer="/consolidated_metadata")
        elif root.is_group:
            add(WARNING, "consolidated", root.key, "no consolidated metadata: readers over HTTP cannot list a "
                "bucket and must know every node's path", pointer="/consolidated_metadata")
        return
    meta = cm.get("metadata") if isinstance(cm, dict) else None
    if not isinstance(meta, dict):
        return  # reported by the document check
    if cm.get("kind", "inline") != "inline":
        add(ERROR, "consolidated", root.key, f"consolidated_metadata kind {cm.get('kind')!r} is not 'inline'",
            pointer="/consolidated_metadata/kind")
    base = "/consolidated_metadata/metadata"
    nodes = {p: n for p, n in view.nodes.items() if p and n.doc is not None}
    for path in sorted(set(nodes) - set(meta)):
        add(ERROR, "consolidated", root.key, f"stale consolidated metadata: node /{path} is missing from it",
            pointer=base, details={"node": node_key(path)})
    for path in sorted(set(meta) - set(nodes)):
        what = "exists but is unreadable" if path in view.nodes else "does not exist"
        add(ERROR, "consolidated", root.key, f"stale consolidated metadata: it lists /{path}, which {what}",
            pointer=base + ptr(path), details={"node": node_key(path)})
    for path in sorted(set(meta) & set(nodes)):
        want, got = nodes[path].doc, meta[path]
        if isinstance(want, dict) and isinstance(got, dict):
            want = {k: v for k, v in want.items() if k != "consolidated_metadata"}
            got = {k: v for k, v in got.items() if k != "consolidated_metadata"}
        for d in _first_diffs(got, want):
            add(ERROR, "consolidated", root.key, f"stale consolidated metadata: /{path}{ptr(*d)} differs from "
                f"{node_key(path)}", pointer=base + ptr(path, *d), attribute=str(d[1]) if len(d) > 1 and
                d[0] == "attributes" else None, details={"node": node_key(path), "node_pointer": ptr(*d)})


# ------------------------------------------------------------------------------------------ interop

def _chain_names(codecs: Any) -> list[tuple[str, str]]:
    """(name, pointer) of every codec in a chain, sharding configuration included."""
    out = []
    if not isinstance(codecs, list):
        return out
    for i, entry in enumerate(codecs):
        name, config, _ = _codec(entry)
        if name is None:
            continue
        out.append((name, ptr(i)))
        if name == "sharding_indexed" and isinstance(config, dict):
            for sub in ("codecs", "index_codecs"):
                out += [(n, ptr(i, "configuration", sub) + p) for n, p in _chain_names(config.get(sub))]
    return out


def _portability(view: StoreView, add: Add) -> None:
    root = view.nodes[""]
    if root.raw is not None and len(root.raw) > ROOT_DOC_WARN_BYTES:
        add(WARNING, "portability", root.key, f"root zarr.json is {len(root.raw) / 1e6:.1f} MB: browser readers "
            "fetch and parse it whole")
    if isinstance(root.doc, dict) and root.doc.get("consolidated_metadata") is not None:
        add(INFO, "portability", root.key, "consolidated metadata is a zarr-python extension, not Zarr v3 core: "
            "other readers (tensorstore, zarrs, ...) read each node's zarr.json instead",
            pointer="/consolidated_metadata")
    for node in sorted(view.nodes.values(), key=lambda n: n.path):
        if node.path and not SAFE_NAME.match(node.name):
            add(WARNING, "portability", node.key, f"node name {node.name!r} has characters outside [A-Za-z0-9._-]: "
                "URLs and some file systems need escaping")
        if not node.is_array or not isinstance(node.doc, dict):
            continue
        doc = node.doc
        for name, p in _chain_names(doc.get("codecs")):
            if name not in PORTABLE_CODECS:
                add(WARNING, "portability", node.key, f"codec {name!r} is not one that zarr-python, tensorstore and "
                    "zarrs all read", pointer="/codecs" + p + "/name")
        for i, entry in enumerate(doc.get("codecs") if isinstance(doc.get("codecs"), list) else []):
            name, config, _ = _codec(entry)
            if name == "sharding_indexed" and isinstance(config, dict) and config.get("index_location") == "start":
                add(WARNING, "portability", node.key, "shard index at the start: older readers assume the end",
                    pointer=f"/codecs/{i}/configuration/index_location")
        enc = doc.get("chunk_key_encoding")
        name, config, _ = _codec(enc) if enc is not None else (None, None, None)
        if name == "v2" or (config or {}).get("separator") == ".":
            add(WARNING, "portability", node.key, "chunk keys not in the default '/' encoding: some readers and "
                "tools expect c/0/0", pointer="/chunk_key_encoding")
        dims = doc.get("dimension_names")
        if not isinstance(dims, list) or any(d is None for d in dims):
            add(WARNING, "portability", node.key, "dimension_names missing or partly null: xarray and other labelled "
                "readers need them", pointer="/dimension_names")
        if isinstance(doc.get("data_type"), str) and node.spec is None and not node.problems:
            add(WARNING, "portability", node.key, f"data type {doc['data_type']!r} is not a core Zarr v3 type",
                pointer="/data_type")


__all__ = ["ArraySpec", "check_metadata", "read_1d"]
