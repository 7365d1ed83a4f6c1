"""Outcome records of the fault catalogue (S3 faults, local faults, kill soaks, parser fuzz): when
TESSERA_FAULT_RECORDS names a folder, each test that passed writes one JSON document there, and
`tools/reliability_table.py` renders docs/reliability.md from them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

RECORDS_ENV = "TESSERA_FAULT_RECORDS"


def record(kind: str, name: str, **doc) -> None:
    """Write one outcome (`kind`: s3, local, soak or fuzz) if records are being collected."""
    folder = os.environ.get(RECORDS_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"\W+", "-", f"{kind} {name}").strip("-")
    (Path(folder) / f"{stem}.json").write_text(json.dumps({"kind": kind, **doc}, indent=1, sort_keys=True))


def soak(where: str, log, wanted: int, seconds: float) -> None:
    """A kill soak that ended byte-identical: how many kills hit a running conversion, of how many shards."""
    mid = log.mid_run()
    record("soak", where, where=where, kills=len(mid), wanted=wanted, shards=log.total,
           leftovers=sum(1 for k in mid if k.leftovers), seconds=round(seconds, 1))
