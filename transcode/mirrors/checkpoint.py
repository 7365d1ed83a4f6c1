"""Checkpoints in a local state file (never in a mirror): the last key whose verdict is final, the running tallies
and the differences found so far, so an interrupted verification resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from transcode.errors import UsageError

STATE_DIR = ".tessera-verify-mirrors"
VERSION = 1


def fingerprint(config: dict) -> str:
    """Identity of a verification: the same mirrors and options resume the same state."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def default_path(config: dict) -> Path:
    """./.tessera-verify-mirrors/<fingerprint>.json"""
    return Path.cwd() / STATE_DIR / f"{fingerprint(config)[:16]}.json"


class Checkpoint:
    """A JSON state file plus `<state>.diffs.jsonl`, the differences committed so far (truncated on resume to
    the length the state recorded, so both always agree)."""

    def __init__(self, path: str | os.PathLike | None, config: dict, restart: bool = False,
                 every: float = 2.0) -> None:
        self.config = config
        self.fp = fingerprint(config)
        self.path = Path(path) if path else default_path(config)
        self.diffs_path = self.path.with_name(self.path.name + ".diffs.jsonl")
        self.every = every
        self._last = time.monotonic()
        self.state: dict | None = None
        if not restart and self.path.exists():
            try:
                state = json.loads(self.path.read_bytes())
            except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                raise UsageError(str(self.path), f"unreadable state file ({e}); use --restart to start over") from e
            if not isinstance(state, dict):
                raise self.unusable("not a JSON object")
            if state.get("fingerprint") != self.fp or state.get("version") != VERSION:
                raise UsageError(str(self.path), "this state file belongs to another verification (other mirrors "
                                                 "or options); use --restart or another --state")
            if not isinstance(state.get("watermark"), (str, type(None))):
                raise self.unusable("its watermark is not a key")
            if type(state.get("diffs_bytes", 0)) is not int or state.get("diffs_bytes", 0) < 0:
                raise self.unusable("its diffs_bytes is not a byte count")
            self.state = state
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.state is None:
                self.diffs_path.write_bytes(b"")
            else:
                with open(self.diffs_path, "ab") as f:
                    f.truncate(int(self.state.get("diffs_bytes", 0)))
            self._diffs = open(self.diffs_path, "ab")  # noqa: SIM115 - appended to for the whole run
        except OSError as e:
            raise UsageError(str(self.path), f"cannot write the state file: {e.strerror or e}") from e

    def unusable(self, why: str) -> UsageError:
        """The error for a state file (or its differences file) that holds no usable state."""
        return UsageError(str(self.path), f"not a usable state file ({why}); use --restart to start over")

    @property
    def resumed(self) -> bool:
        """True when an earlier run's state was loaded."""
        return self.state is not None

    @property
    def watermark(self) -> str | None:
        """Every key up to and including this one has its final verdict (None: start from the beginning)."""
        return (self.state or {}).get("watermark")

    def earlier_differences(self) -> Iterator[dict]:
        """The differences an earlier run already committed."""
        if not self.resumed:
            return
        self._diffs.flush()
        with open(self.diffs_path, "rb") as f:
            for line in f:
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError as e:
                        raise self.unusable(f"{self.diffs_path.name}: {e}") from e
                    if not isinstance(record, dict):
                        raise self.unusable(f"{self.diffs_path.name}: a line is not a JSON object")
                    yield record

    def add(self, records: list[dict]) -> None:
        """Append committed differences."""
        for r in records:
            self._diffs.write(json.dumps(r, ensure_ascii=False).encode() + b"\n")

    def due(self) -> bool:
        """True when the last save is older than `every` seconds."""
        return time.monotonic() - self._last >= self.every

    def save(self, watermark: str | None, payload: dict) -> None:
        """Write the state atomically (after flushing the differences it accounts for)."""
        self._diffs.flush()
        os.fsync(self._diffs.fileno())
        state = {"version": VERSION, "fingerprint": self.fp, "config": self.config, "watermark": watermark,
                 "diffs_bytes": self._diffs.tell(), "saved": time.time(), **payload}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(state, ensure_ascii=False))
        os.replace(tmp, self.path)
        self._last = time.monotonic()

    def differences_file(self) -> Path:
        """The JSON-lines file of every committed difference."""
        self._diffs.flush()
        return self.diffs_path

    def finish(self, keep: bool = False) -> None:
        """Close; remove the state (a finished verification has nothing to resume) unless `keep`."""
        self._diffs.close()
        if not keep:
            for p in (self.path, self.diffs_path):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
            try:
                self.path.parent.rmdir()  # only when empty
            except OSError:
                pass

    def close(self) -> None:
        """Close without removing anything (interrupted or failed run)."""
        if not self._diffs.closed:
            self._diffs.close()
