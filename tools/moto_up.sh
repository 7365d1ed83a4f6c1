#!/usr/bin/env bash
# Start a moto (5.x) S3 server for tests on 127.0.0.1, in the background.
#
#   usage: moto_up.sh DATA_DIR [PORT]        (PORT defaults to 5000)
#
# Runs "$PYTHON -m moto.server -H 127.0.0.1 -p PORT" (PYTHON defaults to
# python3; it needs 'moto[server]') under setsid, records its PID in
# DATA_DIR/run/moto.pid, logs to DATA_DIR/log/moto.log and waits until it
# answers HTTP.  moto keeps everything in memory: a restart starts empty.
# moto accepts any credentials; the fixed ones below only need to be non-empty
# (override with S3_ACCESS_KEY / S3_SECRET_KEY).
# Idempotent: if the recorded server is alive it only (re)prints the endpoint.
# Needs: curl, and moto[server] for $PYTHON.
# Prints shell-style "KEY=value" lines on stdout (S3_ENDPOINT, S3_ACCESS_KEY,
# S3_SECRET_KEY, S3_REGION), like ceph_rgw_up.sh; everything else goes to
# stderr.  Stop with moto_down.sh DATA_DIR.
set -euo pipefail

DATA=${1:?usage: $0 DATA_DIR [PORT]}
PORT=${2:-5000}
PYTHON=${PYTHON:-python3}
ACCESS=${S3_ACCESS_KEY:-testaccesskey0000000}
SECRET=${S3_SECRET_KEY:-testsecretkey0000000000000000000000000000}
TIMEOUT=${TIMEOUT:-60}

mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
RUN=$DATA/run
LOG=$DATA/log
mkdir -p "$RUN" "$LOG"

log() { echo "[moto_up $(date +%T.%3N)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
source "$(dirname "$0")/daemons.sh"
alive() { pidfile_alive "$RUN/moto.pid" moto; }
print_env() {
  cat <<EOF
S3_ENDPOINT=http://127.0.0.1:$PORT
S3_ACCESS_KEY=$ACCESS
S3_SECRET_KEY=$SECRET
S3_REGION=us-east-1
EOF
}

if alive; then
  PORT=$(cat "$DATA/.port")
  log "already up (pid $(cat "$RUN/moto.pid"))"
  print_env; exit 0
fi

listening "$PORT" && die "port $PORT already in use"
echo "$PORT" >"$DATA/.port"
# setsid without -f does not fork here (a background job of a non-interactive
# shell is not a process-group leader), so $! is the server's own PID.
setsid "$PYTHON" -m moto.server -H 127.0.0.1 -p "$PORT" </dev/null >>"$LOG/moto.log" 2>&1 &
echo $! >"$RUN/moto.pid"
log "started moto pid $!"

t0=$SECONDS
until curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$PORT/"; do
  alive || die "moto server died, see $LOG/moto.log"
  (( SECONDS - t0 > TIMEOUT )) && die "moto server did not answer within ${TIMEOUT}s"
  sleep 0.1
done
log "moto answers on 127.0.0.1:$PORT"
print_env
