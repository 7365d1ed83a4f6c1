"""The incumbent, geotessera 0.11, as the oracle of the store format: the stores it writes validate clean under our
tessera rules at every level, and the stores our `convert` writes pass its own tools (`zarr-scan`, `zarr-verify`,
`zarr-stretch`). Runs where geotessera is installed (Python >= 3.12: the `incumbent` extra, which
`tools/install_test_deps.sh --newest` installs); skips with the reason elsewhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from convert_helpers import cli_json

from transcode.engine.convert import ConvertOptions, convert
from transcode.testing.incumbent import find_incumbent, zero_water_embeddings
from transcode.testing.synthetic import make_legacy_archive
from transcode.validate import ValidateOptions, validate

INCUMBENT, WHY = find_incumbent()
pytestmark = pytest.mark.skipif(INCUMBENT is None, reason=WHY)

YEAR = 2024


BEFORE: dict[Path, dict] = {}  # an archive's files before the incumbent was run on it


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _findings(report, *severities: str) -> list:
    return [f for f in report.findings if f.severity in severities]


@pytest.fixture(scope="module")
def v1(tmp_path_factory):
    """A v1 archive (coastline landmasks, water embeddings zero as in the published tiles) and the incumbent's store
    of it."""
    base = tmp_path_factory.mktemp("incumbent-v1")
    archive = base / "archive"
    make_legacy_archive(archive, years=(YEAR,), preset="small", seed=3)
    assert zero_water_embeddings(archive) > 0
    store = base / "incumbent.zarr"
    INCUMBENT.build_store(archive, store, [YEAR], workdir=base / "work")
    return archive, store


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    """A v2 archive (no landmasks) and the incumbent's store of it with nested depths 4 and 16."""
    base = tmp_path_factory.mktemp("incumbent-v2")
    archive = base / "archive"
    make_legacy_archive(archive, years=(YEAR,), preset="tiny", dataset="v2", landmasks="none", seed=4)
    BEFORE[archive] = _listing(archive)
    store = base / "incumbent.zarr"
    INCUMBENT.build_store(archive, store, [YEAR], workdir=base / "work", depths=(4, 16), landmask=False,
                          dataset=("2.0", "vultr"))
    return archive, store


@pytest.fixture(scope="module")
def ours_v1(v1, tmp_path_factory):
    """Our store of the v1 archive."""
    archive, _ = v1
    store = tmp_path_factory.mktemp("ours-v1") / "store"
    assert convert(str(archive), str(store), ConvertOptions()).ok
    return store


@pytest.mark.parametrize("which", ["v1", "v2"])
def test_incumbent_store_validates_clean_at_every_level(which, request):
    archive, store = request.getfixturevalue(which)
    report = validate(str(store), ValidateOptions(level="fidelity", source=str(archive)))
    assert _findings(report, "error", "warning") == []
    assert report.fidelity["compared"] > 0 and report.fidelity["mismatched"] == 0
    codes = {f.code for f in _findings(report, "info")}
    assert codes <= {"no-manifest", "chunk-pairing", "shard-gap"}, codes
    assert report.counters["stretch_chunks"] > 0  # its statistics were read, checked and agree with its pixels
    if which == "v1":  # its all-zero water chunks are left out beside stored scales chunks: understood, not errors
        assert report.counters["unpaired_chunks"] > 0
    else:  # both nested depths compared with the embeddings at every pixel
        assert report.counters["depth_pixels_compared"] == 2 * report.fidelity["compared"]
    # the command a user runs: exit 0, no error or warning
    doc = cli_json("validate", str(store), "--profile", "tessera", "--level", "content", "--no-progress")
    assert (doc["profile"], doc["level"]) == ("tessera", "content") and doc["summary"]["exit_code"] == 0
    assert [f for f in doc["findings"] if f["severity"] in ("error", "warning")] == [], doc["findings"]


