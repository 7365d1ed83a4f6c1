import sys
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:  # "import s3servers" under any --import-mode
    sys.path.insert(0, _TESTS_DIR)

import s3servers  # noqa: E402

# ---------------------------------------------------------------- full runs of the fuzz and kill-soak tests
# CI runs the parser fuzz targets and the kill soaks with small default counts; `--fuzz-full` (or
# TESSERA_FUZZ_FULL=1) runs the full counts (thousands of cases per parser, 20+ kills per soak).


def pytest_addoption(parser):
    parser.addoption("--fuzz-full", action="store_true", default=False,
                     help="full fuzz and kill-soak counts instead of CI's small defaults (env TESSERA_FUZZ_FULL=1)")


@pytest.fixture(scope="session")
def fuzz_full(request) -> bool:
    """True for the full fuzz and soak counts."""
    import os

    return request.config.getoption("--fuzz-full") or os.environ.get("TESSERA_FUZZ_FULL", "") not in ("", "0")

# ---------------------------------------------------------------- S3 test servers
# Real S3 servers on 127.0.0.1, one of each per session (see tests/s3servers.py).
# rgw_server / moto_server -> s3servers.S3Server; s3_server runs a test on both.

@pytest.fixture(scope="session")
def rgw_server(tmp_path_factory):
    missing = s3servers.missing_rgw_commands()
    if missing:  # fail, never skip: CI installs Ceph
        pytest.fail("Ceph RGW tests need " + " ".join(missing) + ": apt-get install -y "
                    "--no-install-recommends ceph-mon ceph-osd radosgw ceph-common",
                    pytrace=False)
    server = s3servers.start_rgw(tmp_path_factory.mktemp("rgw"))
    try:
        yield server
    finally:
        s3servers.stop(server)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = s3servers.start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        s3servers.stop(server)


@pytest.fixture(scope="session", params=["rgw", "moto"])
def s3_server(request):
    return request.getfixturevalue(f"{request.param}_server")


# ---------------------------------------------------------------- synthetic archives
# One archive carrying every fault the generator can inject, each on its own tile-year,
# shared by the local and S3 inventory tests (generated once per session).

FAULT_YEARS = (2021, 2022, 2023, 2024)


def fault_plan():
    """(fault, tile, year) for every fault, spread over the tiny preset's 12 tile-years."""
    from transcode.testing.synthetic import FAULTS, PRESETS

    slots = [(tile, year) for year in FAULT_YEARS for tile in PRESETS["tiny"]]
    return [(fault, *slots[i]) for i, fault in enumerate(sorted(FAULTS))]


@pytest.fixture(scope="session")
def faulty_archive(tmp_path_factory):
    """A local-layout tiny archive, 2021-2024, with every fault injected once."""
    from transcode.testing.synthetic import make_legacy_archive

    root = tmp_path_factory.mktemp("faulty") / "archive"
    report = make_legacy_archive(root, years=FAULT_YEARS, preset="tiny", faults=fault_plan(), seed=7)
    return report


@pytest.fixture(scope="session")
def clean_archive(tmp_path_factory):
    """A clean local-layout tiny archive for 2024."""
    from transcode.testing.synthetic import make_legacy_archive

    root = tmp_path_factory.mktemp("clean") / "archive"
    return make_legacy_archive(root, years=(2024,), preset="tiny", seed=3)
