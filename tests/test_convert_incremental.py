"""Incremental conversion (tiles added later rewrite only their shards), `extend` (append a year, refuse to
prepend), kills at the exact moments between journal and manifest writes, bad tiles skipped or fatal under
--strict, and a source that convert never modifies."""

import json
import shutil

import pytest
from convert_helpers import cli, cli_json, shard_keys, tree_digests, tree_state

import transcode.engine.convert
from transcode.engine.convert import ConvertOptions, convert, extend
from transcode.engine.journal import JOURNAL_PREFIX, list_entries
from transcode.engine.plan import make_plan
from transcode.format.arrays import STRETCH_ARRAYS
from transcode.format.manifest import MANIFEST_KEY
from transcode.format.sidecar import SETTINGS_KEY, stretch_record_key
from transcode.legacy.archive import open_archive
from transcode.legacy.inventory import build_inventory
from transcode.storage import LocalStorage
from transcode.testing.synthetic import make_legacy_archive, year_root

SHARD, CHUNK = (256, 256), (32, 32)
LAYOUT = ["--shard-size", "256", "--chunk-size", "32"]
ADDED = ("grid_0.05_83.85", "grid_0.05_-79.85")  # one in the north 2x2 block, one in the south L


class Killed(BaseException):
    """Stands in for SIGKILL at one exact point inside convert() (after it only `finally` blocks run)."""


def _opts(**kw) -> ConvertOptions:
    return ConvertOptions(shard=SHARD, chunk=CHUNK, **kw)


def _plan(root, **kw):
    return make_plan(build_inventory(open_archive(str(root))), shard=SHARD, chunk=CHUNK, **kw)


def _partial_copy(full_archive, dest):
    """The full archive without the ADDED tiles' 2024 directories (landmasks stay, so the grids do not change)."""
    shutil.copytree(full_archive, dest)  # copy2: same bytes and mtimes
    for name in ADDED:
        shutil.rmtree(year_root(dest) / "2024" / name)
    return dest


def _add_back(full_archive, dest):
    for name in ADDED:
        shutil.copytree(year_root(full_archive) / "2024" / name, year_root(dest) / "2024" / name)


def _assert_same_store(store, direct, same_source: bool) -> None:
    """Every object byte-identical; when the two stores were converted from different paths, the sidecar
    differs in its record of the source path only."""
    got, want = tree_digests(store), tree_digests(direct)
    assert sorted(got) == sorted(want)
    diff = sorted(k for k in want if got[k] != want[k] and (same_source or k != SETTINGS_KEY))
    assert diff == [], f"{len(diff)} objects differ: {diff[:10]}"
    if not same_source:
        a, b = (json.loads((s / SETTINGS_KEY).read_bytes()) for s in (store, direct))
        assert a.pop("source") != b.pop("source") and a == b


@pytest.fixture(scope="module")
def full_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("incr") / "full"
    make_legacy_archive(root, years=(2024,), preset="small", seed=41)
    return root


