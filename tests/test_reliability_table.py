"""The reliability table: rendered from the fault tests' records, and docs/reliability.md built from exactly the
cases the catalogue runs in full (S3 faults, local faults, kill soaks, parser fuzz): every cell backed by a test,
every test in the table, the full-run counts in it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from fuzz_targets import TARGETS
from test_convert_resume import FULL_KILLS
from test_faults import CELLS, _cases
from test_fuzz import FULL_EXAMPLES
from test_local_faults import OUTCOMES

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("reliability_table", REPO / "tools" / "reliability_table.py")
reliability_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reliability_table)


def _record(verb: str, side: str, fault: str, persistent: bool, **kw) -> dict:
    base = {"verb": verb, "side": side, "requests": "tile reads", "fault": fault, "persistent": persistent,
            "server": "moto", "felt": True, "exit": 2 if persistent else 0, "retries": 2 if persistent else 1,
            "left": "nothing written"}
    return {**base, **kw}


def test_render_shows_every_outcome_and_lists_its_cases(tmp_path):
    records = [_record("convert", "source", "503 SlowDown", False),
               _record("convert", "source", "503 SlowDown", True, message="s3://BUCKET/a.npy: kept failing"),
               _record("convert", "source", "ETag not matching the body", False, felt=False, retries=0)]
    for i, r in enumerate(records):
        (tmp_path / f"{i}.json").write_text(json.dumps(r))
    doc = reliability_table.render(reliability_table.load(tmp_path), "3 attempts")
    assert "| 503 SlowDown | retried 1×, exit 0 / retried 2×, exit 2 |" in doc
    assert "| ETag not matching the body | no effect, exit 0 / — |" in doc
    assert "`s3://BUCKET/a.npy: kept failing`" in doc and "3 attempts" in doc
    assert reliability_table.documented_cases(doc) == sorted(reliability_table.case_id(r) for r in records)


def test_render_shows_local_faults_soaks_and_fuzz(tmp_path):
    records = [{"kind": "local", "fault": "read-only store", "verb": "convert", "exit": 2, "left": "store unchanged"},
               {"kind": "local", "fault": "tile changed", "verb": "tile read", "exit": None, "left": "an error"},
               {"kind": "soak", "where": "Ceph", "kills": 21, "wanted": 20, "shards": 48, "leftovers": 9,
                "seconds": 312.4},
               {"kind": "fuzz", "target": "npy_headers", "examples": 2000, "seconds": 81.0}]
    doc = reliability_table.render(records, "3 attempts")
    assert "| read-only store | convert | 2 | store unchanged |" in doc
    assert "| tile changed | tile read | raises ArchiveError | an error |" in doc
    assert "| Ceph | 21 (20) | 9 | 48 | 312.4 |" in doc and "| npy_headers | 2000 | 81 |" in doc
    assert reliability_table.documented_cases(doc) == ["fuzz-npy_headers", "local-read-only store",
                                                       "local-tile changed", "soak-Ceph"]


def test_the_documented_table_comes_from_the_full_fault_run():
    doc = (REPO / "docs" / "reliability.md").read_text()
    records = json.loads((REPO / "docs" / "reliability.json").read_text())
    assert doc == reliability_table.render(records, reliability_table.settings())  # generated, not edited
    ids = reliability_table.documented_cases(doc)
    assert [i for i in ids if not i.startswith(("local-", "soak-", "fuzz-"))] == sorted(p.id for p in _cases(full=True))
    for cell in CELLS:
        assert f"## {cell.verb} ({cell.side}): {cell.what}" in doc
    assert sorted(i for i in ids if i.startswith("local-")) == sorted(f"local-{f}" for f in OUTCOMES)
    by = {reliability_table.kind(r): [] for r in records}
    for r in records:
        by[reliability_table.kind(r)].append(r)
    assert sorted(r["target"] for r in by["fuzz"]) == sorted(TARGETS)
    assert all(r["examples"] == FULL_EXAMPLES for r in by["fuzz"]), by["fuzz"]
    full_soaks = [r for r in by["soak"] if r["wanted"] == FULL_KILLS]
    assert len(full_soaks) == 2 and all(r["kills"] >= FULL_KILLS for r in full_soaks), by["soak"]
    assert "docs/reliability.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("argv", [[], ["--run", "somewhere"], ["--render", "--run"]])
def test_the_tool_wants_records_a_run_or_a_render(argv, capsys):
    with pytest.raises(SystemExit) as e:
        reliability_table.main(argv)
    assert e.value.code == 2 and "give a records folder, --run or --render" in capsys.readouterr().err


def test_new_records_replace_their_part_only(tmp_path):
    kept = [{"kind": "fuzz", "target": "a", "examples": 2000, "seconds": 1.0},
            {"kind": "local", "fault": "x", "verb": "convert", "exit": 2, "left": "-"}]
    new = [{"kind": "fuzz", "target": "b", "examples": 2000, "seconds": 2.0}]
    assert reliability_table.merge(kept, new) == [new[0], kept[1]]
