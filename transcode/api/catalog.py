"""The `codecs` verb: every codec the toolkit writes, its Zarr v3 name and the readers verified to decode it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CodecCatalog:
    """The codec listing: `default` spec, one row per codec family in `codecs`, the `readers`, the interop matrix."""

    document: dict

    @property
    def ok(self) -> bool:
        """A listing has nothing to find wrong."""
        return True

    @property
    def default(self) -> str:
        """The codec spec convert uses when none is given."""
        return self.document["default"]

    @property
    def codecs(self) -> list[dict]:
        """One row per codec: spec form, Zarr v3 name and configuration, readers that decode it, portability."""
        return self.document["codecs"]

    def to_json(self) -> dict:
        """The `codecs --json` document."""
        return self.document


def codecs() -> CodecCatalog:
    """Every codec `--codec` (the `codecs` keyword) accepts, its Zarr v3 name and which readers decode it."""
    from transcode.codecs.catalog import catalog

    return CodecCatalog(catalog())
