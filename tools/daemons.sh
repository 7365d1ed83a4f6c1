# Sourced by the test-server scripts (ceph_rgw_*.sh, moto_*.sh): daemons are found by the PID
# they recorded, never by process name, and a zombie counts as stopped (kill -0 succeeds on it).

# pid_running PID: the process exists and is not a zombie
pid_running() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

# pidfile_alive FILE REGEX: FILE holds the PID of a live process whose command line matches REGEX
pidfile_alive() {
  local pid
  [[ -f $1 ]] || return 1
  pid=$(cat "$1")
  pid_running "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE "$2"
}

# listening PORT: something accepts connections on 127.0.0.1:PORT (bash /dev/tcp, no ss/netstat)
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pidfile FILE REGEX GRACE TAG: SIGTERM, then SIGKILL after GRACE seconds; removes FILE.
# Returns 1 when SIGKILL was needed, else 0.
stop_pidfile() {
  local f=$1 pattern=$2 grace=$3 tag=$4 pid killed=0
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if pidfile_alive "$f" "$pattern"; then
    kill -TERM "$pid"
    for ((i = 0; i < grace * 10; i++)); do
      pid_running "$pid" || break
      sleep 0.1
    done
    if pid_running "$pid"; then
      echo "[$tag] $(basename "$f" .pid) ($pid) ignored SIGTERM, sending SIGKILL" >&2
      kill -KILL "$pid"
      killed=1
    fi
    echo "[$tag] stopped $(basename "$f" .pid) ($pid)" >&2
  fi
  rm -f "$f"
  return $killed
}
