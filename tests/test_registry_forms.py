"""Registries as the incumbent's scanner really writes them (FORMATS.md §1.3): paths of another machine's mount,
s3:// URLs, a keyless landmask registry, SHA256SUM beside the landmasks. Rows are matched by tile, never by path:
a clean archive is clean, and every injected fault is named exactly as with relative paths; locally and on the
Ceph RADOS Gateway."""

import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from archive_checks import EXPECTED_KIND
from conftest import FAULT_YEARS, fault_plan

from transcode.cli import main
from transcode.legacy.archive import open_archive
from transcode.legacy.inventory import build_inventory
from transcode.storage import S3Options, S3Storage
from transcode.testing.synthetic import FOREIGN_MOUNT, make_legacy_archive

LANDMASK_SUMS = "global_0.1_degree_tiff_all/SHA256SUM"
FAULTY_FORMS = [("foreign", "keyless"), ("s3", "parquet")]


def _inventory(root, *args, capsys) -> tuple[int, dict]:
    rc = main(["inventory", str(root), "--verify-hashes", "--json", "--out", "-", "--no-progress", *args])
    return rc, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("landmask_registry", ["parquet", "keyless"])
@pytest.mark.parametrize("registry_paths", ["relative", "foreign", "s3"])
def test_clean_archive_is_clean_in_every_registry_form(tmp_path, capsys, registry_paths, landmask_registry):
    rep = make_legacy_archive(tmp_path / "a", years=(2024,), preset="tiny", seed=3, registry_paths=registry_paths,
                              landmask_registry=landmask_registry)
    manifest = pq.read_table(tmp_path / "a" / "manifest.parquet").to_pylist()
    landmask_rows = pq.read_table(tmp_path / "a" / "landmasks.parquet").to_pylist()
    prefix = {"relative": "2024/", "foreign": FOREIGN_MOUNT + "/", "s3": "s3://"}[registry_paths]
    assert all(r["grid_path"].startswith(prefix) for r in manifest)
    if landmask_registry == "keyless":
        assert set(landmask_rows[0]) == {"lat", "lon", "hash", "file_size"}
    rc, doc = _inventory(rep.root, capsys=capsys)
    assert rc == 0, doc["problems"]
    assert doc["problems"] == [] and doc["summary"]["clean"]
    assert {"manifest.parquet", "landmasks.parquet", "registry.parquet", LANDMASK_SUMS} <= set(doc["summary"]["registries"])
    assert doc["summary"]["landmasks"]["coverage"] == 1.0


@pytest.fixture(scope="module", params=FAULTY_FORMS, ids=lambda f: "-".join(f))
def faulty_form(request, tmp_path_factory):
    registry_paths, landmask_registry = request.param
    root = tmp_path_factory.mktemp("faulty-" + registry_paths) / "archive"
    return make_legacy_archive(root, years=FAULT_YEARS, preset="tiny", faults=fault_plan(), seed=7,
                               registry_paths=registry_paths, landmask_registry=landmask_registry)


def test_every_fault_is_named_as_with_relative_paths(faulty_form, faulty_archive):
    inv = build_inventory(open_archive(faulty_form.root), verify_hashes=True, workers=4)
    found = {(p.path, p.kind) for p in inv.problems}
    for f in faulty_form.faults:
        assert (f.path, EXPECTED_KIND[f.fault]) in found, (f, sorted(found))
    relative = build_inventory(open_archive(faulty_archive.root), verify_hashes=True, workers=4)
    assert found == {(p.path, p.kind) for p in relative.problems}
    assert not [p for p in inv.problems if p.kind == "unexpected-file"]
    # sizes are still checked against the matched file: the truncated tile disagrees with manifest.parquet
    truncated = next(f for f in faulty_form.faults if f.fault == "truncated")
    assert any(p.kind == "size-mismatch" and p.path == truncated.path and "manifest.parquet" in p.message
               for p in inv.problems)


def test_landmask_sha256sum_is_their_hash_registry(faulty_form):
    inv = build_inventory(open_archive(faulty_form.root), verify_hashes=True, workers=4)
    corrupt = next(f for f in faulty_form.faults if f.fault == "corrupt-landmask")
    assert any(p.kind == "hash-mismatch" and p.path == corrupt.path and LANDMASK_SUMS in p.message
               for p in inv.problems)
    assert LANDMASK_SUMS in inv.registries


