#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (run as root):
# the Ceph packages for a real RADOS Gateway, zarrita.js, and the toolkit with its test extras.
#   install_test_deps.sh            into python3 (3.11), every version pinned by tools/constraints.txt
#   install_test_deps.sh --newest   into the venv .venv-newest/ made with the newest Python >= 3.12 on the machine
#                                   (PATH, then pyenv's versions), with the newest zarr-python, numcodecs and
#                                   tensorstore the registries offer; every other pin of tools/constraints.txt holds;
#                                   and the incumbent, geotessera 0.11 (the `incumbent` extra), the oracle of
#                                   tests/test_incumbent.py (its tests skip where it is not installed)
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

NEWEST_VENV=.venv-newest
FLOATING='zarr|numcodecs|tensorstore'  # taken at their newest by --newest

newest=0
case "${1:-}" in
  "") ;;
  --newest) newest=1 ;;
  *) echo "usage: $0 [--newest]" >&2; exit 2 ;;
esac

DEBS=(ceph-mon ceph-osd radosgw ceph-common curl)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# zarrita.js for the interop matrix (tests/test_codecs_interop.py): pinned by tools/interop/package-lock.json
if ! cmp -s tools/interop/package-lock.json tools/interop/node_modules/.installed-from-lock; then
  echo "installing zarrita.js into tools/interop/node_modules" >&2
  npm ci --prefix tools/interop --no-audit --no-fund --loglevel=error
  cp tools/interop/package-lock.json tools/interop/node_modules/.installed-from-lock
fi

if ((!newest)); then
  python3 -m pip install --quiet --disable-pip-version-check -c tools/constraints.txt -e '.[test]'
  exit 0
fi

# The newest Python >= 3.12: a pythonX.Y on PATH that runs (pyenv's shims exist for versions not selected, and fail),
# else the highest of pyenv's installed versions.
runs() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }
python=""
for minor in 15 14 13 12; do
  if command -v "python3.$minor" >/dev/null && runs "python3.$minor"; then python=$(command -v "python3.$minor"); break; fi
done
if [[ -z $python ]] && command -v pyenv >/dev/null; then
  for candidate in $(ls -d "$(pyenv root)"/versions/3.1[2-9]* 2>/dev/null | sort -V -r); do
    exe="$candidate/bin/python3"
    if [[ -x $exe ]] && runs "$exe"; then python=$exe; break; fi
  done
fi
if [[ -z $python ]]; then
  echo "error: no Python >= 3.12 found (looked for python3.12..python3.15 on PATH and in pyenv's versions);" \
       "install one, e.g. with 'pyenv install 3.13'" >&2
  exit 2
fi

if [[ ! -x $NEWEST_VENV/bin/python ]] || ! cmp -s <("$NEWEST_VENV/bin/python" -c 'import sys; print(sys.version)') \
                                                <("$python" -c 'import sys; print(sys.version)'); then
  echo "creating $NEWEST_VENV with $python ($("$python" --version))" >&2
  "$python" -m venv --clear "$NEWEST_VENV"
fi
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
grep -vE "^($FLOATING)==" tools/constraints.txt > "$pins"
"$NEWEST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade -c "$pins" -e '.[test,incumbent]' \
  zarr numcodecs tensorstore
"$NEWEST_VENV/bin/python" - <<'EOF'
import sys
from importlib.metadata import version
print(f"{sys.executable}: Python {sys.version.split()[0]}, "
      + ", ".join(f"{d} {version(d)}" for d in ("zarr", "numcodecs", "tensorstore", "zarr-cm", "imagecodecs-zarr", "geotessera")),
      file=sys.stderr)
EOF
