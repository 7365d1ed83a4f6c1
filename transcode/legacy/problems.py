"""A problem found in a legacy archive: which file, what kind, why."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True, order=True)
class Problem:
    """One defect, named by the file (archive-relative key) it was found in."""

    path: str
    kind: str
    message: str
    severity: str = ERROR
    year: int | None = None
    tile: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)
