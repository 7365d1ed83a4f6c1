"""One exception type per domain, each carrying the file or key it is about; storage errors typed by cause."""

from __future__ import annotations

import sys
import warnings


class TranscodeError(Exception):
    """Base class: every error the CLI turns into one clear line and an exit code."""

    exit_code = 2

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason

    def __reduce__(self):
        # rebuilt from its fields, so it survives a worker process's pickle (Exception's default passes only args)
        return type(self)._rebuild, (self.where, self.reason, self.__dict__)

    @classmethod
    def _rebuild(cls, where: str, reason: str, state: dict) -> TranscodeError:
        e = cls.__new__(cls)
        TranscodeError.__init__(e, where, reason)
        e.__dict__.update(state)
        return e


class ArchiveError(TranscodeError):
    """A legacy archive (or one of its files) cannot be read as it should."""


class StorageError(TranscodeError):
    """A storage location cannot be listed, read or written, for a cause none of the subclasses names
    (bad URL, unsupported operation, a full disk, an error the server gave no class for).

    Callers decide by the class, never by the message; `cause` is a short machine-readable name of what the
    backend said (an S3 error code and HTTP status, an errno name, an exception class) for counts and reports."""

    def __init__(self, where: str, reason: str, cause: str | None = None) -> None:
        super().__init__(where, reason)
        self.cause = cause

    def within(self, where: str) -> StorageError:
        """The same error (same class and cause) located inside `where`; the message keeps the original place."""
        return type(self)(where, str(self), self.cause)


class ObjectNotFoundError(StorageError):
    """The object, file, bucket or directory does not exist."""


class AccessDeniedError(StorageError):
    """The credentials (or file permissions) do not allow the operation; retrying will not help."""


class TransientStorageError(StorageError):
    """The storage failed in a way that may pass (throttling, 5xx, reset, timeout) and retries ran out:
    nothing can be concluded about the object, least of all that it is absent."""


class StoreError(TranscodeError):
    """A Zarr store is missing, malformed or inconsistent."""


class UsageError(TranscodeError):
    """The user asked for something that cannot be done as asked."""


class TranscodeWarning(UserWarning):
    """Base class of the toolkit's warnings: the CLI prints each as one `warning:` line on stderr."""


class DeprecatedSpellingWarning(TranscodeWarning, DeprecationWarning):
    """An old flag, keyword or option name was used; it still works for one release and names its successor."""

    @classmethod
    def issue(cls, old: str, new: str, change: str = "same meaning") -> None:
        """Warn that `old` is an old spelling of `new` (`change`: what, if anything, differs), attributed to the
        first caller outside this package."""
        frame, level = sys._getframe(1), 2
        while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("transcode."):
            frame, level = frame.f_back, level + 1
        warnings.warn(f"{old} is deprecated: use {new} ({change}); the old spelling goes in the next release", cls,
                      stacklevel=level)


class CodecPortabilityWarning(TranscodeWarning):
    """A chosen codec cannot be decoded by some readers (the browser's, or the Rust and C++ ones)."""
