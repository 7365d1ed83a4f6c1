"""LocalStorage: byte-ordered streaming listing, ranged reads, atomic writes."""

import numpy as np
import pytest

from transcode.errors import ObjectNotFoundError, StorageError
from transcode.legacy.tiles import NpyTileFile, Window
from transcode.storage import LocalStorage, open_storage


def test_listing_is_in_utf8_binary_key_order(tmp_path):
    keys = ["a/x", "a-b", "a.b", "b", "a/y/z", "é", "Z", "a0"]
    for k in keys:
        p = tmp_path / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(k)
    listed = [o.key for o in LocalStorage(tmp_path).list()]
    assert listed == sorted(keys, key=lambda k: k.encode())
    assert [o.key for o in LocalStorage(tmp_path).list("a")] == ["a/x", "a/y/z"]
    assert LocalStorage(tmp_path).list_dirs() == ["a"]


def test_ranged_read_stat_and_missing(tmp_path):
    (tmp_path / "f").write_bytes(bytes(range(256)))
    s = open_storage(str(tmp_path))
    assert s.read_range("f", 10, 5) == bytes(range(10, 15))
    assert s.read_range("f", 250, 100) == bytes(range(250, 256))
    assert s.stat("f").size == 256
    with pytest.raises(ObjectNotFoundError, match="nope.*ENOENT"):
        s.stat("nope")
    assert s.exists("f") and not s.exists("nope")
    with pytest.raises(StorageError, match="unsupported URL scheme"):
        open_storage("gs://bucket/x")


def test_atomic_put_leaves_no_partial_files(tmp_path):
    s = LocalStorage(tmp_path)
    s.put("d/obj", b"x" * 1000)
    s.put("d/obj", b"y" * 10)
    assert (tmp_path / "d" / "obj").read_bytes() == b"y" * 10
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["obj"]


@pytest.mark.parametrize("window", [Window(0, 9, 0, 11), Window(3, 4, 5, 6), Window(2, 9, 0, 1), Window(0, 1, 10, 11),
                                    Window(4, 4, 2, 6)])
def test_ranged_window_equals_memory_mapped_window(tmp_path, window):
    rng = np.random.default_rng(1)
    emb = rng.integers(-128, 128, (9, 11, 128), dtype=np.int8)
    np.save(tmp_path / "e.npy", emb)
    f = NpyTileFile(LocalStorage(tmp_path), "e.npy")
    expected = emb[window.row0:window.row1, window.col0:window.col1]
    assert np.array_equal(f.read(window), expected)
    assert np.array_equal(f._read_ranged(window), expected)
