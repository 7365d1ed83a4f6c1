#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (run as root):
# the Ceph packages for a real RADOS Gateway, and the toolkit with its test extras.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

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

python3 -m pip install --quiet --disable-pip-version-check -c tools/constraints.txt -e '.[test]'

# zarrita.js for the interop matrix (tests/test_codecs_interop.py): pinned by tools/interop/package-lock.json
if ! cmp -s tools/interop/package-lock.json tools/interop/node_modules/.installed-from-lock; then
  echo "installing zarrita.js into tools/interop/node_modules" >&2
  npm ci --prefix tools/interop --no-audit --no-fund --loglevel=error
  cp tools/interop/package-lock.json tools/interop/node_modules/.installed-from-lock
fi
