"""conventions/: registry identity, builders, our JSON Schemas, zarr-cm behind conventions.zarrcm, validators
(against upstream examples too)."""

from __future__ import annotations

import ast
import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from transcode.conventions import (
    CONVENTIONS,
    bbox_from_transform,
    build_geoemb_attributes,
    build_multiscales_attributes,
    conventions_entry,
    identify,
    validate_geoemb,
    validate_multiscales,
    validate_proj,
    validate_spatial,
    validate_zarr_conventions,
    validate_zone,
    zarrcm,
)
from transcode.conventions.registry import GEOEMB, MULTISCALES, PROJ, SPATIAL, get
from transcode.conventions.schemas import apply_schema

from transcode import schemas
from transcode.format.attributes import root_attributes, zone_attributes

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "conventions"
PKG = Path(__file__).resolve().parents[1] / "conventions"
OUR_SCHEMAS = ("geoemb", "zarr-conventions")  # proj:, spatial: and multiscales are checked by zarr-cm
VALIDATORS = {"geoemb": validate_geoemb, "spatial": validate_spatial, "proj": validate_proj,
              "multiscales": validate_multiscales}


def _ref(rel: str) -> dict:
    return json.loads((REF / rel).read_text(encoding="utf-8"))


def _examples() -> list[Path]:
    return sorted(REF.glob("*/examples/*.json"))


def _errors(issues):
    return [i for i in issues if i.severity == "error"]


# the store's values, restated here as the test's own expectation of the generic builder's arguments
FACTS = {"dimensions": 128, "data_type": "int8", "gsd": 10.0, "spatial_layout": "utm_zones", "scale_array": "scales",
         "scale_nodata": "+inf", "original_dtype": "float32"}


def _root() -> dict:
    return root_attributes("0.7.5", "1.0")


def _zone() -> dict:
    return zone_attributes(30, 167130.0, 6765170.0, 856064, 69632)


def _assert_rejected(issues, key: str, *words: str) -> None:
    """At least one error names `key` in both its key and message (plus any `words`)."""
    hits = [i for i in _errors(issues) if i.key == key and key in i.message
            and all(w in i.message for w in words)]
    assert hits, f"no error for {key!r} {words}: {issues}"


# ------------------------------------------------------------------ registry

def test_registry_uuids_and_current_urls():
    assert {c.key: c.uuid for c in CONVENTIONS} == {
        "geoemb": "61c12cc5-0e28-4056-999a-480cf3fb7e4c",
        "spatial": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
        "proj": "f17cb550-5864-4468-aeb7-f3180cfb622f",
        "multiscales": "d35379db-88df-4056-af3a-620245f8e347",
    }
    assert PROJ.schema_url == "https://raw.githubusercontent.com/zarr-conventions/proj/refs/tags/v0.1/schema.json"
    assert SPATIAL.spec_url == "https://github.com/zarr-conventions/spatial/blob/v0.1/README.md"
    assert (PROJ.name, SPATIAL.name, MULTISCALES.name, GEOEMB.name) == ("proj", "spatial", "multiscales", "geoemb:")
    # what the current upstream schemas pin with `const` is what we write
    assert _ref("proj-v0.1/schema.json")["$id"] == PROJ.schema_url
    assert _ref("spatial/schema.json")["$id"] == SPATIAL.schema_url
    geoemb_meta = _ref("embeddings-zarr-convention/schema.json")["$defs"]["conventionMetadata"]["properties"]
    assert {k: v["const"] for k, v in geoemb_meta.items()} == conventions_entry("geoemb")
    for conv in CONVENTIONS:
        assert conv.schema_url in conv.schema_urls and conv.spec_url in conv.spec_urls
        assert all("/refs/tags/v1/" in u or "/blob/v1/" in u for u in conv.unresolvable)


@pytest.mark.parametrize("name", ["geoemb", "geoemb:", "spatial", "spatial:", "proj", "proj:", "multiscales"])
def test_conventions_entry(name):
    entry = conventions_entry(name)
    assert list(entry) == ["uuid", "schema_url", "spec_url", "name", "description"]
    conv = get(name)
    assert entry["uuid"] == conv.uuid and entry["schema_url"] == conv.schema_url and entry["name"] == conv.name
    assert identify(entry) is conv
    assert conventions_entry(name) is not conventions_entry(name)  # fresh dicts, safe to mutate


