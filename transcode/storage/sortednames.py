"""A directory's entries in key order, held as one numpy array of encoded names (a few dozen bytes each) rather
than an `os.DirEntry` each: a year directory of a full archive has hundreds of thousands of tile directories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from transcode.storage.causes import OS_NOT_FOUND, os_error

_CHUNK = 4096  # names gathered as Python bytes before they are packed into an array


def sorted_names(directory: Path | str) -> Iterator[tuple[str, bool]]:
    """(name, is_dir) of each entry, sorted as full keys sort: a directory 'a' sorts as 'a/' so 'a-b' < 'a/x'.
    A directory removed before it is listed has no entries."""
    chunks: list[np.ndarray] = []
    part: list[bytes] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                try:
                    is_dir = entry.is_dir(follow_symlinks=True)
                except OSError:
                    is_dir = False
                part.append((entry.name + ("/" if is_dir else "")).encode("utf-8", "surrogateescape"))
                if len(part) >= _CHUNK:
                    chunks.append(np.array(part, dtype=np.bytes_))
                    part = []
    except OSError as e:
        if e.errno in OS_NOT_FOUND:
            return  # removed while the listing ran: nothing below it any more
        raise os_error(str(directory), e, "list") from e
    if part:
        chunks.append(np.array(part, dtype=np.bytes_))
    del part
    if not chunks:
        return
    keys = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    del chunks
    keys.sort()  # bytewise, as bytes sort (names hold no NUL, so numpy's padding changes nothing)
    for i in range(len(keys)):
        key = keys[i].decode("utf-8", "surrogateescape")
        yield (key[:-1], True) if key.endswith("/") else (key, False)
