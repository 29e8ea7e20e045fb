# Shared by the kit's commands (start, stop, reset, status, test).
# shellcheck shell=bash

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KIT_VENV="$KIT_DIR/.venv"
KIT_LOCK="$KIT_DIR/requirements.lock"

die() {
  printf 'localstack kit: %s\n' "$*" >&2
  exit 1
}
say() { printf '%s\n' "$*" >&2; }

# no_args "$@": the kit's commands take no arguments (settings come from the environment).
no_args() {
  [ $# -eq 0 ] || die "$(basename "$0") takes no arguments (got '$*'); settings are environment variables, see localstack/README.md"
}

# kit_config reads LOCALSTACK_KIT_HOME and LOCALSTACK_PORT, and names the kit's files
# (used by the commands that source this file).
# shellcheck disable=SC2034
kit_config() {
  : "${HOME:?HOME is not set}"
  KIT_HOME=${LOCALSTACK_KIT_HOME:-$HOME/.cache/gateway-kit/localstack}
  [ -n "$KIT_HOME" ] || die "LOCALSTACK_KIT_HOME is empty"
  case $KIT_HOME in
    /*) ;;
    *) KIT_HOME="$PWD/$KIT_HOME" ;;
  esac
  KIT_HOME=${KIT_HOME%/}
  case $KIT_HOME in
    "" | / | "$HOME") die "LOCALSTACK_KIT_HOME must be a directory of its own, not '${KIT_HOME:-/}'" ;;
  esac
  KIT_PORT=${LOCALSTACK_PORT:-4566}
  if ! [[ $KIT_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$KIT_PORT < 1 || 10#$KIT_PORT > 65535)); then
    die "LOCALSTACK_PORT must be a TCP port number (1-65535), got '$KIT_PORT'"
  fi
  KIT_PORT=$((10#$KIT_PORT))
  PID_FILE="$KIT_HOME/localstack.pid"
  PORT_FILE="$KIT_HOME/localstack.port"
  LOG_FILE="$KIT_HOME/logs/localstack.log"
  command -v curl >/dev/null 2>&1 || die "curl is required: apt-get install -y curl"
}

endpoint_of() { printf 'http://127.0.0.1:%s' "$1"; }

# kit_info PORT prints the kit's identity JSON when a kit LocalStack answers on PORT.
kit_info() { curl -fsS --max-time 3 "$(endpoint_of "$1")/_kit/info" 2>/dev/null; }

# ours PORT: the kit answering on PORT uses this KIT_HOME.
ours() {
  local info
  info=$(kit_info "$1") || return 1
  [[ $info == *'"kit": "gateway-kit"'* && $info == *"\"home\": \"$KIT_HOME\""* ]]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# running_pid prints the pid of this kit's LocalStack when it is alive.
running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'localstack.runtime.main' || return 1
  printf '%s' "$pid"
}

running_port() {
  local port
  port=$(cat "$PORT_FILE" 2>/dev/null) || return 1
  [[ $port =~ ^[0-9]+$ ]] || return 1
  printf '%s' "$port"
}

healthy() { curl -fsS --max-time 3 "$(endpoint_of "$1")/_localstack/health" >/dev/null 2>&1; }

# --- install -----------------------------------------------------------------

find_python() {
  local c
  for c in "${LOCALSTACK_KIT_PYTHON:-}" python3.11 python3; do
    [ -n "$c" ] || continue
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys, venv; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 14))' 2>/dev/null; then
      command -v "$c"
      return 0
    fi
  done
  die "Python 3.10-3.13 with the venv module is needed (the lock is made on 3.11); set LOCALSTACK_KIT_PYTHON"
}

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

ext_files() { find "$KIT_DIR/kit_ext" -name build -prune -o -type f \( -name '*.py' -o -name pyproject.toml \) -print | LC_ALL=C sort; }

# run_logged LOG MESSAGE CMD...: runs CMD with its output in LOG, printing progress.
run_logged() {
  local log=$1 msg=$2 pid waited=0 rc=0
  shift 2
  say "$msg (log: $log)"
  "$@" >>"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    waited=$((waited + 1))
    if ((waited % 15 == 0)); then say "  ... ${waited}s"; fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 15 "$log" >&2
    die "$msg failed (exit $rc); full log: $log"
  fi
}

# ensure_installed makes localstack/.venv match requirements.lock and kit_ext.
ensure_installed() {
  local want_lock want_ext py log tmp
  mkdir -p "$KIT_HOME/logs"
  log="$KIT_HOME/logs/install.log"
  want_lock=$(stamp_of "$KIT_LOCK")
  if [ "$(cat "$KIT_VENV/.kit-lock" 2>/dev/null)" != "$want_lock" ]; then
    py=$(find_python)
    : >"$log"
    rm -rf "$KIT_VENV"
    "$py" -m venv "$KIT_VENV" >>"$log" 2>&1 || die "could not create $KIT_VENV with $py (see $log)"
    run_logged "$log" "installing LocalStack $(grep -o 'localstack-core==[^ ]*' "$KIT_LOCK") into localstack/.venv (first use: a few minutes)" \
      "$KIT_VENV/bin/python" -m pip install --disable-pip-version-check --no-input --no-deps -r "$KIT_LOCK"
    "$KIT_VENV/bin/python" -m pip check >>"$log" 2>&1 || die "the installed packages are inconsistent (see $log)"
    printf '%s\n' "$want_lock" >"$KIT_VENV/.kit-lock"
    rm -f "$KIT_VENV/.kit-ext"
  fi
  # shellcheck disable=SC2046 # file names from ext_files have no spaces
  want_ext=$(stamp_of $(ext_files))
  if [ "$(cat "$KIT_VENV/.kit-ext" 2>/dev/null)" != "$want_ext" ]; then
    tmp=$(mktemp -d)
    cp -r "$KIT_DIR/kit_ext" "$tmp/"
    rm -rf "$tmp/kit_ext/build" "$tmp"/kit_ext/*.egg-info
    run_logged "$log" "installing the kit's LocalStack extension (kit_ext)" \
      "$KIT_VENV/bin/python" -m pip install --disable-pip-version-check --no-input --no-deps \
      --no-build-isolation --force-reinstall "$tmp/kit_ext"
    rm -rf "$tmp" "$KIT_HOME/cache/plux" # plux's entry point index, else it may miss the new one
    printf '%s\n' "$want_ext" >"$KIT_VENV/.kit-ext"
  fi
}

# --- PostgreSQL behind RDS -----------------------------------------------------

# pg_reachable lets the postgres user reach KIT_HOME (PostgreSQL refuses to run as root).
pg_reachable() {
  local dir="" part
  [ "$(id -u)" -eq 0 ] || return 0
  id postgres >/dev/null 2>&1 || return 0
  # From / down, so each directory is tested once its parents are reachable.
  local IFS=/
  for part in ${KIT_HOME#/}; do
    dir="$dir/$part"
    if [ -d "$dir" ] && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
      chmod o+x "$dir"
      say "note: made $dir traversable (o+x) so PostgreSQL, running as user postgres, reaches $KIT_HOME/rds"
    fi
  done
}

pg_ctl_bin() {
  local d
  for d in "${KIT_PG_BIN:-}" "$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || echo /nonexistent)")")" /usr/lib/postgresql/15/bin; do
    [ -n "$d" ] && [ -x "$d/pg_ctl" ] && { printf '%s' "$d/pg_ctl"; return 0; }
  done
  return 1
}

# proc_cmdlines prints "PID COMMAND LINE" for every process (gone ones are skipped).
proc_cmdlines() {
  local f pid cmd
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    cmd=$({ tr '\0' ' ' <"$f"; } 2>/dev/null) || continue
    printf '%s %s\n' "$pid" "$cmd"
  done
}

# kit_postgres_pids prints the pids of PostgreSQL servers whose data lives under KIT_HOME.
kit_postgres_pids() {
  local pid cmd
  while read -r pid cmd; do
    if [[ $cmd == *"postgres -D $KIT_HOME/"* ]]; then printf '%s\n' "$pid"; fi
  done < <(proc_cmdlines)
}

# stop_postgres stops every PostgreSQL the kit started, then removes their files.
stop_postgres() {
  local pidfile data pgctl pids pid
  pgctl=$(pg_ctl_bin) || pgctl=""
  for pidfile in "$KIT_HOME"/rds/clusters/*/data/postmaster.pid; do
    [ -f "$pidfile" ] || continue
    data=$(dirname "$pidfile")
    if [ -n "$pgctl" ]; then
      if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$pgctl" -D "$data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
      else
        "$pgctl" -D "$data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
      fi
    fi
  done
  pids=$(kit_postgres_pids)
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$KIT_HOME/rds"
}

# stop_localstack PID: SIGTERM, then SIGKILL after 30 s; returns once it is gone.
stop_localstack() {
  local pid=$1 waited=0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    waited=$((waited + 1))
    if ((waited == 30)); then
      say "LocalStack did not stop within 30s: killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    ((waited < 40)) || die "could not stop LocalStack (pid $pid)"
  done
}

# --- the data plane: instances, ELBs (HAProxy), namespaces -------------------------------

# dataplane_pids prints the pids of the instances' processes and the ELBs' HAProxies of
# this kit home (LocalStack stops them itself; these are leftovers of a kit that died).
dataplane_pids() {
  local pid cmd
  while read -r pid cmd; do
    case $cmd in
      *"kit_ext.instance_init boot $KIT_HOME/instances/"* | *"haproxy"*"$KIT_HOME/elb/"*) printf '%s\n' "$pid" ;;
    esac
  done < <(proc_cmdlines)
}

# kit_namespaces prints the network namespaces the kit made (kit-vpc-*, kit-i-*).
kit_namespaces() {
  local ns
  [ -d /run/netns ] || return 0
  for ns in /run/netns/kit-*; do
    [ -e "$ns" ] && printf '%s\n' "${ns#/run/netns/}"
  done
  return 0
}

# stop_dataplane kills what a dead kit left running and removes its namespaces.
stop_dataplane() {
  local pids pid ns
  pids=$(dataplane_pids)
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  for ns in $(kit_namespaces); do ip netns del "$ns" 2>/dev/null || true; done
}
