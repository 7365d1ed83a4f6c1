"""Dataset identity (FORMATS.md §1.5): inventory reports the source's version and variant, convert records it
(geoemb:model of the source version, the settings), mixing datasets in one store is refused before anything is
written, an archive that mixes datasets is refused the same way, and v2 needs no landmask."""

import json
import shutil

import numpy as np
import pytest
import zarr
from convert_helpers import cli, cli_json, tree_digests, tree_state

from transcode.cli import main
from transcode.format.sidecar import SETTINGS_KEY
from transcode.legacy.inventory import read_inventory
from transcode.testing.synthetic import make_legacy_archive, write_dataset_metadata

LAYOUT = ["--shard-size", "512", "--chunk-size", "64"]
TILES = ["grid_-0.05_83.95", "grid_0.05_83.95"]


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    base = tmp_path_factory.mktemp("datasets")

    def make(name, **kw):
        kw.setdefault("years", (2024,))
        return make_legacy_archive(base / name, tiles=TILES, seed=11, **kw).root

    return {
        "v1.0": make("v10"),
        "v1.1": make("v11", dataset_version="1.1", years=(2024, 2025)),
        "v2": make("v2", dataset_version="2.0"),
        "v2-masks": make("v2m", dataset_version="2.0", landmasks="coastline"),
        "unknown": make("unknown", metadata=False, registries=False),
        "object": make("object", layout="object", dataset="v1.1-cam"),
    }


def _root_attrs(store) -> dict:
    return json.loads((store / "zarr.json").read_text())["attributes"]


def _settings(store) -> dict:
    return json.loads((store / SETTINGS_KEY).read_text())


