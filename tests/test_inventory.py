"""`inventory` on local archives: every injected fault is caught and named; the source is never touched."""

import json

import jsonschema
import pytest
from archive_checks import EXPECTED_KIND, snapshot

from transcode import schemas
from transcode.cli import main
from transcode.legacy.archive import open_archive
from transcode.legacy.inventory import build_inventory, read_inventory, write_inventory
from transcode.testing.synthetic import FAULTS, make_legacy_archive


def test_every_generator_fault_has_an_expected_problem_kind():
    assert set(EXPECTED_KIND) == set(FAULTS)


@pytest.fixture(scope="module")
def faulty_inventory(faulty_archive):
    return build_inventory(open_archive(faulty_archive.root), verify_hashes=True, workers=4)


@pytest.mark.parametrize("fault", sorted(EXPECTED_KIND))
def test_each_fault_is_reported_at_its_file(faulty_archive, faulty_inventory, fault):
    injected = [f for f in faulty_archive.faults if f.fault == fault]
    assert len(injected) == 1
    f = injected[0]
    found = {(p.path, p.kind) for p in faulty_inventory.problems}
    assert (f.path, EXPECTED_KIND[fault]) in found, sorted(found)


def test_no_problem_is_reported_on_intact_tiles(faulty_archive, faulty_inventory):
    bad = {(f.tile, f.year) for f in faulty_archive.faults if f.year}
    landmask_faults = {f.path for f in faulty_archive.faults if f.fault == "corrupt-landmask"}
    for p in faulty_inventory.problems:
        assert (p.tile, p.year) in bad or p.path in landmask_faults, p
    usable = {(t.tile, t.year) for t in faulty_inventory.tiles if t.usable}
    for t in faulty_inventory.tiles:
        if (t.tile, t.year) not in bad:
            assert (t.tile, t.year) in usable


def test_hash_corruption_needs_verify_hashes(faulty_archive):
    inv = build_inventory(open_archive(faulty_archive.root), verify_hashes=False)
    corrupt = next(f for f in faulty_archive.faults if f.fault == "corrupt-bytes")
    assert not [p for p in inv.problems if p.path == corrupt.path]
    truncated = next(f for f in faulty_archive.faults if f.fault == "truncated")
    kinds = {p.kind for p in inv.problems if p.path == truncated.path}
    assert {"truncated", "size-mismatch"} <= kinds  # manifest sizes are checked without hashing


def test_clean_archive_counts_and_exit_code(clean_archive, tmp_path, capsys):
    out = tmp_path / "inv.parquet"
    rc = main(["inventory", clean_archive.root, "--json", "--out", str(out), "--verify-hashes", "--no-progress"])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, schemas.load("inventory.schema.json"))
    assert rc == 0, doc["problems"]
    s = doc["summary"]
    assert s["clean"] and s["tiles"] == 3 and s["usable_tiles"] == 3 and s["years"] == [2024]
    assert s["per_zone"] == {"utm30": {"2024": 2}, "utm31": {"2024": 1}}
    assert s["landmasks"]["files"] == 3 and s["landmasks"]["coverage"] == 1.0
    assert s["bytes"] == sum(t["bytes"] for t in s["per_year"].values()) > 3 * 20_000_000
    assert len(s["registries"]) >= 5
    back = read_inventory(out)
    assert [t.tile for t in back.tiles] == ["grid_-0.05_-79.95", "grid_-0.05_83.95", "grid_0.05_83.95"]
    assert all(t.embeddings_sha256 and len(t.embeddings_sha256) == 64 for t in back.tiles)
    assert back.tiles[0].height == back.tiles[0].footprint_height


def test_inventory_roundtrips_through_parquet(faulty_inventory, tmp_path):
    path = tmp_path / "i.parquet"
    write_inventory(faulty_inventory, path)
    back = read_inventory(path)
    assert back.tiles == faulty_inventory.tiles
    assert back.landmasks == faulty_inventory.landmasks
    assert sorted(back.problems) == sorted(faulty_inventory.problems)
    assert back.summary() == faulty_inventory.summary()


def test_cli_exit_1_on_problems_and_source_untouched(faulty_archive, tmp_path, capsys):
    before = snapshot(faulty_archive.root)
    rc = main(["inventory", faulty_archive.root, "--verify-hashes", "--out", str(tmp_path / "x.parquet"),
               "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 1
    for f in faulty_archive.faults:
        assert f.path in text
    assert snapshot(faulty_archive.root) == before


def test_usage_errors_exit_2(clean_archive, tmp_path, capsys):
    assert main(["inventory", str(tmp_path / "nothing-here")]) == 2
    assert "no such archive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["inventory", clean_archive.root, "--years", "20x4"])
    assert e.value.code == 2
    inside = f"{clean_archive.root}/inv.parquet"
    assert main(["inventory", clean_archive.root, "--out", inside]) == 2
    assert "inside the source" in capsys.readouterr().err
    (tmp_path / "notarchive").mkdir()
    (tmp_path / "notarchive" / "x.txt").write_text("x")
    assert main(["inventory", str(tmp_path / "notarchive"), "--out", "-"]) == 2
    assert "not a legacy TESSERA archive" in capsys.readouterr().err


def test_object_layout_and_year_filter(tmp_path):
    rep = make_legacy_archive(tmp_path / "a", years=(2023, 2024), preset="tiny", layout="object",
                              dataset="v1.1-cam", landmask_version="lm2", seed=1)
    archive = open_archive(rep.root, years=[2024])
    assert archive.layout == "object" and archive.year_root == "npy/v1.1-cam"
    assert archive.landmask_root == "landmasks/lm2"
    inv = build_inventory(archive, verify_hashes=True)
    assert inv.clean, inv.problems
    assert {t.year for t in inv.tiles} == {2024} and len(inv.tiles) == 3


def test_unexpected_files_and_listed_but_missing(clean_archive, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(clean_archive.root, root)
    year_dir = root / "global_0.1_degree_representation" / "2024"
    (year_dir / "notes.txt").write_text("hello")
    victim = year_dir / "grid_0.05_83.95"
    shutil.rmtree(victim)
    inv = build_inventory(open_archive(str(root)))
    kinds = {(p.kind, p.path) for p in inv.problems}
    assert ("unexpected-file", "global_0.1_degree_representation/2024/notes.txt") in kinds
    assert ("listed-but-missing",
            "global_0.1_degree_representation/2024/grid_0.05_83.95/grid_0.05_83.95.npy") in kinds
