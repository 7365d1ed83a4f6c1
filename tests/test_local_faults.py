"""Local faults under `convert`: a disk that fills while a shard or the manifest is written (a small tmpfs), a
read-only store, a source tile that shrinks or changes after the inventory or while it is read. Each ends with a
clear one-line error and the exit code scripts expect, leaves nothing half-written visible (no temporary file, no
manifest of an unfinished store, no shard cut short), never touches the source, and resumes to a store
byte-identical to an uninterrupted run once the fault is gone.

Each test's outcome is one row of OUTCOMES (fault, verb, exit code, what is left behind), which the test asserts
and then records for docs/reliability.md (tests/outcomes.py)."""

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from convert_helpers import SHARD_KEY, check_complete_shard, cli, cli_json, tree_digests, tree_state
from outcomes import record

import transcode
from transcode.errors import ArchiveError
from transcode.format.manifest import MANIFEST_KEY
from transcode.format.sidecar import SETTINGS_KEY
from transcode.legacy.tiles import NpyTileFile, Window
from transcode.storage.local import LocalStorage
from transcode.testing.synthetic import make_legacy_archive

LAYOUT = ["--shard-size", "256", "--chunk-size", "32", "--no-progress"]
CHUNKS_PER_SHARD = (256 // 32) ** 2
TILE = "grid_0.05_83.95"  # a narrow high-latitude tile: 5 shards of each array, quick to convert
NOTHING_VISIBLE = "no manifest, no temporary file, every shard present complete"

# fault -> (verb, exit code, what is left behind); the tests below assert these
OUTCOMES = {
    "disk full while writing a shard": ("convert", 2, NOTHING_VISIBLE + "; resumes byte-identical"),
    "disk full while writing the manifest": ("convert", 2, ("shards and journal kept, no manifest, no temporary "
                                                            "file; resumes byte-identical")),
    "read-only store": ("convert", 2, "store unchanged; resumes byte-identical"),
    "source tile shrank after the inventory": ("convert", 1, (NOTHING_VISIBLE + "; source untouched; resumes "
                                                              "byte-identical once the tile is whole")),
    "source tile changed while read": ("tile read", None, "ArchiveError naming the file"),
}


def recorded(fault: str) -> None:
    """The test of `fault` passed: its row of OUTCOMES goes to the reliability table's records."""
    verb, code, left = OUTCOMES[fault]
    record("local", fault, fault=fault, verb=verb, exit=code, left=left)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults") / "archive"
    make_legacy_archive(root, years=(2024,), tiles=[TILE], seed=31)
    return root


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    """The uninterrupted run every faulted one must end identical to."""
    store = tmp_path_factory.mktemp("ref") / "store"
    report = convert(archive, store)
    assert report.shards_planned >= 4 and report.failed == []
    return store


def convert(source: Path, store: Path):
    """An uninterrupted run through the API (in this process: quicker than the CLI's start-up)."""
    return transcode.convert(str(source), str(store), shard_size=256, chunk_size=32)


@contextmanager
def tmpfs(path: Path, kib: int):
    """A tmpfs of `kib` KiB mounted at path (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], capture_output=True,
                       text=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(("remount",) + options), str(path)], check=True)


def used_kib(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


def nothing_half_written(store: Path) -> list[str]:
    """What a reader could mistake for finished data: temporary files, a manifest, shards cut short (complete
    shards from before the fault are fine: the journal lists them and the next run keeps them)."""
    bad = []
    for p in store.rglob("*"):
        key = p.relative_to(store).as_posix()
        if p.is_file() and p.name.endswith(".partial"):
            bad.append(f"temporary file {key}")
        elif key == MANIFEST_KEY:
            bad.append("a manifest")
        elif p.is_file() and SHARD_KEY.match(key):
            try:
                check_complete_shard(p.read_bytes(), CHUNKS_PER_SHARD, key)
            except AssertionError as e:
                bad.append(f"shard cut short: {e}")
    return bad


def one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    line = [s for s in stderr.splitlines() if ": error: " in s]
    assert len(line) == 1, stderr
    for n in needles:
        assert n in line[0], (n, line[0])


def assert_identical(store: Path, reference: Path, same_source: bool = True) -> None:
    """Every object equal; with another source path (a copy of the archive), the settings document differs in
    the source it records and nowhere else."""
    got, want = tree_digests(store), tree_digests(reference)
    assert sorted(got) == sorted(want)
    differ = [k for k in want if got[k] != want[k]]
    if not same_source and SETTINGS_KEY in differ:
        a, b = (json.loads((s / SETTINGS_KEY).read_text()) for s in (store, reference))
        assert a.pop("source") != b.pop("source") and a == b
        differ.remove(SETTINGS_KEY)
    assert differ == []


def test_disk_full_while_writing_a_shard(archive, reference, tmp_path):
    verb, code, _ = OUTCOMES["disk full while writing a shard"]
    source_before = tree_state(archive)
    total_kib = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file()) // 1024
    with tmpfs(tmp_path / "mnt", total_kib // 3) as mnt:
        store = mnt / "store"
        r = cli(verb, str(archive), str(store), *LAYOUT)
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
        one_line_error(r.stderr, str(store), "No space left on device", "ENOSPC")
        assert nothing_half_written(store) == []
        assert any(SHARD_KEY.match(p.relative_to(store).as_posix()) for p in store.rglob("*")), \
            "the disk filled before any shard was finished: the test no longer tests a fault mid-run"

        remount(mnt, f"size={total_kib * 2}k")
        resumed = cli_json(verb, str(archive), str(store), *LAYOUT)
        assert resumed["shards_already_done"] > 0 and resumed["failed"] == []
        assert_identical(store, reference)
    assert tree_state(archive) == source_before
    recorded("disk full while writing a shard")


@contextmanager
def finished_on_tmpfs(archive: Path, reference: Path, where: Path):
    """A finished store on a tmpfs twice its size: (mount point, store, the store's size in KiB)."""
    total_kib = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file()) // 1024
    with tmpfs(where, total_kib * 2) as mnt:
        convert(archive, mnt / "store")
        yield mnt, mnt / "store", total_kib


def test_disk_full_while_writing_the_manifest(archive, reference, tmp_path):
    verb, code, _ = OUTCOMES["disk full while writing the manifest"]
    with finished_on_tmpfs(archive, reference, tmp_path / "mnt") as (mnt, store, total_kib):
        # a run that stopped just before the manifest, on a disk with not one page left for it
        (store / MANIFEST_KEY).unlink()
        remount(mnt, f"size={used_kib(mnt)}k")
        before = tree_digests(store)
        r = cli(verb, str(archive), str(store), *LAYOUT)
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
        one_line_error(r.stderr, MANIFEST_KEY, "ENOSPC")
        assert nothing_half_written(store) == []
        assert tree_digests(store) == before

        remount(mnt, f"size={total_kib * 2}k")
        resumed = cli_json(verb, str(archive), str(store), *LAYOUT)
        assert resumed["shards_written"] == 0 and resumed["manifest"]
        assert_identical(store, reference)
    recorded("disk full while writing the manifest")


def test_read_only_store(archive, reference, tmp_path):
    verb, code, _ = OUTCOMES["read-only store"]
    with finished_on_tmpfs(archive, reference, tmp_path / "mnt") as (mnt, store, _):
        journal = sorted((store / ".tessera/journal").rglob("*.json"))
        for entry in journal[:2]:  # two shards to redo, as after an interrupted run
            entry.unlink()
        remount(mnt, "ro")
        before = tree_state(store)
        r = cli(verb, str(archive), str(store), *LAYOUT)
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
        one_line_error(r.stderr, str(store), "EROFS")
        assert tree_state(store) == before

        # a new store on a read-only file system: refused before anything is planned to be written
        r = cli(verb, str(archive), str(mnt / "new"), *LAYOUT)
        assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
        one_line_error(r.stderr, str(mnt / "new"), "EROFS")

        remount(mnt, "rw")
        resumed = cli_json(verb, str(archive), str(store), *LAYOUT)
        assert resumed["shards_written"] == 2 and resumed["failed"] == []
        assert_identical(store, reference)
    recorded("read-only store")


def test_source_tile_shrank_after_the_inventory(archive, reference, tmp_path):
    verb, code, _ = OUTCOMES["source tile shrank after the inventory"]
    source = tmp_path / "archive"
    subprocess.run(["cp", "-a", str(archive), str(source)], check=True)
    inventory = tmp_path / "inventory.parquet"
    cli_json("inventory", str(source), "--out", str(inventory))
    tile = next(source.rglob(f"{TILE}.npy"))
    whole = tile.read_bytes()
    tile.write_bytes(whole[: len(whole) // 2])  # cut while the inventory was being used
    source_before = tree_state(source)

    store = tmp_path / "store"
    r = cli(verb, str(source), str(store), "--inventory", str(inventory), "--json", *LAYOUT)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    report = json.loads(r.stdout)
    # the shards of the cut tile failed; their zone-year's stretch statistics are left invalid (count -1) until
    # a run finishes them
    stats = [f for f in report["failed"] if f["error"].startswith("stretch statistics left invalid")]
    shards = [f for f in report["failed"] if f not in stats]
    assert shards and all(tile.name in f["error"] and "changed since the inventory" in f["error"]
                          for f in shards), report["failed"]
    assert [f["shard"] for f in stats] == sorted({f["shard"].rsplit("/", 2)[0] for f in shards}), report["failed"]
    assert report["manifest"] == "" and nothing_half_written(store) == []
    assert tree_state(source) == source_before  # convert never writes to its source

    tile.write_bytes(whole)
    resumed = cli_json(verb, str(source), str(store), "--inventory", str(inventory), *LAYOUT)
    assert resumed["shards_written"] == len(shards) and resumed["failed"] == []
    assert_identical(store, reference, same_source=False)
    recorded("source tile shrank after the inventory")


def test_source_tile_changed_while_read(archive, tmp_path):
    _, _, left = OUTCOMES["source tile changed while read"]
    source = tmp_path / "archive"
    subprocess.run(["cp", "-a", str(archive), str(source)], check=True)
    tile = next(source.rglob(f"{TILE}.npy"))
    storage = LocalStorage(source)
    key = tile.relative_to(source).as_posix()
    f = NpyTileFile(storage, key)
    first = f.read(Window(0, 4, 0, 4))
    with open(tile, "r+b") as out:  # rewritten in place between two windows: same size, new bytes and mtime
        out.seek(f.header.data_offset)
        out.write(bytes(64))
    os.utime(tile, ns=(tile.stat().st_atime_ns, tile.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(ArchiveError, match="changed while it was read") as e:
        f.read(Window(4, 8, 0, 4))
    assert e.value.where == str(tile), left
    assert first.shape == (4, 4, 128)
    recorded("source tile changed while read")