def test_really_absent_tiles_and_landmasks_are_reported_with_year_and_tile(tmp_path):
    rep = make_legacy_archive(tmp_path / "a", years=(2023, 2024), preset="tiny", seed=2, registry_paths="s3",
                              landmask_registry="keyless")
    root = tmp_path / "a"
    shutil.rmtree(root / "global_0.1_degree_representation" / "2024" / "grid_0.05_83.95")
    (root / "global_0.1_degree_tiff_all" / "grid_-0.05_-79.95.tiff").unlink()
    inv = build_inventory(open_archive(rep.root))
    missing = {(p.path, p.year, p.tile) for p in inv.problems if p.kind == "listed-but-missing"}
    base = "global_0.1_degree_representation/2024/grid_0.05_83.95/grid_0.05_83.95"
    assert (f"{base}.npy", 2024, "grid_0.05_83.95") in missing
    assert (f"{base}_scales.npy", 2024, "grid_0.05_83.95") in missing
    assert ("global_0.1_degree_tiff_all/grid_-0.05_-79.95.tiff", None, "grid_-0.05_-79.95") in missing
    assert {p[1] for p in missing} == {2024, None}  # the 2023 copy of the tile is present: nothing about it
    # a year filter leaves the registry rows of other years alone
    only_2023 = build_inventory(open_archive(rep.root, years=[2023]))
    assert not [p for p in only_2023.problems if p.year == 2024]


# ------------------------------------------------------------------ on the RADOS Gateway

def _cli(server, *args):
    return subprocess.run([sys.executable, "-m", "transcode", *args], env=server.env(), capture_output=True,
                          text=True, timeout=600, check=False)


def _s3(server) -> list[str]:
    return ["--endpoint-url", server.endpoint_url, "--region", server.region, "--path-style"]


@pytest.fixture(scope="module")
def rgw_faulty(rgw_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("rgw-faulty") / "archive"
    rep = make_legacy_archive(root, years=FAULT_YEARS, preset="tiny", faults=fault_plan(), seed=7,
                              registry_paths="s3", landmask_registry="keyless")
    bucket = rgw_server.new_bucket("forms")
    rgw_server.upload_tree(rep.root, bucket, "tessera")
    return rep, bucket


def test_rgw_every_fault_named_like_local(rgw_server, rgw_faulty):
    rep, bucket = rgw_faulty
    r = _cli(rgw_server, "inventory", rgw_server.url(bucket, "tessera"), *_s3(rgw_server), "--verify-hashes",
             "--json", "--out", "-", "--no-progress")
    assert r.returncode == 1, r.stderr
    found = {(p["path"], p["kind"]) for p in json.loads(r.stdout)["problems"]}
    for f in rep.faults:
        assert (f.path, EXPECTED_KIND[f.fault]) in found, (f, sorted(found))
    local = build_inventory(open_archive(rep.root), verify_hashes=True, workers=4)
    assert found == {(p.path, p.kind) for p in local.problems}


@pytest.mark.parametrize("registry_paths, landmask_registry", [("foreign", "parquet"), ("s3", "keyless")])
def test_rgw_clean_archive_in_each_registry_form_exits_0(rgw_server, tmp_path, registry_paths, landmask_registry):
    rep = make_legacy_archive(tmp_path / "a", years=(2024,), preset="tiny", seed=3, layout="object",
                              dataset_version="1.1", registry_paths=registry_paths,
                              landmask_registry=landmask_registry)
    bucket = rgw_server.new_bucket("clean-" + registry_paths)
    rgw_server.upload_tree(rep.root, bucket, "")
    r = _cli(rgw_server, "inventory", rgw_server.url(bucket), *_s3(rgw_server), "--verify-hashes", "--json",
             "--out", "-", "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["problems"] == []
    assert "landmasks/v1/SHA256SUM" in doc["summary"]["registries"]
    assert (doc["summary"]["dataset"]["version"], doc["summary"]["dataset"]["source"]) == ("1.1", "npy/v1.1")


def test_rgw_parallel_listing_is_the_sorted_listing(rgw_server, rgw_faulty, monkeypatch):
    _, bucket = rgw_faulty
    rgw_server.apply_env(monkeypatch)  # credentials from the environment, as the CLI's
    s3 = S3Storage(bucket, "tessera", S3Options(endpoint_url=rgw_server.endpoint_url, region=rgw_server.region,
                                                path_style=True))
    prefix = "global_0.1_degree_representation"
    sequential = list(s3.list(prefix))
    assert len(sequential) == 35  # 12 tile-years x 3 files, less the 2 that faults deleted, plus SHA256SUMS
    assert list(s3.list_parallel(prefix, threads=4)) == sequential
