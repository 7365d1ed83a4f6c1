"""The `.tessera/` sidecar inside the store root: not part of the Zarr hierarchy and not listed by the manifest.
It holds the conversion settings, the resume journal (one entry per finished shard, named by the fingerprint of
its inputs and settings, with the shard's partial stretch statistics beside it), one record per (zone, year) of
the stretch-statistics objects last written, and the store manifest."""

from __future__ import annotations

SIDECAR = ".tessera"
SETTINGS_KEY = f"{SIDECAR}/convert.json"
MANIFEST_KEY = f"{SIDECAR}/manifest.parquet"
JOURNAL_PREFIX = f"{SIDECAR}/journal"
STRETCH_PREFIX = f"{SIDECAR}/stretch"
ENTRY_SUFFIX = ".json"
STATS_SUFFIX = ".stats"  # a shard's partial stretch statistics, beside its journal entry
FINGERPRINT_CHARS = 24  # of the SHA-256 fingerprint, in a journal entry's name


def in_sidecar(key: str) -> bool:
    """Whether an object key lies in the sidecar (so it is no Zarr object)."""
    return key.startswith(SIDECAR + "/")


def journal_key(group: str, year: int, shard_row: int, shard_col: int, fingerprint: str) -> str:
    """Key of the journal entry of the shard (group, year, row, col) built from inputs with this fingerprint."""
    return f"{JOURNAL_PREFIX}/{group}/{year}/{shard_row}_{shard_col}.{fingerprint[:FINGERPRINT_CHARS]}{ENTRY_SUFFIX}"


def partial_key(entry: str) -> str:
    """Key of the partial stretch statistics written beside the journal entry `entry` (before it)."""
    return entry.removesuffix(ENTRY_SUFFIX) + STATS_SUFFIX


def stretch_record_key(group: str, year: int) -> str:
    """Key of the record of the stretch-statistics objects last written for (zone group, year)."""
    return f"{STRETCH_PREFIX}/{group}/{year}{ENTRY_SUFFIX}"


def journal_shard(key: str) -> tuple[str, str, str, str] | None:
    """(group, year, shard row, shard column) of a journal entry key, or None when the key is not one."""
    if not key.startswith(JOURNAL_PREFIX + "/"):
        return None
    parts = key[len(JOURNAL_PREFIX) + 1:].split("/")
    if len(parts) != 3 or not parts[2].endswith(ENTRY_SUFFIX):
        return None
    row, _, col = parts[2].split(".", 1)[0].partition("_")
    return parts[0], parts[1], row, col


def settings_document(*, version: str, source: str, time: list[int], encoding: dict, part_size: int,
                      codecs: dict[str, str], dataset: dict, stretch: dict | None = None) -> dict:
    """The settings sidecar (`convert.json`): what a later run needs to resume, extend or refuse incompatible
    settings or another dataset. `encoding` holds the byte-deciding settings (shard, chunk, codec chain per codec
    setting, nested depths); `dataset` the source's version, variant and whether they were overridden; `stretch`
    whether stretch statistics are collected and their sample size (absent: a store written before they existed,
    so not collected)."""
    doc = {"tool": "tessera-transcode", "version": version, "source": source, "time": time,
           "encoding": encoding, "part_size": part_size, "codecs": codecs, "dataset": dataset}
    if stretch is not None:
        doc["stretch"] = stretch
    return doc
