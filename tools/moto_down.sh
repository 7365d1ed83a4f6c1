#!/usr/bin/env bash
# Stop the moto server started by moto_up.sh (by the PID recorded in
# DATA_DIR/run/moto.pid; never by process name).
#   usage: moto_down.sh DATA_DIR
# SIGTERM first, SIGKILL after GRACE seconds (default 10).  A zombie counts as
# stopped (/proc/PID/stat state Z).  Safe to run twice.
set -uo pipefail
DATA=${1:?usage: $0 DATA_DIR}
GRACE=${GRACE:-10}
f=$DATA/run/moto.pid

running() {  # exists and is not a zombie
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

[[ -f $f ]] || exit 0
pid=$(cat "$f")
# only signal it if it is really our moto server
if running "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto; then
  kill -TERM "$pid"
  for ((i = 0; i < GRACE * 10; i++)); do
    running "$pid" || break
    sleep 0.1
  done
  if running "$pid"; then
    echo "[moto_down] moto ($pid) ignored SIGTERM, sending SIGKILL" >&2
    kill -KILL "$pid"
  fi
  echo "[moto_down] stopped moto ($pid)" >&2
fi
rm -f "$f"
exit 0