def test_inventory_reports_the_dataset_in_text_json_and_parquet(archives, tmp_path, capsys):
    out = tmp_path / "inv.parquet"
    assert main(["inventory", archives["v1.1"], "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "dataset    1.1 (vultr), from " in text and "tessera_metadata.json" in text
    assert read_inventory(out).dataset.label == "1.1 (vultr)"
    assert main(["inventory", archives["object"], "--json", "--out", "-", "--no-progress"]) == 0
    d = json.loads(capsys.readouterr().out)["summary"]["dataset"]
    assert (d["version"], d["variant"], d["source"], d["overridden"]) == ("1.1", "cambridge", "npy/v1.1-cam", False)
    assert main(["inventory", archives["unknown"], "--json", "--out", "-", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["dataset"]["version"] is None


def test_override_is_recorded_as_overridden(archives, capsys):
    assert main(["inventory", archives["v1.1"], "--dataset-version", "v2-vultr", "--json", "--out", "-",
                 "--no-progress"]) == 0  # an info note, not a problem
    doc = json.loads(capsys.readouterr().out)
    d = doc["summary"]["dataset"]
    assert (d["version"], d["variant"], d["overridden"], d["source"]) == ("2.0", "vultr", True, "--dataset-version")
    assert [(p["kind"], p["severity"]) for p in doc["problems"]] == [("dataset-overridden", "info")]
    assert main(["inventory", archives["v1.1"], "--dataset-version", "one", "--out", "-"]) == 2
    assert "--dataset-version" in capsys.readouterr().err


@pytest.mark.parametrize("name, model", [("v1.0", "1.0"), ("v1.1", "1.1")])
def test_store_says_the_source_model(archives, tmp_path, name, model):
    store = tmp_path / "store"
    cli_json("convert", archives[name], str(store), *LAYOUT, "--years", "2024", "--no-progress")
    attrs = _root_attrs(store)
    assert attrs["geoemb:model"] == f"https://geotessera.org/model/{model}"
    assert "geoemb:landmask" not in attrs  # absent: masked (v1/v1.1)
    assert _settings(store)["dataset"] == {"version": model, "variant": "vultr", "overridden": False}


def test_another_dataset_is_refused_and_the_store_is_untouched(archives, tmp_path):
    store = tmp_path / "store"
    cli_json("convert", archives["v1.0"], str(store), *LAYOUT, "--no-progress")
    before = tree_state(store)
    r = cli("convert", archives["v1.1"], str(store), *LAYOUT, "--years", "2024", "--no-progress")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "1.0 (vultr)" in r.stderr and "1.1 (vultr)" in r.stderr
    r = cli("extend", str(store), "--years", "2025", "--source", archives["v1.1"], "--no-progress")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "1.0 (vultr)" in r.stderr and "1.1 (vultr)" in r.stderr
    assert tree_state(store) == before


def test_an_archive_mixing_datasets_is_refused(archives, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(archives["v1.1"], mixed)
    write_dataset_metadata(mixed, "1.0")  # the tree now says 1.0, its manifest.parquet still 1.1
    assert main(["inventory", str(mixed), "--json", "--out", "-", "--no-progress"]) == 1
    doc = json.loads(capsys.readouterr().out)
    [p] = [p for p in doc["problems"] if p["kind"] == "mixed-datasets"]
    assert "1.0 (vultr)" in p["message"] and "1.1 (vultr)" in p["message"] and p["severity"] == "error"
    r = cli("convert", str(mixed), str(tmp_path / "new-store"), *LAYOUT, "--no-progress")
    assert r.returncode == 2 and "mixes datasets" in r.stderr and "1.0 (vultr)" in r.stderr
    assert not (tmp_path / "new-store").exists()
    store = tmp_path / "store"
    cli_json("convert", archives["v1.1"], str(store), *LAYOUT, "--no-progress")
    before = tree_state(store)
    r = cli("convert", str(mixed), str(store), *LAYOUT, "--no-progress")
    assert r.returncode == 2 and "mixes datasets" in r.stderr
    assert tree_state(store) == before


def test_v2_without_landmasks_converts_cleanly(archives, tmp_path):
    store = tmp_path / "store"
    inv = cli_json("inventory", archives["v2"], "--out", "-", "--no-progress")
    assert inv["summary"]["landmasks"]["files"] == 0 and inv["problems"] == []
    report = cli_json("convert", archives["v2"], str(store), *LAYOUT, "--no-progress")
    assert report["skipped_tiles"] == [] and report["failed"] == []
    attrs = _root_attrs(store)
    assert attrs["geoemb:model"] == "https://geotessera.org/model/2.0" and attrs["geoemb:landmask"] is False
    cli_json("validate", str(store), "--level", "fidelity", "--source", archives["v2"], "--no-progress")


def test_v2_landmasks_are_not_applied(archives, tmp_path):
    """From v2 on every pixel of a present tile is data: a v2 tree that still ships landmasks converts to the
    same shards as one without (only invalid scales are NaN)."""
    with_masks, without = tmp_path / "with", tmp_path / "without"
    cli_json("convert", archives["v2-masks"], str(with_masks), *LAYOUT, "--no-progress")
    cli_json("convert", archives["v2"], str(without), *LAYOUT, "--no-progress")
    shards = {k: v for k, v in tree_digests(without).items() if "/c/" in k}
    assert shards and {k: v for k, v in tree_digests(with_masks).items() if "/c/" in k} == shards
    scales = zarr.open_group(str(with_masks), mode="r")["utm31/scales"][0]
    nan = np.isnan(scales).sum()
    assert 0 < nan < 100  # the handful of invalid scales the generator plants, no water


def test_unknown_dataset_needs_dataset_version(archives, tmp_path):
    store = tmp_path / "store"
    r = cli("convert", archives["unknown"], str(store), *LAYOUT, "--no-progress")
    assert r.returncode == 2 and "--dataset-version" in r.stderr
    assert not store.exists()
    cli_json("convert", archives["unknown"], str(store), *LAYOUT, "--dataset-version", "1.1", "--no-progress")
    assert _settings(store)["dataset"] == {"version": "1.1", "variant": "vultr", "overridden": True}
    assert _root_attrs(store)["geoemb:model"] == "https://geotessera.org/model/1.1"
