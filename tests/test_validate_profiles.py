"""Validator profiles on stores of other producers: the geoemb profile judges the convention only (upstream
examples as store metadata, and small stores written with zarr-python), the tessera profile the full layout."""

from __future__ import annotations

import copy as copymod
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from validate_helpers import errors, no_internal

from transcode.validate import ValidateOptions, validate

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "conventions" / "embeddings-zarr-convention"


def _example(name: str) -> dict:
    return json.loads((REF / "examples" / f"{name}_example.json").read_text(encoding="utf-8"))


def _metadata_store(tmp_path: Path, doc: dict) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps(doc))
    return store


def _run(store, level="structure", profile="geoemb"):
    report = validate(str(store), ValidateOptions(level=level, profile=profile))
    no_internal(report)
    return report


@pytest.mark.parametrize("name", ["aef", "clay", "tessera"])
def test_upstream_examples_pass_the_geoemb_profile(tmp_path, name):
    store = _metadata_store(tmp_path, _example(name))
    report = _run(store)
    assert not errors(report), [f.line() for f in report.findings]
    codes = {(f.code, f.severity) for f in report.findings}
    assert ("consolidated", "warning") in codes  # no consolidated metadata: a warning outside the tessera layout
    assert ("cross-check", "info") in codes  # metadata only: no arrays to cross-check


def test_upstream_tessera_example_is_not_the_tessera_layout(tmp_path):
    store = _metadata_store(tmp_path, _example("tessera"))
    report = _run(store, profile="tessera")
    found = {(f.code, f.key) for f in errors(report)}
    assert ("layout", "zarr.json") in found  # no UTM zone groups
    assert ("consolidated", "zarr.json") in found
    assert any(f.code == "convention" and f.attribute == "spatial:transform" and f.severity == "warning"
               for f in report.findings)  # spatial: on the root instead of zone groups


def _producer_store(tmp_path: Path, attrs: dict, dtype: str, shape, dims, scales: tuple | None = None) -> Path:
    path = tmp_path / "producer.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=3, attributes=attrs)
    grp = root.create_group("tiles")
    arr = grp.create_array("embeddings", shape=shape, chunks=tuple(max(1, s // 2) for s in shape), dtype=dtype,
                           dimension_names=dims, fill_value=0)
    arr[...] = (np.arange(np.prod(shape)) % 100).reshape(shape).astype(dtype)
    if scales is not None:
        name, sshape = scales
        s = grp.create_array(name, shape=sshape, chunks=sshape, dtype="float32", dimension_names=dims[1:],
                             fill_value=float("inf"))
        s[...] = 0.05
    return path


def test_other_producer_store_passes_geoemb_and_fails_tessera(tmp_path):
    attrs = _example("aef")["attributes"]
    store = _producer_store(tmp_path, attrs, "int8", (64, 20, 30), ["band", "y", "x"])
    report = _run(store, level="content")
    assert not errors(report), [f.line() for f in report.findings]
    assert report.counters["chunks_decoded"] == 8
    tessera = _run(store, level="metadata", profile="tessera")
    assert any(f.code == "layout" for f in errors(tessera))


def test_geoemb_violations_name_their_key(tmp_path):
    attrs = copymod.deepcopy(_example("aef")["attributes"])
    attrs["geoemb:source_data"] = attrs["geoemb:source_data"][0]  # a string: a known producer mistake
    attrs["geoemb:data_type"] = "float32"  # the array is int8
    store = _producer_store(tmp_path, attrs, "int8", (64, 20, 30), ["band", "y", "x"])
    found = {(f.key, f.attribute) for f in errors(_run(store, level="metadata"))}
    assert found == {("zarr.json", "geoemb:source_data"), ("zarr.json", "geoemb:data_type")}


def test_quantization_array_must_resolve_with_matching_shape(tmp_path):
    attrs = copymod.deepcopy(_example("tessera")["attributes"])
    for k in [k for k in attrs if k.startswith(("proj:", "spatial:"))]:
        del attrs[k]
    attrs["zarr_conventions"] = attrs["zarr_conventions"][:1]
    attrs["geoemb:dimensions"] = 16
    store = _producer_store(tmp_path / "a", attrs, "int8", (16, 20, 30), ["band", "y", "x"])
    found = [f for f in errors(_run(store, level="metadata"))]
    assert [(f.key, f.attribute, f.pointer) for f in found] == [
        ("zarr.json", "geoemb:quantization", "/attributes/geoemb:quantization/scale/array_name")]
    store = _producer_store(tmp_path / "b", attrs, "int8", (16, 20, 30), ["band", "y", "x"],
                            scales=("scales", (20, 31)))
    found = [(f.key, f.pointer) for f in errors(_run(store, level="metadata"))]
    assert found == [("tiles/scales/zarr.json", "/shape")]
    store = _producer_store(tmp_path / "c", attrs, "int8", (16, 20, 30), ["band", "y", "x"],
                            scales=("scales", (20, 30)))
    assert not errors(_run(store, level="content"))
