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

running() {  # exists and is not a zombie
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

stop() {
  local name=$1 f=$RUN/$1.pid pid
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  # only signal it if it is really one of our ceph daemons
  if running "$pid" && grep -qE 'ceph-|radosgw' "/proc/$pid/comm" 2>/dev/null; then
    kill -TERM "$pid"
    for ((i = 0; i < GRACE * 10; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      echo "[ceph_rgw_down] $name ($pid) ignored SIGTERM, sending SIGKILL" >&2
      kill -KILL "$pid"; UNCLEAN=1
    fi
    echo "[ceph_rgw_down] stopped $name ($pid)" >&2
  fi
  rm -f "$f"
}

UNCLEAN=0
for d in rgw osd.0 mon; do stop "$d"; done
# lets ceph_rgw_up.sh know that the memstore OSD saved its contents
[[ -d $DATA && $UNCLEAN == 0 ]] && touch "$DATA/.clean_shutdown"
rm -f "$RUN"/*.asok
if [[ $PURGE == --purge ]]; then
  rm -rf "$DATA"
  echo "[ceph_rgw_down] removed $DATA" >&2
fi
exit 0
