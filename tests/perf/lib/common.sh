# shellcheck shell=bash
# tests/perf: logging, the time budget, and the bookkeeping of every process
# the run starts (all of them are stopped by cleanup, whatever ends the run).

PERF_PIDS=()      # background processes still running, in start order
SPAWNED_PID=""    # set by spawn
PERF_AT_EXIT=()   # commands (strings, eval'd) cleanup runs after stopping PERF_PIDS

log() { printf '[perf %4ss] %s\n' "$((SECONDS - PERF_T0))" "$*" >&2; }

die() {
  printf '\nperf: ERROR: %s\n' "$*" >&2
  exit 1
}

# The run must end on its own: every step is bounded, and no new step starts
# once the budget is spent.
budget_check() {
  if [ $((SECONDS - PERF_T0)) -gt "$PERF_BUDGET_S" ]; then
    die "over the time budget (${PERF_BUDGET_S}s) before: $*"
  fi
}

# spawn NAME CPUS CMD...: runs CMD in the background, pinned to CPUS (a taskset
# list, empty for no pinning), output to $WORK/NAME.log. Sets SPAWNED_PID.
spawn() {
  local name=$1 cpus=$2
  shift 2
  if [ -n "$cpus" ]; then
    set -- taskset -c "$cpus" "$@" # taskset execs: the pid is the command's
  fi
  "$@" >"$WORK/$name.log" 2>&1 &
  SPAWNED_PID=$!
  PERF_PIDS+=("$SPAWNED_PID")
}

alive() { kill -0 "$1" 2>/dev/null; }

# at_exit CMD: cleanup evals CMD (a string) once every spawned process is
# stopped, on success, failure or Ctrl-C alike; at_exit_done CMD drops it again.
at_exit() { PERF_AT_EXIT+=("$1"); }
at_exit_done() {
  local c left=()
  for c in "${PERF_AT_EXIT[@]}"; do
    [ "$c" = "$1" ] || left+=("$c")
  done
  PERF_AT_EXIT=("${left[@]}")
}

# stop_tree PID: SIGTERM, up to 5 s to exit, then SIGKILL for whatever is left
# of it and its descendants (nginx workers).
stop_tree() {
  local pid=$1 p kids=() left=()
  if alive "$pid"; then
    mapfile -t kids < <(python3 "$LIB/procstat.py" tree "$pid" 2>/dev/null)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      alive "$pid" || break
      sleep 0.1
    done
    for p in "${kids[@]}"; do
      if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
  fi
  wait "$pid" 2>/dev/null || true
  for p in "${PERF_PIDS[@]}"; do
    [ "$p" = "$pid" ] || left+=("$p")
  done
  PERF_PIDS=("${left[@]}")
}

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#PERF_PIDS[@]} - 1; i >= 0; i--)); do
    stop_tree "${PERF_PIDS[i]}"
  done
  # Daemons that are no child of this shell (the PostgreSQL server), newest first.
  for ((i = ${#PERF_AT_EXIT[@]} - 1; i >= 0; i--)); do
    eval "${PERF_AT_EXIT[i]}" || true
  done
  PERF_AT_EXIT=()
  if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
    if [ "$rc" -ne 0 ] || [ -n "${PERF_KEEP:-}" ]; then
      echo "perf: logs and configs kept in $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}

# tail_log NAME: the end of a process's log, for error messages.
tail_log() { tail -n 15 "$WORK/$1.log" 2>/dev/null | sed 's/^/    | /' >&2 || true; }

# wait_listen NAME PID PORT: until 127.0.0.1:PORT accepts (up to 15 s).
wait_listen() {
  local name=$1 pid=$2 port=$3 _
  for _ in $(seq 1 150); do
    alive "$pid" || { tail_log "$name"; die "$name exited at start (log: $WORK/$name.log)"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  tail_log "$name"
  die "$name does not listen on 127.0.0.1:$port after 15 s"
}

# fetch URL: sets FETCH_CODE (000 if no answer) and FETCH_BODY; -k for TLS.
FETCH_CODE="" FETCH_BODY=""
fetch() {
  local out
  out=$(curl -sk --max-time 5 -o - -w '\n%{http_code}' "$1" 2>/dev/null) || true
  FETCH_CODE=${out##*$'\n'}
  # shellcheck disable=SC2034 # read by the callers
  FETCH_BODY=${out%$'\n'*}
  [ -n "$FETCH_CODE" ] || FETCH_CODE=000
}
