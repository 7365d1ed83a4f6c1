#!/usr/bin/env bash
# Stop the daemons started by ceph_rgw_up.sh (by the PIDs it recorded in
# DATA_DIR/run/*.pid; never by process name).
#   usage: ceph_rgw_down.sh DATA_DIR [--purge]
# Order: rgw, osd, mon.  SIGTERM first (the memstore OSD saves its contents on
# a clean shutdown), SIGKILL after GRACE seconds (default 20).  A zombie counts
# as stopped (/proc/PID/stat state Z).  Marks DATA_DIR/.clean_shutdown if no
# SIGKILL was needed.  --purge removes DATA_DIR.  Safe to run twice.
set -uo pipefail
DATA=${1:?usage: $0 DATA_DIR [--purge]}
PURGE=${2:-}
GRACE=${GRACE:-20}
RUN=$DATA/run

source "$(dirname "$0")/daemons.sh"

UNCLEAN=0
for d in rgw osd.0 mon; do
  stop_pidfile "$RUN/$d.pid" 'ceph-|radosgw' "$GRACE" ceph_rgw_down || UNCLEAN=1
done
# lets ceph_rgw_up.sh know that the memstore OSD saved its contents
[[ -d $DATA && $UNCLEAN == 0 ]] && touch "$DATA/.clean_shutdown"
rm -f "$RUN"/*.asok
if [[ $PURGE == --purge ]]; then
  rm -rf "$DATA"
  echo "[ceph_rgw_down] removed $DATA" >&2
fi
exit 0
