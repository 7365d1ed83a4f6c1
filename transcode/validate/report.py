"""Findings and the validation report: what was checked, what is wrong, coverage, statistics, fidelity counts."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)
LEVELS = ("metadata", "structure", "content", "fidelity")
PROFILES = ("tessera", "geoemb", "interop")
REPORT_FORMAT = 1


@dataclass(frozen=True)
class Finding:
    """One finding, always named by the object key it concerns ("" only for the store as a whole).

    `attribute` is the attribute key for findings about `attributes` of a zarr.json document; `pointer` is the
    RFC 6901 JSON pointer inside that document ("/attributes/spatial:bbox", "/codecs/0/configuration/chunk_shape");
    `chunk` the inner chunk's coordinates in the array's chunk grid; `details` anything machine-readable more.
    """

    severity: str
    level: str
    code: str
    key: str
    message: str
    attribute: str | None = None
    pointer: str | None = None
    chunk: tuple[int, ...] | None = None
    details: dict | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}")

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"severity": self.severity, "level": self.level, "code": self.code, "key": self.key,
                             "message": self.message}
        if self.attribute is not None:
            d["attribute"] = self.attribute
        if self.pointer is not None:
            d["pointer"] = self.pointer
        if self.chunk is not None:
            d["chunk"] = [int(c) for c in self.chunk]
        if self.details:
            d["details"] = _jsonable(self.details)
        return d

    def line(self) -> str:
        """One readable line."""
        where = self.key or "(store)"
        if self.attribute and self.pointer or self.pointer:
            where += f" {self.pointer}"
        if self.chunk is not None:
            where += f" chunk {list(self.chunk)}"
        return f"{self.severity:7s} {self.level:9s} {self.code:18s} {where}: {self.message}"


def _jsonable(v: Any) -> Any:
    """Plain JSON values (numpy scalars and non-finite floats made portable)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


@dataclass
class FidelityCounts:
    """Pixel counts of the fidelity level (every compared pixel falls in exactly one of the first five)."""

    exact: int = 0
    water_masked: int = 0
    invalid_scale: int = 0
    empty: int = 0
    mismatched: int = 0
    overlap: int = 0
    chunks: int = 0
    shards: int = 0
    tile_years: int = 0

    @property
    def compared(self) -> int:
        return self.exact + self.water_masked + self.invalid_scale + self.empty + self.mismatched

    def add(self, other: dict) -> None:
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + int(v))


@dataclass
class ValidationReport:
    """Everything one `validate` run found."""

    store: str
    level: str
    profile: str
    levels_run: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    coverage: list[dict] = field(default_factory=list)
    statistics: list[dict] = field(default_factory=list)
    fidelity: dict | None = None
    counters: Counter = field(default_factory=Counter)
    seconds: dict = field(default_factory=dict)
    retries: int = 0  # storage requests retried (throttling, 5xx, resets, cut bodies), store and source
    transient: dict = field(default_factory=dict)  # the transient failures behind them, by reason

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def extend(self, findings) -> None:
        self.findings.extend(findings)

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def clean(self) -> bool:
        return not self.errors

    @property
    def ok(self) -> bool:
        """No errors (warnings and info allowed): the verdict every API report has."""
        return self.clean

    @property
    def exit_code(self) -> int:
        return 0 if self.clean else 1

    def sorted_findings(self) -> list[Finding]:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        lv = {s: i for i, s in enumerate(LEVELS)}
        return sorted(self.findings, key=lambda f: (lv[f.level], order[f.severity], f.key.encode(), f.pointer or "",
                                                    f.chunk or (), f.code, f.message))

    def to_json(self) -> dict:
        """The document `--json` prints (schemas/validate-report.schema.json)."""
        from transcode import __version__

        return _jsonable({
            "format": REPORT_FORMAT,
            "tool": "tessera-transcode",
            "version": __version__,
            "store": self.store,
            "level": self.level,
            "profile": self.profile,
            "levels_run": self.levels_run,
            "options": self.options,
            "summary": {
                "errors": self.count(ERROR),
                "warnings": self.count(WARNING),
                "info": self.count(INFO),
                "clean": self.clean,
                "exit_code": self.exit_code,
                "by_code": dict(sorted(Counter(f"{f.severity}:{f.code}" for f in self.findings).items())),
                "counters": dict(sorted(self.counters.items())),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            },
            "findings": [f.to_dict() for f in self.sorted_findings()],
            "coverage": self.coverage,
            "statistics": self.statistics,
            "fidelity": self.fidelity,
            "retries": self.retries,
            "transient": self.transient,
        })

    def lines(self) -> list[str]:
        """The readable report."""
        out = [f"store      {self.store}",
               f"checked    {', '.join(self.levels_run)} (profile {self.profile})"]
        c = self.counters
        out.append(f"read       {c.get('metadata_documents', 0)} zarr.json, {c.get('shard_indexes', 0)} shard indexes, "
                   f"{c.get('chunks_decoded', 0)} chunks decoded, {_mb(c.get('bytes_read', 0))}")
        if self.coverage:
            out.append("coverage")
            for cov in self.coverage:
                year = cov.get("year")
                label = f"{cov['array']}" + (f" {year}" if year is not None else "")
                out.append(f"  {label:30s} {cov['present']:>8d} of {cov['total']:>10d} "
                           f"{'shards' if cov['sharded'] else 'chunks'} ({cov['fraction']:.2%})")
        if self.statistics:
            out.append("valid pixels")
            for s in self.statistics:
                mean = s.get("value_mean")
                out.append(f"  {s['group']} {s['year']}: {s['valid_pixels']:,} valid, {s['nan_pixels']:,} NaN, "
                           f"{s['fill_pixels']:,} +inf in written chunks"
                           + (f"; scale {s['scale_min']:.4g}..{s['scale_max']:.4g}, value mean {mean:.4g} "
                              f"sd {s['value_std']:.4g}" if s["valid_pixels"] else ""))
        if self.fidelity is not None:
            f = self.fidelity
            out.append(f"fidelity   {f['compared']:,} pixels compared: {f['exact']:,} exact, {f['water_masked']:,} "
                       f"water-masked, {f['invalid_scale']:,} invalid source scale, {f['empty']:,} without a tile, "
                       f"{f['overlap']:,} in overlaps, {f['mismatched']:,} mismatched")
            for m in f.get("mismatches", [])[:20]:
                out.append(f"  mismatch {m['tile']} {m['year']} tile px ({m['tile_row']}, {m['tile_col']}) "
                           f"= {m['group']} px ({m['row']}, {m['col']}): {m['field']} store {m['store']} "
                           f"source {m['expected']}")
            if len(f.get("mismatches", [])) > 20:
                out.append(f"  ... {len(f['mismatches']) - 20} more mismatches in --json")
        findings = self.sorted_findings()
        out.append(f"findings   {self.count(ERROR)} errors, {self.count(WARNING)} warnings, {self.count(INFO)} info")
        out += ["  " + f.line() for f in findings]
        out.append("result     " + ("clean" if self.clean else "ERRORS FOUND"))
        return out


def _mb(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"