def test_incumbent_tools_pass_our_store(v1, ours_v1, tmp_path):
    archive, _ = v1
    rows = INCUMBENT.scan(ours_v1, archive, workdir=tmp_path / "scan")
    status = {(r["zone"], r["shard_row"], r["shard_col"]): r["status"] for r in rows}
    assert set(status.values()) <= {"written", "empty"}, [k for k, v in status.items() if v == "missing"]
    assert sum(v == "written" for v in status.values()) == len(list(ours_v1.glob("utm*/embeddings/c/*/0/*/*")))
    samples = INCUMBENT.verify(ours_v1, archive, workdir=tmp_path / "verify", samples=50)
    assert samples and all("mismatch" not in str(r.get("status", "")) for r in samples)


@pytest.fixture(scope="module")
def ours_v2(v2, tmp_path_factory):
    """Our store of the v2 archive, with the same nested depths."""
    archive, _ = v2
    store = tmp_path_factory.mktemp("ours-v2") / "store"
    assert convert(str(archive), str(store), ConvertOptions(depths=[4, 16])).ok
    return store


def test_incumbent_tools_pass_our_store_with_depths(v2, ours_v2, tmp_path):
    """Its zarr-scan sees every shard of every depth, its zarr-verify checks each depth is a prefix."""
    archive, _ = v2
    rows = INCUMBENT.scan(ours_v2, archive, workdir=tmp_path / "scan")
    assert {r["status"] for r in rows} <= {"written", "empty"} and any(r["status"] == "written" for r in rows)
    assert INCUMBENT.verify(ours_v2, archive, workdir=tmp_path / "verify", samples=50)


def test_incumbent_stretch_agrees_on_our_store(v1, ours_v1, tmp_path):
    """zarr-stretch --mode pca on our store: the same pixel count and the same PCA as on its own store of the same
    archive (the PCA comes from N, S and M, exact; the percentiles come from the sample, which is random in its
    store, so they are not compared)."""
    _, theirs = v1
    mine = INCUMBENT.stretch(shutil.copytree(ours_v1, tmp_path / "ours"), YEAR, workdir=tmp_path / "mine")
    ref = INCUMBENT.stretch(shutil.copytree(theirs, tmp_path / "theirs"), YEAR, workdir=tmp_path / "ref")
    assert mine["stats_pixels"] == ref["stats_pixels"] > 0
    assert mine["zones_used"] == ref["zones_used"]
    # float tolerance: the incumbent rounds each dequantised value to float32 before summing (ours are exact)
    np.testing.assert_allclose(mine["pca_mean"], ref["pca_mean"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(mine["pca_explained_variance_ratio"], ref["pca_explained_variance_ratio"], rtol=1e-6)
    a, b = np.asarray(mine["pca_components"]), np.asarray(ref["pca_components"])
    np.testing.assert_allclose(np.abs((a * b).sum(axis=1)), 1.0, atol=1e-6)  # the same axes, up to sign


def test_incumbent_tools_pass_its_own_store(v1, tmp_path):
    """The oracle agrees with itself (else the comparisons above would prove nothing)."""
    archive, store = v1
    copy = shutil.copytree(store, tmp_path / "store")
    rows = INCUMBENT.scan(copy, archive, workdir=tmp_path / "scan")
    assert {r["status"] for r in rows} <= {"written", "empty"}
    assert INCUMBENT.verify(copy, archive, workdir=tmp_path / "verify", samples=50)
    entry = INCUMBENT.stretch(copy, YEAR, workdir=tmp_path / "stretch")
    assert entry["mode"] == "pca" and entry["stats_pixels"] > 0 and len(entry["pca_components"]) == 3


def test_harness_never_writes_into_the_archive(v2):
    """The incumbent insists on a landmask directory and registries of its own: they live in the harness's work
    directory, and the archive stays as it was."""
    archive, _ = v2
    assert _listing(archive) == BEFORE[archive]
