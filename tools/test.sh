#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need and runs the suite on two Python legs, each
# timed; both legs always run, the exit status is non-zero if either failed.
#   1. Python 3.11 (python3) with every version pinned by tools/constraints.txt
#   2. the newest Python >= 3.12 on the machine (.venv-newest/), with the newest zarr-python, numcodecs and
#      tensorstore the registries offer, every other pin holding
# Extra arguments go to pytest on both legs (e.g. `bash tools/test.sh -x tests/test_convert.py`).
set -uo pipefail
cd "$(dirname "$0")/.."

leg() {  # leg NAME COMMAND...: run COMMAND; its exit status and wall time go to stderr
  local name=$1 start=$SECONDS rc=0
  shift
  echo "=== $name: $*" >&2
  "$@" || rc=$?
  echo "=== $name: exit $rc after $((SECONDS - start)) s" >&2
  return "$rc"
}

# Each leg has its own pytest base directory, removed when the leg ends, so the second leg starts on the
# disk space the first one had (a full leg writes ~12 GB while it runs).
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tessera-tests.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

rc=0
leg "leg 1 (Python 3.11, pinned)" \
    bash -c 'bash tools/install_test_deps.sh && python3 -m pytest -q --basetemp "$0/leg1" "$@"' "$tmp" "$@" || rc=1
rm -rf "$tmp/leg1"
leg "leg 2 (newest Python >= 3.12, newest zarr/numcodecs/tensorstore)" \
    bash -c 'bash tools/install_test_deps.sh --newest && .venv-newest/bin/python -m pytest -q --basetemp "$0/leg2" "$@"' "$tmp" "$@" || rc=1
exit "$rc"