def test_conventions_entry_unknown():
    with pytest.raises(KeyError):
        conventions_entry("geozarr")


@pytest.mark.parametrize("conv", CONVENTIONS, ids=lambda c: c.key)
def test_identify_every_variant_by_uuid_and_url(conv):
    assert identify({"uuid": conv.uuid}) is conv
    assert identify({"uuid": conv.uuid.upper()}) is conv
    for url in conv.schema_urls:
        assert identify({"schema_url": url}) is conv, url
        assert identify({"schema_url": url, "name": "something else"}) is conv
    for url in conv.spec_urls:
        assert identify({"spec_url": url}) is conv, url
    for name in conv.names:
        assert identify({"name": name}) is None
        assert identify({"name": name, "description": conv.description}) is None


def test_identify_named_variants():
    raw, gh = "https://raw.githubusercontent.com", "https://github.com"
    cases = {
        f"{raw}/zarr-experimental/geo-proj/refs/tags/v1/schema.json": PROJ,  # moved repository, dead tag
        f"{raw}/zarr-experimental/geo-proj/refs/tags/v0/schema.json": PROJ,
        f"{raw}/zarr-conventions/geo-proj/refs/tags/v1/schema.json": PROJ,
        f"{raw}/zarr-conventions/proj/refs/tags/v0.1/schema.json": PROJ,
        f"{raw}/zarr-conventions/spatial/refs/tags/v1/schema.json": SPATIAL,
        f"{raw}/zarr-conventions/multiscales/refs/tags/v1/schema.json": MULTISCALES,
        f"{raw}/zarr-conventions/multiscales/refs/tags/v0/schema.json": MULTISCALES,
        f"{raw}/geo-embeddings/embeddings-zarr-convention/refs/tags/v1/schema.json": GEOEMB,
    }
    for url, conv in cases.items():
        assert identify({"schema_url": url}) is conv
    assert identify({"spec_url": f"{gh}/zarr-experimental/geo-proj/blob/v1/README.md"}) is PROJ
    assert f"{raw}/zarr-experimental/geo-proj/refs/tags/v1/schema.json" in PROJ.unresolvable


def test_identify_order_and_refusals():
    # uuid decides, even against a URL of another convention
    assert identify({"uuid": PROJ.uuid, "schema_url": SPATIAL.schema_url}) is PROJ
    # an unknown uuid is some other convention: a known URL beside it does not override it
    assert identify({"uuid": "2dc8d146-3932-4e08-8542-06aa0e826508", "schema_url": PROJ.schema_url}) is None
    # schema_url before spec_url
    assert identify({"schema_url": SPATIAL.schema_url, "spec_url": PROJ.spec_url}) is SPATIAL
    assert identify({"schema_url": "https://example.org/unknown.json", "spec_url": PROJ.spec_url}) is None
    for junk in (None, "proj:", 3, [], {}, {"uuid": ""}, {"uuid": 7}, {"name": "proj:"}, {"name": "geoemb:"}):
        assert identify(junk) is None


def test_identify_every_entry_in_the_reference_files():
    """Every uuid-carrying entry upstream has its URLs recognised as the same convention."""
    seen = 0
    for path in sorted(REF.rglob("*.json")):
        for entry in _ref(path.relative_to(REF)).get("attributes", {}).get("zarr_conventions", []):
            conv = identify(entry)
            if entry.get("uuid") == "2dc8d146-3932-4e08-8542-06aa0e826508":
                assert conv is None  # the spec's made-up example convention
                continue
            assert conv is not None, (path, entry)
            for field in ("schema_url", "spec_url"):
                if field in entry:
                    assert identify({field: entry[field]}) is conv, (path, field, entry[field])
            seen += 1
    assert seen > 30


# ------------------------------------------------------------------ our schemas

