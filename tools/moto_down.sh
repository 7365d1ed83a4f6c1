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

source "$(dirname "$0")/daemons.sh"
stop_pidfile "$f" moto "$GRACE" moto_down
exit 0
