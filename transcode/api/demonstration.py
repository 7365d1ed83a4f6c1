"""The `demo` verb: a small synthetic archive, its inventory and its store, to try the toolkit on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transcode.api.archive import InventoryReport, inventory
from transcode.api.store import convert
from transcode.engine.convert import ConvertReport

PRESETS = ("tiny", "small")


@dataclass
class DemoReport:
    """Where the demo put the archive, the inventory and the store, and what inventory and convert reported."""

    archive: str
    generated: bool
    inventory: InventoryReport
    store: str
    convert: ConvertReport

    @property
    def ok(self) -> bool:
        """A clean archive, converted without failures."""
        return self.inventory.ok and self.convert.ok

    def to_json(self) -> dict:
        """The `demo --json` document."""
        return {"archive": self.archive, "generated": self.generated, "inventory": self.inventory.path,
                "store": self.store, "summary": self.inventory.summary, "convert": self.convert.to_json()}


def demo(directory: str | os.PathLike[str] = "tessera-demo", *, preset: str = "tiny",
         progress: bool = False) -> DemoReport:
    """Generate a 3-tile synthetic archive in DIRECTORY/archive (kept if already there), inventory it into
    DIRECTORY/inventory.parquet with every hash checked, and convert it into DIRECTORY/store.zarr."""
    from transcode.errors import UsageError
    from transcode.testing.synthetic import make_legacy_archive

    if preset not in PRESETS:
        raise UsageError(f"--preset {preset}", f"unknown preset; choose one of {', '.join(PRESETS)}")
    base = Path(directory)
    archive = base / "archive"
    generated = not (archive.exists() and any(archive.iterdir()))
    if generated:
        make_legacy_archive(archive, years=(2024,), preset=preset, progress=progress)
    inv = inventory(archive, verify_hashes=True, out=base / "inventory.parquet", progress=progress)
    store = base / "store.zarr"
    report = convert(archive, store, inventory=inv, progress=progress)
    return DemoReport(str(archive), generated, inv, str(store), report)