def test_added_tiles_rewrite_only_their_shards(full_archive, tmp_path):
    source = _partial_copy(full_archive, tmp_path / "archive")
    full_plan = _plan(full_archive)
    touched = [t for t in full_plan.tasks if any(p.tile in ADDED for p in t.placements)]
    assert 0 < len(touched) < len(full_plan.tasks)
    partial_plan = _plan(source)
    assert partial_plan.grids == full_plan.grids
    untouched = {t.name for t in full_plan.tasks} - {t.name for t in touched}
    assert untouched <= {t.name for t in partial_plan.tasks}

    store = tmp_path / "store"
    src_before = tree_state(source)
    first = convert(str(source), str(store), _opts())
    assert first.ok and first.shards_written == len(partial_plan.tasks)
    assert tree_state(source) == src_before  # convert only reads the source

    _add_back(full_archive, source)
    src_before = tree_state(source)
    before = tree_state(store)
    second = convert(str(source), str(store), _opts())
    assert tree_state(source) == src_before
    assert second.ok and not second.nothing_to_do
    assert second.shards_planned == len(full_plan.tasks)
    assert second.shards_written == len(touched), (second.shards_written, [t.name for t in touched])
    assert second.shards_already_done == len(full_plan.tasks) - len(touched)
    assert second.metadata_written == 0  # same grids, same time axis

    after = tree_state(store)
    touched_keys = {t.key(a) for t in touched for a in ("embeddings", "scales")}
    # the stretch statistics of the zone-years of rewritten shards: each array's chunk of that year, its record
    zone_years = {(t.group, t.year, t.t) for t in touched}
    stretch_keys = {d.shard_key(g, ti, 0, 0) for g, _, ti in zone_years for d in STRETCH_ARRAYS}
    stretch_keys |= {stretch_record_key(g, y) for g, y, _ in zone_years}
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k) and not k.endswith("/")}
    journal = {k for k in changed if k.startswith(JOURNAL_PREFIX + "/") and k.endswith(".json")}
    partials = {k for k in changed if k.startswith(JOURNAL_PREFIX + "/") and k.endswith(".stats")}
    assert {k.removesuffix(".stats") for k in partials} == {k.removesuffix(".json") for k in journal}
    assert changed - journal - partials == touched_keys | stretch_keys | {MANIFEST_KEY}, \
        sorted(changed - journal - partials)
    for k in shard_keys(before) - touched_keys:  # every other shard kept its file (mtime_ns, inode, bytes)
        assert after[k] == before[k], k
    # journal: one new entry per rewritten shard; the entries of rewritten shards that existed are replaced
    existed = [t for t in touched if t.name in {p.name for p in partial_plan.tasks}]
    assert existed and len(existed) < len(touched)  # some rewritten shards existed before, others are new
    new_entries = {k for k in journal if k in after}
    gone_entries = {k for k in journal if k not in after}
    assert len(new_entries) == len(touched) and not new_entries & set(before)
    assert len(gone_entries) == len(existed) and gone_entries <= set(before)

    # the same bytes as converting the full archive directly
    direct = tmp_path / "direct"
    report = convert(str(full_archive), str(direct), _opts())
    assert report.ok and report.shards_written == len(full_plan.tasks)
    _assert_same_store(store, direct, same_source=False)


def test_incremental_run_killed_between_new_and_stale_journal_entry(full_archive, tmp_path, monkeypatch):
    """Killed right after a rewritten shard's new journal entry was written, before its old one was deleted;
    the re-run must not keep the stale entry (nor list the shard twice in the manifest)."""
    source = _partial_copy(full_archive, tmp_path / "archive")
    store = tmp_path / "store"
    convert(str(source), str(store), _opts())
    _add_back(full_archive, source)
    existed = set(list_entries(LocalStorage(store)))
    original = transcode.engine.convert.write_entry

    def write_then_die(st, task, fingerprint, objects):
        key = original(st, task, fingerprint, objects)
        if task.name in existed:
            raise Killed(key)
        return key

    with monkeypatch.context() as m:
        m.setattr(transcode.engine.convert, "write_entry", write_then_die)
        with pytest.raises(Killed):
            convert(str(source), str(store), _opts())
    assert convert(str(source), str(store), _opts()).ok
    direct = tmp_path / "direct"
    convert(str(source), str(direct), _opts())
    _assert_same_store(store, direct, same_source=True)


def _logged_run(store, source, monkeypatch, groups: list | None = None) -> tuple[list[tuple[str, str]], object]:
    """Convert, logging every put and delete of the store and every metadata object as it is built (and, into
    `groups`, the keys of each zone's metadata, as built together)."""
    log = []
    real_put, real_delete = LocalStorage.put, LocalStorage.delete
    real_iter = transcode.engine.convert.iter_zone_metadata

    def built(*a, **kw):
        for zone, objects in real_iter(*a, **kw):
            log.extend(("built", key) for key, _ in objects)
            if groups is not None:
                groups.append([key for key, _ in objects])
            yield zone, objects

    with monkeypatch.context() as m:
        m.setattr(LocalStorage, "put", lambda self, k, d: log.append(("put", k)) or real_put(self, k, d))
        m.setattr(LocalStorage, "delete", lambda self, k: log.append(("delete", k)) or real_delete(self, k))
        m.setattr(transcode.engine.convert, "iter_zone_metadata", built)
        report = convert(str(source), str(store), _opts())
    return log, report


