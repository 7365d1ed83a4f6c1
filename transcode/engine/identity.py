"""One store holds one dataset (FORMATS.md §1.5): refuse, before anything is written, a source whose dataset is
unknown, mixed, or not the one the store already holds."""

from __future__ import annotations

from transcode.errors import ArchiveError, UsageError
from transcode.legacy.dataset import Dataset


def check_dataset(source: str, dataset: Dataset, store: str, existing: dict | None) -> None:
    """Raise (exit 2) unless `dataset` may be written into the store whose recorded settings are `existing`."""
    if dataset.conflicts:
        said = "; ".join(f"{c.where} says {c.version} ({c.variant})" for c in dataset.conflicts)
        raise ArchiveError(source, f"the archive mixes datasets ({said}); a store holds one dataset: convert one "
                           "dataset at a time, or name the right one with --dataset-version")
    if not dataset.known:
        raise UsageError(source, "the dataset version of this archive is unknown (no tessera_metadata.json, no "
                         "npy/<dataset> directory name, no version in manifest.parquet): give --dataset-version, "
                         "e.g. --dataset-version 1.1")
    if existing is None:
        return
    held = existing.get("dataset")
    if not held:
        raise UsageError(store, f"the store records no dataset (written before datasets were recorded), the source "
                         f"is {dataset.label}: convert into a new store")
    if not dataset.same_as(held):
        raise UsageError(store, f"the store holds dataset {held.get('version')} ({held.get('variant')}), the source "
                         f"{source} is {dataset.label}: one store holds one dataset; convert into a new store")
