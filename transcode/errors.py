"""One exception type per domain, each carrying the file or key it is about."""

from __future__ import annotations


class TranscodeError(Exception):
    """Base class: every error the CLI turns into one clear line and an exit code."""

    exit_code = 2

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class ArchiveError(TranscodeError):
    """A legacy archive (or one of its files) cannot be read as it should."""


class StorageError(TranscodeError):
    """A storage location cannot be listed, read or written (bad URL, credentials, network)."""


class StoreError(TranscodeError):
    """A Zarr store is missing, malformed or inconsistent."""


class UsageError(TranscodeError):
    """The user asked for something that cannot be done as asked."""
