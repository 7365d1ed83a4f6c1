#!/usr/bin/env bash
# Bring up a minimal single-host Ceph (Pacific 16.2.x, Debian bookworm packages)
# cluster + RADOS Gateway on 127.0.0.1 for tests, without systemd.
#
#   usage: ceph_rgw_up.sh DATA_DIR [RGW_PORT] [MON_PORT]
#
# - 1 mon (msgr v2 only, 127.0.0.1:MON_PORT, default RGW_PORT+1), auth = none
# - 1 osd, memstore (objects live in RAM, capacity MEMSTORE_BYTES), pool size 1
# - radosgw, beast frontend on plain HTTP 127.0.0.1:RGW_PORT, path-style addressing;
#   with RGW_SSL_PORT set, also HTTPS on 127.0.0.1:RGW_SSL_PORT with a self-signed
#   certificate (printed as S3_ENDPOINT_HTTPS and S3_CA_BUNDLE)
# - an S3 user with fixed keys (override with S3_ACCESS_KEY / S3_SECRET_KEY)
#
# Idempotent: if the daemons recorded in DATA_DIR/run/*.pid are alive it only
# (re)prints the endpoint; if DATA_DIR exists but daemons are down it restarts
# them (memstore keeps data only across a clean SIGTERM shutdown, otherwise the
# cluster is rebuilt empty).
# Prints shell-style "KEY=value" lines on stdout (S3_ENDPOINT, S3_ACCESS_KEY,
# S3_SECRET_KEY, S3_REGION, CEPH_CONF); everything else goes to stderr.  Logs
# are in DATA_DIR/log, PID files in DATA_DIR/run.  Stop with ceph_rgw_down.sh DATA_DIR.
#
# Needs: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl
# Keep DATA_DIR short: admin sockets (DATA_DIR/run/*.asok)
# are unix sockets, limited to 107 bytes of path.
set -euo pipefail

DATA=${1:?usage: $0 DATA_DIR [RGW_PORT] [MON_PORT]}
RGW_PORT=${2:-7480}
MON_PORT=${3:-$((RGW_PORT + 1))}
ACCESS=${S3_ACCESS_KEY:-testaccesskey0000000}
SECRET=${S3_SECRET_KEY:-testsecretkey0000000000000000000000000000}
S3_UID=${S3_UID:-tester}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-4294967296}   # memstore capacity (RAM), 4 GiB
RGW_SSL_PORT=${RGW_SSL_PORT:-}                   # optional extra HTTPS endpoint (self-signed cert)
WARMUP=${WARMUP:-1}                              # pre-create RGW pools (first requests ~2 s faster each)
TIMEOUT=${TIMEOUT:-120}                          # seconds to wait for each daemon

mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
CONF=$DATA/ceph.conf
RUN=$DATA/run
LOG=$DATA/log
mkdir -p "$RUN" "$LOG"

