"""Issue: one finding about a convention document (severity, key, message)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True, order=True)
class Issue:
    """One finding, named by the top-level attribute key it concerns.

    `key` is the attribute key (e.g. "spatial:bbox", "zarr_conventions"); `pointer` is the
    RFC 6901 JSON pointer inside the attributes object ("/geoemb:quantization/scale/type"),
    equal to "/" + key for top-level findings and "" for the attributes object itself.
    """

    severity: str
    key: str
    message: str
    pointer: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def pointer(*parts: str | int) -> str:
    """The RFC 6901 JSON pointer for a path of keys and indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def errors(issues: list[Issue]) -> list[Issue]:
    """Only the error-severity issues."""
    return [i for i in issues if i.severity == ERROR]


def not_an_object(attrs: object) -> Issue:
    """The error for attributes that are not a JSON object."""
    text = repr(attrs)
    return Issue(ERROR, "", f"attributes: {text if len(text) <= 120 else text[:117] + '...'} is not of type 'object'")
