"""The store's node hierarchy, found the way an HTTP-less reader would: the root zarr.json, then the immediate
sub-directories of each group (one delimiter listing per group), then each child's zarr.json. Reads only
zarr.json objects."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from transcode.errors import AccessDeniedError, ObjectNotFoundError, StorageError, StoreError, TransientStorageError
from transcode.format.sidecar import SIDECAR
from transcode.storage import Storage, join_key
from transcode.validate.zarrspec import ArraySpec, check_document, parse_json

MAX_DEPTH = 16


def node_key(path: str) -> str:
    return join_key(path, "zarr.json") if path else "zarr.json"


@dataclass
class Node:
    """One node: its zarr.json (raw, parsed) or why it could not be read."""

    path: str
    raw: bytes | None = None
    doc: Any = None
    error: str | None = None
    problems: list = field(default_factory=list)  # zarrspec Msgs of the document
    spec: ArraySpec | None = None
    children: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return node_key(self.path)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str | None:
        if not self.path:
            return None
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    @property
    def node_type(self) -> str | None:
        return self.doc.get("node_type") if isinstance(self.doc, dict) else None

    @property
    def is_group(self) -> bool:
        return self.node_type == "group"

    @property
    def is_array(self) -> bool:
        return self.node_type == "array"

    @property
    def attrs(self) -> dict:
        a = self.doc.get("attributes") if isinstance(self.doc, dict) else None
        return a if isinstance(a, dict) else {}

    @property
    def dims(self) -> list | None:
        d = self.doc.get("dimension_names") if isinstance(self.doc, dict) else None
        return d if isinstance(d, list) else None

    @property
    def shape(self) -> list | None:
        s = self.doc.get("shape") if isinstance(self.doc, dict) else None
        return s if isinstance(s, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in s) else None


@dataclass
class StoreView:
    """Every node found from the root; `dirs_without_node` are sub-directories of groups with no zarr.json."""

    storage: Storage
    nodes: dict[str, Node]
    dirs_without_node: list[str]
    counters: Counter
    time_values: dict[str, list[int]] = field(default_factory=dict)  # group -> years, once metadata read them

    def arrays(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.is_array]

    def groups(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.is_group]

    def children(self, path: str) -> list[Node]:
        node = self.nodes.get(path)
        return [self.nodes[c] for c in (node.children if node else []) if c in self.nodes]

    def child(self, path: str, name: str) -> Node | None:
        return self.nodes.get(join_key(path, name) if path else name)

    def descendants(self, path: str) -> list[Node]:
        pre = path + "/" if path else ""
        return [n for p, n in self.nodes.items() if p and p.startswith(pre)]


def _read_node(storage: Storage, path: str, counters: Counter, lock: threading.Lock) -> Node | None:
    """The node at `path`, None when there is no zarr.json there; a node with an error when it cannot be read. A
    transient failure is raised (it says nothing about the store), and so is a refused root (the store cannot be
    read at all with these credentials: unusable input, not a finding)."""
    key = node_key(path)
    try:
        raw = storage.read(key)
    except ObjectNotFoundError:
        return None
    except StorageError as e:
        if isinstance(e, TransientStorageError) or (not path and isinstance(e, AccessDeniedError)):
            raise
        return Node(path, error=f"cannot read: {e.reason}")
    with lock:
        counters["metadata_documents"] += 1
        counters["bytes_read"] += len(raw)
    doc, problem = parse_json(raw)
    node = Node(path, raw=raw, doc=doc, error=problem)
    if problem is None:
        node.problems = check_document(doc)
        if node.is_array and not any(sev == "error" for sev, *_ in node.problems):
            try:
                node.spec = ArraySpec(path, doc)
            except Exception:  # noqa: BLE001 - an odd but schema-valid document: content levels skip the array
                node.spec = None
    return node


def load_view(storage: Storage, workers: int = 8, progress: bool = False) -> StoreView:
    """Walk the hierarchy from the root; StoreError when there is no store at all (unusable input)."""
    counters: Counter = Counter()
    lock = threading.Lock()
    nodes: dict[str, Node] = {}
    without: list[str] = []
    root = _read_node(storage, "", counters, lock)
    if root is None:
        try:
            anything = next(iter(storage.list()), None)
        except TransientStorageError:
            raise
        except StorageError as e:
            raise StoreError(storage.describe(), f"cannot list the store: {e.reason}") from e
        if anything is None:
            raise StoreError(storage.describe(), "no store here (nothing to list, no zarr.json)")
        root = Node("", error="the store has no root zarr.json")
    nodes[""] = root
    bar = tqdm(desc="metadata", unit="node", disable=not progress)
    bar.update(1)
    level = [""]
    depth = 0
    with ThreadPoolExecutor(max_workers=max(4, min(32, 4 * workers))) as pool:
        while level and depth < MAX_DEPTH:
            depth += 1
            candidates: list[str] = []
            for path in level:
                node = nodes[path]
                if node.doc is not None and not node.is_group:
                    continue  # arrays hold chunks, not nodes
                try:
                    names = storage.list_dirs(path)
                except TransientStorageError:
                    raise
                except StorageError as e:
                    node.problems.append(("error", "unreadable", "", f"cannot list the group: {e.reason}"))
                    continue
                for name in names:
                    if not path and name == SIDECAR:
                        continue  # the converter's sidecar (.tessera/): ours, not a node
                    candidates.append(join_key(path, name) if path else name)
            found = list(pool.map(lambda p: (p, _read_node(storage, p, counters, lock)), candidates))
            level = []
            for p, node in found:
                if node is None:
                    without.append(p)
                    continue
                nodes[p] = node
                nodes[node.parent].children.append(p)
                level.append(p)
                bar.update(1)
    bar.close()
    return StoreView(storage, nodes, sorted(without), counters)