def _refs_with_siblings(node, where="#"):
    if isinstance(node, dict):
        if "$ref" in node and set(node) - {"$ref"}:
            yield where
        for k, v in node.items():
            yield from _refs_with_siblings(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs_with_siblings(v, f"{where}/{i}")


@pytest.mark.parametrize("name", OUR_SCHEMAS)
def test_our_schemas_are_2020_12_without_ref_siblings(name):
    schema = schemas.load(f"{name}.schema.json")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{name}.schema.json")
    Draft202012Validator.check_schema(schema)
    assert list(_refs_with_siblings(schema)) == []
    assert schema.get("additionalProperties", True) is True  # unknown attributes are allowed


# ------------------------------------------------------------------ builders

def test_root_attributes_are_exactly_the_incumbents():
    attrs = _root()
    tessera = _ref("embeddings-zarr-convention/examples/tessera_example.json")["attributes"]
    assert {k: v for k, v in attrs.items() if k.startswith("geoemb:")} == \
        {k: v for k, v in tessera.items() if k.startswith("geoemb:")}
    assert attrs["zarr_conventions"] == [conventions_entry("geoemb")] == [tessera["zarr_conventions"][0]]
    assert attrs["geoemb:model"] == "https://geotessera.org/model/1.0"
    assert attrs["geoemb:quantization"] == {
        "method": "per_pixel_scale", "original_dtype": "float32", "quantized_dtype": "int8",
        "scale": {"type": "array", "array_name": "scales", "nodata": "+inf"}}
    json.dumps(attrs, allow_nan=False)


def test_root_attributes_pass_our_schemas_and_validators_cleanly():
    attrs = _root()
    for name in ("geoemb", "zarr-conventions"):
        assert apply_schema(name, attrs) == []
    assert validate_geoemb(attrs) == []
    assert validate_zarr_conventions(attrs) == []


def test_root_attributes_pass_the_upstream_geoemb_schema():
    doc = {"zarr_format": 3, "node_type": "group", "attributes": _root()}
    validator = Draft202012Validator(_ref("embeddings-zarr-convention/schema.json"))
    assert [e.message for e in validator.iter_errors(doc)] == []


def test_root_builder_options_and_extra_keys_survive():
    attrs = build_geoemb_attributes(model_version="v2", build_version="0.1.0",
                                    **{**FACTS, "dimensions": 64, "gsd": 20, "scale_array": "s"},
                                    extra={"geoemb:future_key": {"a": 1}, "geoemb:benchmark": ["https://example.org/b"]})
    assert attrs["geoemb:dimensions"] == 64 and attrs["geoemb:gsd"] == 20.0
    assert type(attrs["geoemb:dimensions"]) is int and type(attrs["geoemb:gsd"]) is float
    assert build_geoemb_attributes(model_version="1.0", build_version="0.7.5",
                                   **{**FACTS, "dimensions": np.int64(128), "gsd": np.float32(10)}) == _root()
    assert attrs["geoemb:quantization"]["scale"]["array_name"] == "s"
    assert attrs["geoemb:future_key"] == {"a": 1}
    assert validate_geoemb(attrs) == []
    round_trip = json.loads(json.dumps(attrs))
    assert round_trip == attrs and validate_geoemb(round_trip) == []
    with pytest.raises(ValueError, match="geoemb:type"):
        build_geoemb_attributes(model_version="1", build_version="1", **FACTS, extra={"geoemb:type": "chip"})
    with pytest.raises(ValueError, match="geoemb:dimensions"):
        build_geoemb_attributes(model_version="1", build_version="1", **{**FACTS, "dimensions": 0})
    with pytest.raises(TypeError):
        build_geoemb_attributes(model_version="1", build_version="1", **{**FACTS, "dimensions": 12.5})
    with pytest.raises(ValueError):
        build_geoemb_attributes(model_version="", build_version="1", **FACTS)


def test_zone_attributes_match_the_incumbent():
    attrs = _zone()
    tessera = _ref("embeddings-zarr-convention/examples/tessera_example.json")["attributes"]
    for key in ("proj:code", "spatial:dimensions", "spatial:transform", "spatial:shape", "spatial:bbox",
                "spatial:registration"):
        assert attrs[key] == tessera[key], key
    assert attrs["zarr_conventions"] == [conventions_entry("proj"), conventions_entry("spatial")]
    assert not [k for k in attrs if k.startswith("geoemb:")]


def test_zone_attributes_pass_our_schemas_and_validators_cleanly():
    attrs = _zone()
    assert apply_schema("zarr-conventions", attrs) == []
    assert validate_spatial(attrs) == [] and validate_proj(attrs) == []
    assert validate_zone(attrs) == []


@pytest.mark.parametrize("folder", ["spatial/schema.json", "proj-v0.1/schema.json"])
def test_zone_attributes_pass_the_upstream_v01_schemas(folder):
    doc = {"zarr_format": 3, "node_type": "group", "attributes": _zone()}
    assert [e.message for e in Draft7Validator(_ref(folder)).iter_errors(doc)] == []


def test_zone_bbox_is_exactly_transform_times_shape():
    rng = random.Random(7)
    for _ in range(500):
        zone = rng.randint(1, 60)
        ox, oy = rng.randint(0, 90_000) * 10.0, rng.randint(-1_000_000, 1_000_000) * 10.0
        h, w = rng.randint(1, 900_000), rng.randint(1, 80_000)
        attrs = zone_attributes(zone, ox, oy, h, w)
        assert attrs["proj:code"] == f"EPSG:{32600 + zone}"
        assert attrs["spatial:transform"] == [10.0, 0.0, ox, 0.0, -10.0, oy]
        assert attrs["spatial:shape"] == [h, w]
        assert attrs["spatial:bbox"] == [ox, oy - 10.0 * h, ox + 10.0 * w, oy]
        assert attrs["spatial:bbox"] == bbox_from_transform(attrs["spatial:transform"], [h, w])


def test_zone_builder_accepts_numpy_scalars_and_returns_plain_json():
    attrs = zone_attributes(np.int64(30), np.float64(167130.0), np.float64(6765170.0),
                                  np.int64(856064), np.int32(69632))
    assert attrs == _zone()
    assert json.loads(json.dumps(attrs, allow_nan=False)) == attrs
    assert all(type(v) is float for v in attrs["spatial:transform"] + attrs["spatial:bbox"])
    assert all(type(v) is int for v in attrs["spatial:shape"])


@pytest.mark.parametrize("args", [(0, 0.0, 0.0, 1, 1), (61, 0.0, 0.0, 1, 1), (30, 0.0, 0.0, 0, 5),
                                  (30, 0.0, 0.0, 5, -1), (30, 0.0, 0.0, 1.5, 1), (True, 0.0, 0.0, 1, 1)])
def test_zone_builder_refuses_bad_input(args):
    with pytest.raises(ValueError):
        zone_attributes(*args)


# ------------------------------------------------------------------ upstream examples

@pytest.mark.parametrize("path", _examples(), ids=lambda p: str(p.relative_to(REF)))
def test_upstream_examples_are_accepted_for_what_they_declare(path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    attrs = doc["attributes"]
    assert _errors(validate_zarr_conventions(attrs)) == []
    for conv in filter(None, map(identify, attrs["zarr_conventions"])):
        if conv.key in VALIDATORS:
            dims = doc.get("dimension_names")
            kwargs = {"dimension_names": dims} if conv.key == "spatial" and dims else {}
            assert _errors(VALIDATORS[conv.key](attrs, **kwargs)) == [], conv.key


def test_tessera_example_old_names_and_urls_are_notes_not_errors():
    attrs = _ref("embeddings-zarr-convention/examples/tessera_example.json")["attributes"]
    issues = validate_zarr_conventions(attrs)
    assert issues and {i.severity for i in issues} == {"info"}
    assert any("does not resolve" in i.message for i in issues)
    assert any("'proj:' is an older name" in i.message for i in issues)
    for key in ("geoemb", "spatial", "proj"):
        assert VALIDATORS[key](attrs) == [], key


# ------------------------------------------------------------------ rejections: geoemb

@pytest.mark.parametrize("key", ["geoemb:type", "geoemb:dimensions", "geoemb:model", "geoemb:source_data",
                                 "geoemb:data_type"])
def test_geoemb_missing_required_key(key):
    attrs = _root()
    del attrs[key]
    issues = validate_geoemb(attrs)
    _assert_rejected(issues, key, "required")
    assert [i.message for i in issues] == [f"{key}: required key '{key}' is missing"]


@pytest.mark.parametrize("key,value", [
    ("geoemb:dimensions", "128"), ("geoemb:dimensions", 1.5), ("geoemb:dimensions", True),
    ("geoemb:dimensions", 0), ("geoemb:source_data", "https://sentinel.esa.int/"), ("geoemb:source_data", []),
    ("geoemb:source_data", ["not a uri"]), ("geoemb:model", "geotessera v1"), ("geoemb:gsd", "10 m"),
    ("geoemb:gsd", 0), ("geoemb:data_type", 8), ("geoemb:quantization", "per_pixel_scale"),
    ("geoemb:build_version", 1.0), ("geoemb:benchmark", "https://example.org"),
])
def test_geoemb_wrong_types_and_values(key, value):
    attrs = _root()
    attrs[key] = value
    _assert_rejected(validate_geoemb(attrs), key)


@pytest.mark.parametrize("key,value", [("geoemb:type", "tile"), ("geoemb:spatial_layout", "zones")])
def test_geoemb_bad_enum(key, value):
    attrs = _root()
    attrs[key] = value
    _assert_rejected(validate_geoemb(attrs), key, repr(value), "is not one of")


def test_geoemb_chip_needs_chip_layout():
    attrs = _root()
    attrs["geoemb:type"] = "chip"
    issues = validate_geoemb(attrs)
    _assert_rejected(issues, "geoemb:chip_layout", "required", "chip")
    attrs["geoemb:chip_layout"] = {"layout_type": "regular_grid", "chip_size": [256, 256]}
    assert validate_geoemb(attrs) == []
    attrs["geoemb:chip_layout"] = {"layout_type": "regular_grid", "chip_size": [256]}
    _assert_rejected(validate_geoemb(attrs), "geoemb:chip_layout", "chip_size")


@pytest.mark.parametrize("mutate,where", [
    (lambda q: q.update(offset=0.5), "geoemb:quantization/offset"),  # extra key (known producer deviation)
    (lambda q: q.pop("original_dtype"), "geoemb:quantization/original_dtype"),
    (lambda q: q["scale"].pop("array_name"), "geoemb:quantization/scale/array_name"),
    (lambda q: q["scale"].update(type="lut"), "geoemb:quantization/scale/type"),
    (lambda q: q["scale"].update(type="scalar"), "geoemb:quantization/scale"),
    (lambda q: q["scale"].update(nodata=[1]), "geoemb:quantization/scale/nodata"),
])
def test_geoemb_quantization_rejections_point_inside(mutate, where):
    attrs = _root()
    mutate(attrs["geoemb:quantization"])
    issues = _errors(validate_geoemb(attrs))
    assert any(i.key == "geoemb:quantization" and i.message.startswith(where) for i in issues), issues


def test_geoemb_scalar_scale_is_accepted():
    attrs = _root()
    attrs["geoemb:quantization"]["scale"] = {"type": "scalar", "scale": 0.0078125, "offset": 0.0}
    assert validate_geoemb(attrs) == []


def test_geoemb_soft_findings():
    attrs = _root()
    attrs["geoemb:gsd"] = 0.0001  # degrees, a known producer deviation
    attrs["geoemb:quantization"]["scale"]["nodata"] = "none"
    issues = validate_geoemb(attrs)
    assert {(i.severity, i.key) for i in issues} == {("warning", "geoemb:gsd"), ("warning", "geoemb:quantization")}


def test_geoemb_declaration_required_and_never_by_name():
    attrs = _root()
    attrs["zarr_conventions"] = []
    _assert_rejected(validate_geoemb(attrs), "zarr_conventions", "geoemb:")
    attrs["zarr_conventions"] = [{"name": "geoemb:"}]
    _assert_rejected(validate_geoemb(attrs), "zarr_conventions", "never by name")
    _assert_rejected(validate_zarr_conventions(attrs), "zarr_conventions", "at least one of")
    attrs["zarr_conventions"] = [{"spec_url": GEOEMB.spec_url}]
    assert validate_geoemb(attrs) == []
    del attrs["zarr_conventions"]
    _assert_rejected(validate_geoemb(attrs), "zarr_conventions")


def test_not_an_object_does_not_crash():
    for validate in (validate_geoemb, validate_spatial, validate_proj, validate_multiscales, validate_zarr_conventions,
                     validate_zone):
        for junk in (None, [], "x", 3):
            issues = validate(junk)
            assert _errors(issues) and all(i.key == "" for i in issues)


# ------------------------------------------------------------------ rejections: spatial and proj

def test_spatial_bbox_mismatch():
    attrs = _zone()
    attrs["spatial:bbox"] = [167130.0, -1795470.0, 863460.0, 6765170.0]  # one pixel too wide
    _assert_rejected(validate_spatial(attrs), "spatial:bbox", "transform x shape")
    attrs["spatial:bbox"] = [167130.0, -1795470.0, 863450.001, 6765170.0]  # not exact, within a pixel
    assert [(i.severity, i.key) for i in validate_spatial(attrs)] == [("warning", "spatial:bbox")]
    attrs["spatial:bbox"] = [863450.0, -1795470.0, 167130.0, 6765170.0]
    _assert_rejected(validate_spatial(attrs), "spatial:bbox", "xmin")


def test_spatial_node_registration_bbox():
    attrs = {"zarr_conventions": [conventions_entry("spatial")], "spatial:dimensions": ["y", "x"],
             "spatial:shape": [1801, 3601], "spatial:transform": [0.1, 0.0, -180.0, 0.0, -0.1, 90.0],
             "spatial:bbox": [-180.0, -90.0, 180.0, 90.0], "spatial:registration": "node"}
    assert validate_spatial(attrs) == []
    attrs["spatial:registration"] = "pixel"
    _assert_rejected(validate_spatial(attrs), "spatial:bbox")


@pytest.mark.parametrize("key,value", [
    ("spatial:transform", [10.0, 0.0, 1.0, 0.0, -10.0]), ("spatial:transform", [10, 0, "1", 0, -10, 5]),
    ("spatial:transform", [0.0, 0.0, 1.0, 0.0, 0.0, 5.0]), ("spatial:transform", [10.0, 0.0, float("nan"), 0, -10, 0]),
    ("spatial:shape", [0, 5]), ("spatial:shape", [5]), ("spatial:shape", [5.5, 2]),
    ("spatial:bbox", [0, 0, 1]), ("spatial:dimensions", ["y"]), ("spatial:dimensions", "yx"),
    ("spatial:registration", "center"),
])
def test_spatial_rejections(key, value):
    attrs = _zone()
    attrs[key] = value
    _assert_rejected(validate_spatial(attrs), key)


def test_spatial_missing_dimensions_and_declaration():
    attrs = _zone()
    del attrs["spatial:dimensions"]
    _assert_rejected(validate_spatial(attrs), "spatial:dimensions", "required")
    attrs = _zone()
    attrs["zarr_conventions"] = [conventions_entry("proj"), {"name": "spatial"}]
    _assert_rejected(validate_spatial(attrs), "zarr_conventions", "spatial")


def test_spatial_dimensions_must_be_array_dimensions():
    attrs = _zone()
    assert validate_spatial(attrs, dimension_names=["time", "band", "y", "x"]) == []
    _assert_rejected(validate_spatial(attrs, dimension_names=["time", "band", "lat", "lon"]), "spatial:dimensions")


def test_spatial_other_transform_type_is_not_checked():
    attrs = _zone()
    attrs["spatial:transform_type"] = "rpc"
    attrs["spatial:bbox"] = [0.0, 0.0, 1.0, 1.0]
    assert [(i.severity, i.key) for i in validate_spatial(attrs)] == [("info", "spatial:transform_type")]


def test_proj_needs_a_crs_key():
    attrs = _zone()
    del attrs["proj:code"]
    _assert_rejected(validate_proj(attrs), "proj:code", "At least one of", "proj:wkt2")
    attrs["proj:wkt2"] = 'PROJCRS["WGS 84 / UTM zone 30N"]'
    assert validate_proj(attrs) == []


@pytest.mark.parametrize("value", ["EPSG32630", "EPSG:326:30", 32630, ""])
def test_proj_code_rejections(value):
    attrs = _zone()
    attrs["proj:code"] = value
    _assert_rejected(validate_proj(attrs), "proj:code")


def test_proj_old_and_new_code_rules():
    attrs = _zone()
    attrs["proj:code"] = "OGC:CRS84"  # valid in v0.1, not under the older geo-proj pattern
    assert [(i.severity, i.key) for i in validate_proj(attrs)] == [("info", "proj:code")]
    attrs["proj:wkt2"] = "GEOGCRS[...]"  # several CRS keys: v0.1 allows, older schemas did not
    assert {i.severity for i in validate_proj(attrs)} == {"info"}
    attrs["zarr_conventions"] = [_ref("geo-proj/examples/wkt2.json")["attributes"]["zarr_conventions"][0]]
    issues = validate_proj(attrs)
    assert {i.severity for i in issues} == {"warning"} and {i.key for i in issues} == {"proj:code"}
    assert len(issues) == 2


def test_several_faults_give_one_finding_per_key():
    """zarr-cm stops at the first broken rule; each key is still reported."""
    attrs = _zone()
    attrs["spatial:bbox"] = [0, 0, 1]
    attrs["spatial:registration"] = "center"
    attrs["spatial:shape"] = [0, 5]
    assert {i.key for i in _errors(validate_spatial(attrs))} == {"spatial:bbox", "spatial:registration",
                                                                  "spatial:shape"}
    attrs = _zone()
    attrs.update({"proj:code": "EPSG32630", "proj:projjson": "{}"})
    assert {i.key for i in _errors(validate_proj(attrs))} == {"proj:code", "proj:projjson"}


def test_spatial_dimensions_must_be_distinct_names():
    attrs = _zone()
    attrs["spatial:dimensions"] = ["y", "y"]
    _assert_rejected(validate_spatial(attrs), "spatial:dimensions", "distinct")


def test_zone_groups_carry_no_geoemb_keys():
    attrs = _zone()
    attrs["geoemb:type"] = "pixel"
    _assert_rejected(validate_zone(attrs), "geoemb:type", "zone groups")


# ------------------------------------------------------------------ zarr_conventions entries

def test_zarr_conventions_entry_findings():
    attrs = {"zarr_conventions": [
        {"uuid": PROJ.uuid, "schema_url": SPATIAL.schema_url},  # conflicting identities
        {"uuid": "NOT-A-UUID"},
        {"uuid": PROJ.uuid, "version": "1"},  # duplicate declaration, extra field
        "proj:",
    ]}
    issues = validate_zarr_conventions(attrs)
    by_pointer = {(i.severity, i.pointer) for i in issues}
    assert ("warning", "/zarr_conventions/0/schema_url") in by_pointer
    assert ("error", "/zarr_conventions/1/uuid") in by_pointer
    assert ("warning", "/zarr_conventions/2/version") in by_pointer
    assert ("warning", "/zarr_conventions/2") in by_pointer
    assert ("error", "/zarr_conventions/3") in by_pointer
    assert all(i.key == "zarr_conventions" for i in issues)
    _assert_rejected(validate_zarr_conventions({"zarr_conventions": {}}), "zarr_conventions", "array")
    _assert_rejected(validate_zarr_conventions({}), "zarr_conventions", "required")


# ------------------------------------------------------------------ package hygiene

_ALLOWED_IMPORTS = {"__future__", "operator", "dataclasses", "typing", "collections.abc", "math", "re", "functools",
                    "copy", "types", "jsonschema", "jsonschema.exceptions", "schemas", "zarr_cm"}


def test_conventions_package_imports_nothing_from_transcode_and_does_no_io():
    for path in sorted(PKG.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module in _ALLOWED_IMPORTS, (path.name, node.module)
            elif isinstance(node, ast.ImportFrom) and node.level == 2:  # only the sibling data package
                assert node.module is None and [a.name for a in node.names] == ["schemas"], path.name
            elif isinstance(node, ast.Import):
                assert {a.name for a in node.names} <= _ALLOWED_IMPORTS, path.name
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", path.name


def test_builders_return_independent_documents():
    a, b = _root(), _root()
    a["geoemb:quantization"]["scale"]["array_name"] = "x"
    a["zarr_conventions"][0]["name"] = "changed"
    assert b == _root()
    z = _zone()
    before = copy.deepcopy(z)
    z["zarr_conventions"][0]["uuid"] = "x"
    assert _zone() == before


# ------------------------------------------------------------------ zarr-cm behind conventions.zarrcm

@pytest.mark.parametrize("key", ["proj", "spatial", "multiscales"])
def test_what_we_write_is_what_zarr_cm_writes(key):
    """Our registry's current entry is zarr-cm's entry for the revision we write, and every URL zarr-cm knows for
    the convention identifies it in our registry (which knows more: FORMATS.md §3)."""
    assert zarrcm.declaration(key) == conventions_entry(key)
    conv = get(key)
    schema_urls, spec_urls = zarrcm.known_urls(key)
    assert schema_urls <= conv.schema_urls and spec_urls <= conv.spec_urls
    assert all(identify({"schema_url": url}) is conv for url in schema_urls)
    assert conv.schema_urls - schema_urls  # variants only our registry has (zarr-experimental/geo-proj, main)


def test_zarr_cm_does_not_know_every_variant_we_accept():
    """Why identity stays ours: the incumbent's proj: URL is unknown to zarr-cm, and its validate refuses to pick a
    revision for it, while our validator reads the node under v0.1 and the older rules."""
    import zarr_cm

    tessera = _ref("embeddings-zarr-convention/examples/tessera_example.json")["attributes"]
    old_url = next(e["schema_url"] for e in tessera["zarr_conventions"] if e["uuid"] == PROJ.uuid)
    assert zarrcm.revision_of("proj", old_url) is None and identify({"schema_url": old_url}) is PROJ
    with pytest.raises(ValueError, match="unsupported schema_url"):
        zarr_cm.proj.validate(tessera)
    assert validate_proj(tessera) == []


def _pyramid() -> dict:
    return build_multiscales_attributes([
        {"asset": "0", "spatial:shape": [1024, 1024], "spatial:transform": [10.0, 0, 0, 0, -10.0, 0]},
        {"asset": "1", "derived_from": "0", "transform": {"scale": [2.0, 2.0]},
         "spatial:shape": [512, 512], "spatial:transform": [20.0, 0, 0, 0, -20.0, 0]},
    ], resampling_method="mean")


def test_multiscales_builder_output_passes_zarr_cm_our_validator_and_the_upstream_schema():
    attrs = _pyramid()
    assert attrs["zarr_conventions"] == [conventions_entry("multiscales")]
    assert [level["asset"] for level in attrs["multiscales"]["layout"]] == ["0", "1"]
    assert validate_multiscales(attrs, node_type="group") == [] and validate_zarr_conventions(attrs) == []
    # the reference copy predates v0.1: its entry is pinned to the dead v1 URLs, so only the data is compared
    schema = _ref("multiscales/schema.json")
    properties = {**schema["$defs"]["multiscalesProperties"], "$defs": schema["$defs"]}
    assert [e.message for e in Draft7Validator(properties).iter_errors(attrs["multiscales"])] == []
    with pytest.raises(ValueError):
        build_multiscales_attributes([])


@pytest.mark.parametrize("mutate,pointer,words", [
    (lambda m: m.update(layout=[]), "/multiscales", "at least one"),
    (lambda m: m["layout"][1].update(asset="/abs"), "/multiscales", "layout[1].asset"),
    (lambda m: m["layout"][1].pop("transform"), "/multiscales", "derived_from"),
    (lambda m: m.update(resampling_method=3), "/multiscales", "resampling_method"),
    (lambda m: m["layout"][1].update({"spatial:shape": [0, 512]}), "/multiscales/layout/1/spatial:shape", "positive"),
    (lambda m: m["layout"][0].update({"spatial:transform": [1, 2]}), "/multiscales/layout/0/spatial:transform", "6"),
])
def test_multiscales_rejections(mutate, pointer, words):
    attrs = _pyramid()
    mutate(attrs["multiscales"])
    hits = [i for i in _errors(validate_multiscales(attrs)) if i.pointer == pointer and words in i.message]
    assert hits and all(i.key == "multiscales" for i in hits), validate_multiscales(attrs)


def test_multiscales_needs_its_key_a_declaration_and_a_group():
    attrs = _pyramid()
    _assert_rejected(validate_multiscales(attrs, node_type="array"), "multiscales", "groups")
    del attrs["multiscales"]
    _assert_rejected(validate_multiscales(attrs), "multiscales", "required")
    attrs = _pyramid()
    attrs["zarr_conventions"] = [{"name": "multiscales"}]
    _assert_rejected(validate_multiscales(attrs), "zarr_conventions", "never by name")