log() { echo "[ceph_rgw_up $(date +%T.%3N)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
source "$(dirname "$0")/daemons.sh"
alive() { pidfile_alive "$RUN/$1.pid" 'ceph-|radosgw'; }
CEPH() { ceph -c "$CONF" --connect-timeout 15 "$@"; }

print_env() {
  cat <<EOF
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
S3_ACCESS_KEY=$ACCESS
S3_SECRET_KEY=$SECRET
S3_REGION=us-east-1
CEPH_CONF=$CONF
EOF
  if [[ -f $DATA/.rgw_ssl_port ]]; then
    echo "S3_ENDPOINT_HTTPS=https://127.0.0.1:$(cat "$DATA/.rgw_ssl_port")"
    echo "S3_CA_BUNDLE=$DATA/tls.crt"
  fi
}

wait_http() {   # wait until RGW answers HTTP on its port
  local t0=$SECONDS
  until curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$RGW_PORT/"; do
    alive rgw || die "radosgw died, see $LOG/client.rgw.log"
    (( SECONDS - t0 > TIMEOUT )) && die "radosgw did not answer within ${TIMEOUT}s"
    sleep 0.2
  done
}

# setsid without -f does not fork here (a background job of a non-interactive
# shell is not a process-group leader), so $! is the daemon's own PID.
start_daemon() {  # name, command...
  local name=$1; shift
  if alive "$name"; then log "$name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  setsid "$@" </dev/null >>"$LOG/$name.stdout" 2>&1 &
  echo $! >"$RUN/$name.pid"
  log "started $name pid $!"
}

# ---------------------------------------------------------------- fast path
if alive mon && alive osd.0 && alive rgw && [[ -f $DATA/.user_done ]]; then
  RGW_PORT=$(cat "$DATA/.rgw_port"); MON_PORT=$(cat "$DATA/.mon_port")
  ACCESS=$(cat "$DATA/.access"); SECRET=$(cat "$DATA/.secret")
  log "already up"
  print_env; exit 0
fi

# ---------------------------------------------------------------- unclean memstore
# memstore keeps objects only in RAM and writes them out on a clean umount
# (SIGTERM with osd_fast_shutdown=false, as ceph_rgw_down.sh does).  After a
# kill -9 / OOM / reboot the OSD comes back empty while the mon still lists
# pools and PGs: RGW then hangs forever.  Detect that and rebuild.
if [[ -f $CONF && -f $DATA/osd/ceph-0/.mkfs_done && ! -f $DATA/.clean_shutdown ]] \
   && ! alive osd.0; then
  log "osd.0 (memstore) was not shut down cleanly: its data is gone, rebuilding $DATA"
  for d in rgw mon; do
    if alive "$d"; then kill -TERM "$(cat "$RUN/$d.pid")"; fi
  done
  for d in rgw mon; do
    for ((i = 0; i < 100; i++)); do alive "$d" || break; sleep 0.1; done
  done
  RGW_PORT=$(cat "$DATA/.rgw_port"); MON_PORT=$(cat "$DATA/.mon_port")
  ACCESS=$(cat "$DATA/.access"); SECRET=$(cat "$DATA/.secret")
  [[ -f $DATA/.rgw_ssl_port ]] && RGW_SSL_PORT=$(cat "$DATA/.rgw_ssl_port")
  rm -rf "$DATA/mon" "$DATA/osd" "$RUN"/* "$CONF" "$DATA/monmap" \
         "$DATA/mon.keyring" "$DATA/.pools_done" "$DATA/.user_done"
fi
rm -f "$DATA/.clean_shutdown"

# ---------------------------------------------------------------- config
if [[ ! -f $CONF ]]; then
  for p in "$RGW_PORT" "$MON_PORT" $RGW_SSL_PORT; do
    listening "$p" && die "port $p already in use"
  done
  FRONTEND="beast endpoint=127.0.0.1:$RGW_PORT"
  if [[ -n $RGW_SSL_PORT ]]; then
    # a self-signed certificate for 127.0.0.1: clients pass DATA_DIR/tls.crt as their CA bundle
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$DATA/tls.key" -out "$DATA/tls.crt" 2>/dev/null || die "openssl could not make a certificate"
    FRONTEND+=" ssl_endpoint=127.0.0.1:$RGW_SSL_PORT ssl_certificate=$DATA/tls.crt ssl_private_key=$DATA/tls.key"
    echo "$RGW_SSL_PORT" >"$DATA/.rgw_ssl_port"
  fi
  (( ${#RUN} + 20 <= 107 )) || die "DATA_DIR too long for unix admin sockets: $RUN"
  FSID=$(cat /proc/sys/kernel/random/uuid)
  echo "$RGW_PORT" >"$DATA/.rgw_port"; echo "$MON_PORT" >"$DATA/.mon_port"
  echo "$ACCESS" >"$DATA/.access"; echo "$SECRET" >"$DATA/.secret"
  cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
mon initial members = a
public addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $RUN
admin socket = $RUN/\$name.asok
log file = $LOG/\$name.log
log to stderr = false
err to stderr = true
mon cluster log file = $LOG/cluster.log
# single replica everything
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
# do not refuse to start on a fullish disk (default crit = 5%)
mon data avail crit = 0
mon data avail warn = 0
mon allow pool delete = true
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false

[mon]
mon data = $DATA/mon/\$cluster-\$id

[osd]
osd data = $DATA/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd memory target = 939524096
# default true = _exit() without unmounting: memstore would lose everything on restart
osd fast shutdown = false

[client]
# radosgw hard-codes ms_mon_client_mode=secure (and a keyring path) as its
# defaults; 'secure' needs cephx session keys, so with auth=none it loops on
# "get_initial_auth_request returned -13" and dies after 300 s.
ms mon client mode = crc
keyring = /dev/null

[client.rgw]
rgw frontends = $FRONTEND
rgw thread pool size = 64
rgw enable usage log = false
rgw dns name = localhost
EOF
  log "wrote $CONF (fsid $FSID)"
else
  RGW_PORT=$(cat "$DATA/.rgw_port"); MON_PORT=$(cat "$DATA/.mon_port")
  ACCESS=$(cat "$DATA/.access"); SECRET=$(cat "$DATA/.secret")
fi
FSID=$(awk '/^fsid/{print $3}' "$CONF")

# ---------------------------------------------------------------- mon
MON_DATA=$DATA/mon/ceph-a
if [[ ! -f $MON_DATA/.mkfs_done ]]; then
  rm -rf "$MON_DATA"; mkdir -p "$MON_DATA"
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" \
    "$DATA/monmap" >&2
  # even with auth=none ceph-mon --mkfs wants a keyring with a mon. key
  ceph-authtool --create-keyring "$DATA/mon.keyring" --gen-key -n mon. \
    --cap mon 'allow *' >&2
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DATA/monmap" \
    --keyring "$DATA/mon.keyring" >&2
  touch "$MON_DATA/.mkfs_done"
  log "mon mkfs done"
fi
start_daemon mon ceph-mon -f -c "$CONF" -i a
t0=$SECONDS
until CEPH mon stat >/dev/null 2>&1; do
  alive mon || die "ceph-mon died, see $LOG/mon.a.log"
  (( SECONDS - t0 > TIMEOUT )) && die "mon not reachable"
  sleep 0.3
done
log "mon up"

# ---------------------------------------------------------------- osd
OSD_DATA=$DATA/osd/ceph-0
if [[ ! -f $OSD_DATA/.mkfs_done ]]; then
  rm -rf "$OSD_DATA"; mkdir -p "$OSD_DATA"
  OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
  id=$(CEPH osd new "$OSD_UUID")
  [[ $id == 0 ]] || die "expected osd id 0, got '$id' (stale mon store? remove $DATA)"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >&2 2>>"$LOG/osd.0.mkfs"
  touch "$OSD_DATA/.mkfs_done"
  log "osd mkfs done (memstore)"
fi
start_daemon osd.0 ceph-osd -f -c "$CONF" -i 0
t0=$SECONDS
# ask the OSD itself: after a restart the osdmap may still say "up" from before
until ceph --admin-daemon "$RUN/osd.0.asok" status 2>/dev/null | grep -q '"state": "active"' \
      && CEPH osd dump 2>/dev/null | grep -q '^osd\.0 up'; do
  alive osd.0 || die "ceph-osd died, see $LOG/osd.0.log"
  (( SECONDS - t0 > TIMEOUT )) && die "osd.0 not up"
  sleep 0.3
done
log "osd.0 up"

# ---------------------------------------------------------------- pools
# RGW creates its pools lazily (index on first CreateBucket, data on first PUT,
# non-ec on first multipart upload), each costing ~2 s of PG creation/peering
# on the request path.  Creating them up front lets them peer in parallel.
if [[ $WARMUP == 1 && ! -f $DATA/.pools_done ]]; then
  # each mon command waits for a paxos round (~1 s), so run them in parallel
  POOLS=".rgw.root default.rgw.control default.rgw.meta default.rgw.log
         default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec"
  # (wait on explicit PIDs: a bare 'wait' would also wait for the daemons)
  pids=(); for pool in $POOLS; do CEPH osd pool create "$pool" 8 8 replicated >/dev/null 2>&1 & pids+=($!); done
  wait "${pids[@]}" || true
  pids=(); for pool in $POOLS; do CEPH osd pool application enable "$pool" rgw >/dev/null 2>&1 & pids+=($!); done
  wait "${pids[@]}" || true
  touch "$DATA/.pools_done"
  log "rgw pools created"
fi

# ---------------------------------------------------------------- rgw
start_daemon rgw radosgw -f -c "$CONF" -n client.rgw
wait_http
log "rgw answers on 127.0.0.1:$RGW_PORT"

if [[ ! -f $DATA/.user_done ]]; then
  # as the default admin client, not client.rgw (admin socket collision)
  if ! radosgw-admin -c "$CONF" user info --uid "$S3_UID" >/dev/null 2>&1; then
    radosgw-admin -c "$CONF" user create --uid "$S3_UID" \
      --display-name "$S3_UID" --access-key "$ACCESS" --secret-key "$SECRET" >/dev/null
  fi
  touch "$DATA/.user_done"
  log "user $S3_UID ready"
fi
print_env