def test_metadata_is_compared_and_written_one_zone_at_a_time(full_archive, tmp_path, monkeypatch):
    """The manifest is withdrawn before anything changes and the settings come before the metadata; each zone's
    metadata is built and written when the conversion reaches the zone, before its first shard and after the shards
    of the zones before it (the first shard does not wait for every zone); the root zarr.json comes last."""
    store = tmp_path / "store"
    groups: list[list[str]] = []
    log, report = _logged_run(store, full_archive, monkeypatch, groups)
    assert report.ok
    built = [k for e, k in log if e == "built"]
    zones = sorted({k.split("/")[0] for k in built if "/" in k})
    assert len(zones) > 1 and built[-1] == "zarr.json"
    changes = [(e, k) for e, k in log if e != "built"]
    assert changes[:2] == [("delete", MANIFEST_KEY), ("put", SETTINGS_KEY)]
    meta_puts = [k for e, k in changes if e == "put" and k in built]
    assert len(meta_puts) == len(set(meta_puts)) == len(built) == report.metadata_written
    # a zone's objects go out together, several requests at a time (in any order among them), zone after zone
    group_of = {k: i for i, keys in enumerate(groups) for k in keys}
    assert [group_of[k] for k in meta_puts] == sorted(group_of[k] for k in meta_puts)
    assert len(groups) > len(zones) - 1 and all(len(g) > 1 for g in groups[:-1])
    assert changes[-2:] == [("put", "zarr.json"), ("put", MANIFEST_KEY)]  # after every shard, before the manifest
    puts = [k for e, k in log if e == "put"]
    for zone in zones:
        entries = [i for i, k in enumerate(puts) if k.startswith(f"{JOURNAL_PREFIX}/{zone}/")]
        metadata = [i for i, k in enumerate(puts) if k.startswith(zone + "/") and k in built]
        assert entries and max(metadata) < min(entries), zone
    first_entry = next(i for i, (e, k) in enumerate(log) if e == "put" and k.startswith(JOURNAL_PREFIX + "/"))
    last_zone_built = next(i for i, (e, k) in enumerate(log) if e == "built" and k.startswith(zones[-1] + "/"))
    assert first_entry < last_zone_built
    second_zone = next(i for i, (e, k) in enumerate(log) if e == "built" and k.startswith(zones[1] + "/"))
    assert {k for e, k in log[:second_zone] if e == "put"} >= {k for k in built if k.startswith(zones[0] + "/")}

    # one coordinate chunk changed behind its back: only it is rewritten, after the manifest is withdrawn
    chunk = next(k for k in built if k.startswith(zones[-1] + "/") and "/c/" in k)
    want = (store / chunk).read_bytes()
    (store / chunk).write_bytes(b"not the coordinates")
    log, report = _logged_run(store, full_archive, monkeypatch)
    assert report.ok and report.metadata_written == 1 and report.shards_written == 0 and report.manifest
    changes = [(e, k) for e, k in log if e != "built"]
    assert changes == [("delete", MANIFEST_KEY), ("put", chunk), ("put", MANIFEST_KEY)]
    assert (store / chunk).read_bytes() == want
    log, report = _logged_run(store, full_archive, monkeypatch)
    assert report.nothing_to_do and report.metadata_written == 0 and [e for e, _ in log if e != "built"] == []


@pytest.fixture(scope="module")
def two_year_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend") / "archive"
    make_legacy_archive(root, years=(2023, 2024), preset="tiny", seed=42)
    return root


