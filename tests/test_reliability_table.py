"""The reliability table: rendered from the fault tests' records, and docs/reliability.md built from exactly the
cases tests/test_faults.py runs in full (every cell backed by a test, every test in the table)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from test_faults import CELLS, _cases

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


def test_the_documented_table_comes_from_the_full_fault_run():
    doc = (REPO / "docs" / "reliability.md").read_text()
    full = sorted(p.id for p in _cases(full=True))
    assert reliability_table.documented_cases(doc) == full
    for cell in CELLS:
        assert f"## {cell.verb} ({cell.side}): {cell.what}" in doc
    assert "docs/reliability.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("argv", [[], ["--run", "somewhere"]])
def test_the_tool_wants_records_or_a_run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        reliability_table.main(argv)
    assert e.value.code == 2 and "give a records folder or --run" in capsys.readouterr().err
