"""`bench-codecs`: runs within a minute for N=4 on a synthetic archive, measures every option bit-exactly,
and its projections agree with what `convert` achieves with the same codec."""

import json
import time

import pytest

from transcode.cli import main
from transcode.codecs.bench import BENCH_OPTIONS
from transcode.testing.synthetic import make_legacy_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """The 'small' preset (7 tiles) for one year, and its inventory."""
    base = tmp_path_factory.mktemp("bench")
    rep = make_legacy_archive(base / "archive", years=(2024,), preset="small", seed=2)
    assert main(["inventory", rep.root, "--out", str(base / "inv.parquet"), "--json", "--no-progress"]) == 0
    return rep.root, str(base / "inv.parquet"), base


def test_bench_codecs_runs_in_a_minute_and_measures_every_option(archive, capsys):
    root, _, _ = archive
    capsys.readouterr()
    t0 = time.perf_counter()
    assert main(["bench-codecs", root, "--sample", "4", "--json", "--no-progress"]) == 0
    assert time.perf_counter() - t0 < 60
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["sample"]["tiles"]) == 4 and doc["archive"]["tile_years"] == 7
    assert [r["option"] for r in doc["results"]] == [o.replace(":none", ":noshuffle") for o in BENCH_OPTIONS]
    for r in doc["results"]:
        assert r["bit_exact"] and r["ratio"] > 0.9 and r["compress_mb_s"] > 0 and r["projected_store_bytes"] > 0
    by = {r["option"]: r for r in doc["results"]}
    assert by["snappy"]["portable"] is False and by["blosc:zstd:3"]["portable"] is True
    assert doc["recommendation"] in by and by[doc["recommendation"]]["portable"]


def test_bench_text_report_has_a_recommendation(archive, capsys):
    root, inv, _ = archive
    assert main(["bench-codecs", root, "--inventory", inv, "--sample", "2", "--codec", "zstd:3", "--codec", "lz4",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "zstd:3" in out and "not tensorstore, zarrs" in out
    assert out.strip().splitlines()[-1].startswith("recommendation: --codec zstd:3")


def test_bench_refuses_a_bad_spec(archive, capsys):
    root, inv, _ = archive
    assert main(["bench-codecs", root, "--inventory", inv, "--codec", "blosc:zstd:3:sideways"]) == 2
    assert "valid forms" in capsys.readouterr().err


@pytest.mark.parametrize("codec", ["blosc:zstd:3", "brotli:5:22"])
def test_projections_agree_with_convert(archive, capsys, codec):
    """The projected store size is within 10 % of what convert writes. (Projected speed against convert's is a
    benchmark matter, tools/bench/, not a unit-test assertion: it is only checked to be a positive rate.)"""
    root, inv, base = archive
    store = base / f"store-{codec.replace(':', '-')}"
    assert main(["bench-codecs", root, "--inventory", inv, "--sample", "4", "--codec", codec, "--json",
                 "--no-progress"]) == 0
    bench = json.loads(capsys.readouterr().out)["results"][0]
    assert main(["convert", root, str(store), "--inventory", inv, "--codec", codec, "--json", "--no-progress"]) == 0
    conv = json.loads(capsys.readouterr().out)
    assert abs(bench["projected_store_bytes"] / conv["output_bytes"] - 1) < 0.10
    assert bench["projected_input_mb_s"] > 0 and bench["projected_seconds"] > 0