def test_extend_appends_a_year_like_a_direct_conversion(two_year_archive, tmp_path):
    src = str(two_year_archive)
    src_before = tree_state(two_year_archive)
    store, direct = tmp_path / "extended", tmp_path / "direct"
    first = cli_json("convert", src, str(store), "--years", "2023", *LAYOUT, "--no-progress")
    assert first["time"] == [2023] and first["shards_written"] > 0
    ext = cli_json("extend", str(store), "--years", "2024", *LAYOUT, "--no-progress")
    assert ext["time"] == [2023, 2024]
    assert ext["shards_already_done"] == 0 and ext["shards_written"] == ext["shards_planned"] > 0
    both = cli_json("convert", src, str(direct), "--years", "2023-2024", *LAYOUT, "--no-progress")
    assert both["shards_written"] == first["shards_written"] + ext["shards_written"]
    _assert_same_store(store, direct, same_source=True)

    # prepending is refused and leaves the store as it was
    before = tree_state(store)
    r = cli("extend", str(store), "--years", "2022", *LAYOUT, "--no-progress")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "prepend" in r.stderr and "rewrit" in r.stderr, r.stderr
    assert tree_state(store) == before
    assert tree_state(two_year_archive) == src_before


def test_extend_killed_before_its_manifest_is_written(two_year_archive, tmp_path, monkeypatch):
    """Killed after the new year's last shard was journaled, before the manifest was rewritten: the re-run
    must not call the store finished while its manifest still describes the old year only."""
    src = str(two_year_archive)
    store, direct = tmp_path / "store", tmp_path / "direct"
    convert(src, str(store), _opts(years=[2023]))

    def die(records):
        raise Killed()

    with monkeypatch.context() as m:
        m.setattr(transcode.engine.convert, "manifest_bytes", die)
        with pytest.raises(Killed):
            extend(str(store), [2024], _opts())
    report = extend(str(store), [2024], _opts())
    assert report.ok and report.shards_written == 0 and report.manifest
    convert(src, str(direct), _opts(years=[2023, 2024]))
    _assert_same_store(store, direct, same_source=True)


@pytest.fixture(scope="module")
def truncated_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty") / "archive"
    report = make_legacy_archive(root, years=(2024,), preset="tiny", seed=43,
                                 faults=[("truncated", "grid_0.05_83.95", 2024)])
    (fault,) = report.faults
    return root, fault


def test_bad_tile_is_skipped_and_reported(truncated_archive, tmp_path):
    root, fault = truncated_archive
    store = tmp_path / "store"
    doc = cli_json("convert", str(root), str(store), *LAYOUT, "--no-progress", expect=1)
    skipped = doc["skipped_tiles"]
    assert [(s["tile"], s["year"], s["path"]) for s in skipped] == [(fault.tile, 2024, fault.path)], skipped
    assert "truncated" in skipped[0]["message"]
    assert doc["failed"] == []

    plan = _plan(root)
    assert plan.tasks and all(p.tile != fault.tile for t in plan.tasks for p in t.placements)
    assert doc["shards_written"] == doc["shards_planned"] == len(plan.tasks)
    written = shard_keys(tree_digests(store))
    assert written == {t.key(a) for t in plan.tasks for a in ("embeddings", "scales")}


def test_bad_tile_under_strict_stops_before_any_shard(truncated_archive, tmp_path):
    root, fault = truncated_archive
    store = tmp_path / "store"
    r = cli("convert", str(root), str(store), *LAYOUT, "--strict", "--no-progress")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert fault.path in r.stderr and "--strict" in r.stderr, r.stderr
    written = shard_keys(tree_digests(store)) if store.exists() else set()
    assert written == set()


def test_convert_never_modifies_the_source(truncated_archive, two_year_archive, tmp_path):
    runs = {truncated_archive[0]: [("a", [], 1), ("b", ["--strict"], 1)],
            two_year_archive: [("a", ["--workers", "2"], 0), ("a", [], 0)]}  # the second: nothing to do
    for root, steps in runs.items():
        before = tree_state(root)
        for store, extra, rc in steps:
            r = cli("convert", str(root), str(tmp_path / f"{root.parent.name}-{store}"), *LAYOUT, *extra,
                    "--no-progress")
            assert r.returncode == rc, r.stderr
        assert tree_state(root) == before, root
