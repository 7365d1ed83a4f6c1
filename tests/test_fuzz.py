"""Every parser of the toolkit fed thousands of mutated files (hypothesis, seeded; tests/fuzz_targets.py): the
outcome is the reader's normal result or a typed error naming the file, never a traceback, a hang (the run's
timeout) or an unbounded allocation (an address-space limit on the process that runs the target).

CI runs a few dozen to a few hundred cases per target; `--fuzz-full` (or TESSERA_FUZZ_FULL=1) runs FULL_EXAMPLES."""

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz_targets import TARGETS, make_seed
from outcomes import record

SCRIPT = Path(__file__).with_name("fuzz_targets.py")
FULL_EXAMPLES = 2000
# CI counts: cheap parsers get more cases; targets that run a verb per case (validate, inventory, plan,
# verify-mirrors) fewer
CI_EXAMPLES = {"npy_headers": 200, "landmask_headers": 100, "mirrors_files": 150, "journal_entries": 100,
               "zarr_json": 40, "shard_indexes": 30, "store_manifest": 25, "mirror_checkpoints": 25,
               "mirror_manifest_files": 25, "registries": 30, "inventory_parquet": 50}
# the address space a target may use: imports and thread stacks take ~2.7 GB of it, a tile ~160 MB
ADDRESS_SPACE = 5 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_every_target_has_a_ci_count():
    assert sorted(CI_EXAMPLES) == sorted(TARGETS)


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """The archive and store the targets mutate copies of (made once)."""
    work = tmp_path_factory.mktemp("fuzz-seed")
    make_seed(work)
    return work


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_parser_fuzz(target, fuzz_full, seed, tmp_path):
    examples = FULL_EXAMPLES if fuzz_full else CI_EXAMPLES[target]
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # glibc's per-thread arenas would reserve address space
    timeout = 7200 if fuzz_full else 600
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, str(SCRIPT), target, str(examples), str(tmp_path), str(seed)], cwd=SCRIPT.parent,
                           env=env, preexec_fn=_limit_memory, capture_output=True, text=True, timeout=timeout, check=False,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{target}: no result after {timeout} s (a hang?)\n{(e.stderr or b'')[-4000:]!r}")
    assert r.returncode == 0, f"{target} failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-8000:]}"
    assert f"{target}: {examples} examples passed" in r.stdout
    record("fuzz", target, target=target, examples=examples, seconds=round(time.monotonic() - t0, 1))
