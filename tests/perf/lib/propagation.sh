# shellcheck shell=bash
# tests/perf: propagation of Admin API changes. Three gateway nodes (cluster
# mode) on one throw-away PostgreSQL under $WORK/pg; lib/propagation.py makes
# the changes on node A and times them until nodes B and C serve them.
# Needs from run: WORK, HERE, LIB, GATEWAY_BIN, UPSTREAM_PORT, PROP_CHANGES,
# PROP_STEP_S, plus lib/common.sh and lib/contenders.sh.

PG_BIN="" PG_DIR="" PG_PORT=""
PG_AS=()             # runuser -u postgres -- when run as root (initdb refuses root)
PG_PASSWORD="perf-pg-$RANDOM$RANDOM"  # throw-away cluster on 127.0.0.1 only
CLUSTER_NODES=(a b c)
declare -A NODE_PID=()
PROP_ERROR=""        # why the step measured nothing; empty if it did

# pg_bin_dir: the directory of initdb, pg_ctl and createdb (Debian links
# initdb into PATH; the others sit beside its target).
pg_bin_dir() {
  local p
  if p=$(command -v initdb 2>/dev/null); then
    dirname "$(readlink -f "$p")"
    return 0
  fi
  p=$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n1)
  [ -n "$p" ] || return 1
  dirname "$p"
}

# pg_version: "postgres (PostgreSQL) 15.x", for the setup facts.
pg_version() {
  local b
  b=$(pg_bin_dir) && "$b/postgres" --version 2>/dev/null | head -n1 || echo "PostgreSQL: not installed"
}

# bounded SECONDS CMD...: CMD under timeout, in the foreground process group so
# that Ctrl-C reaches it. When CMD dies of SIGINT or SIGTERM, the run stops
# here (exit 130/143, then the cleanup trap): bash would otherwise carry on.
bounded() {
  local rc=0
  timeout --foreground "$@" || rc=$?
  case $rc in 130 | 143) exit "$rc" ;; esac
  return "$rc"
}

prop_fail() {
  PROP_ERROR=$1
  return 1
}

# pg_start: initdb and start a server on a free loopback port, owned by the
# postgres user when run as root; stopped by cleanup whatever happens.
pg_start() {
  PG_BIN=$(pg_bin_dir) || prop_fail "no PostgreSQL server binaries (initdb) after installing postgresql-15" || return 1
  PG_DIR="$WORK/pg"
  PG_AS=()
  # The server runs as postgres: $WORK (mode 700) must be traversable.
  chmod 711 "$WORK"
  mkdir -p "$PG_DIR"
  chmod 755 "$PG_DIR"
  printf '%s' "$PG_PASSWORD" >"$PG_DIR/pw"
  chmod 644 "$PG_DIR/pw"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || prop_fail "running as root, and there is no postgres user to run the server as" || return 1
    chown -R postgres:postgres "$PG_DIR"
    PG_AS=(runuser -u postgres --)
  fi
  # env -C: the postgres user's working directory is its own.
  bounded 120 env -C "$PG_DIR" "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres \
    --pwfile "$PG_DIR/pw" --auth-host=scram-sha-256 --auth-local=trust --no-sync -E UTF8 \
    >"$WORK/pg-initdb.log" 2>&1 ||
    { tail -n 15 "$WORK/pg-initdb.log" >&2; prop_fail "initdb failed (log: $WORK/pg-initdb.log)" || return 1; }
  PG_PORT=$(python3 "$LIB/ports.py" 1)
  at_exit pg_stop
  bounded 60 env -C "$PG_DIR" "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off" \
    -w -t 30 start >"$WORK/pg-ctl.log" 2>&1 ||
    { tail -n 15 "$PG_DIR/postgres.log" >&2; prop_fail "pg_ctl start failed (log: $PG_DIR/postgres.log)" || return 1; }
  PGPASSWORD=$PG_PASSWORD bounded 30 "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres gateway \
    >>"$WORK/pg-ctl.log" 2>&1 ||
    { tail -n 5 "$WORK/pg-ctl.log" >&2; prop_fail "createdb gateway failed (log: $WORK/pg-ctl.log)" || return 1; }
}

# pg_stop: immediate stop (a throw-away cluster); SIGQUIT to the postmaster
# if pg_ctl cannot do it. Safe to call twice.
pg_stop() {
  local pid
  [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ] || return 0
  timeout --foreground 30 env -C "$PG_DIR" "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 20 stop \
    >>"$WORK/pg-ctl.log" 2>&1 && return 0
  pid=$(head -n1 "$PG_DIR/data/postmaster.pid" 2>/dev/null) || return 0
  if [ -n "$pid" ] && alive "$pid"; then kill -QUIT "$pid" 2>/dev/null || true; fi
}

# cluster_nodes_start: bootstrap the schema, then start nodes a, b and c, each
# on its own admin and proxy port (NODE_ADMIN_PORTS / NODE_PROXY_PORTS, comma lists).
NODE_ADMIN_PORTS="" NODE_PROXY_PORTS="" NODE_PIDS=""
cluster_nodes_start() {
  local n i=0 ports=() conf admins=() proxies=() pids=()
  mapfile -t ports < <(python3 "$LIB/ports.py" $((2 * ${#CLUSTER_NODES[@]})))
  for n in "${CLUSTER_NODES[@]}"; do
    conf="$WORK/cluster-node-$n.conf"
    render_conf gateway-cluster.conf.tmpl "$conf" "PG_PORT=$PG_PORT" "PG_PASSWORD_FILE=$PG_DIR/pw" \
      "NODE=$n" "NODE_ADMIN_PORT=${ports[i]}" "NODE_PROXY_PORT=${ports[i + 1]}"
    admins+=("${ports[i]}") proxies+=("${ports[i + 1]}")
    i=$((i + 2))
  done
  bounded 60 "$GATEWAY_BIN" migrations bootstrap --conf "$WORK/cluster-node-a.conf" >"$WORK/migrations.log" 2>&1 ||
    { tail -n 15 "$WORK/migrations.log" >&2; prop_fail "gateway migrations bootstrap failed (log: $WORK/migrations.log)" || return 1; }
  for n in "${CLUSTER_NODES[@]}"; do
    spawn "cluster-node-$n" "" "$GATEWAY_BIN" start --conf "$WORK/cluster-node-$n.conf"
    NODE_PID[$n]=$SPAWNED_PID
    pids+=("$SPAWNED_PID")
  done
  NODE_ADMIN_PORTS=$(IFS=,; echo "${admins[*]}")
  NODE_PROXY_PORTS=$(IFS=,; echo "${proxies[*]}")
  NODE_PIDS=$(IFS=,; echo "${pids[*]}")
}

cluster_nodes_stop() {
  local n
  for n in "${CLUSTER_NODES[@]}"; do
    [ -n "${NODE_PID[$n]:-}" ] && stop_tree "${NODE_PID[$n]}"
    unset "NODE_PID[$n]"
  done
}

# measure_propagation: the whole step. Records the fact `propagation` (the
# figures) or `skip.propagation` (why not) and returns 1 if nothing was measured.
measure_propagation() {
  local out="" rc=0 t0=$SECONDS n
  PROP_ERROR=""
  if [ $((SECONDS - PERF_T0)) -gt "$PERF_BUDGET_S" ]; then
    prop_fail "not measured: the time budget (${PERF_BUDGET_S}s) was spent before this step"
  else
    log "propagation: a throw-away PostgreSQL, 3 gateway nodes; $PROP_CHANGES changes on node A, timed until nodes B and C serve them"
    if pg_start && cluster_nodes_start; then
      out=$(timeout --foreground $((PROP_STEP_S + 60)) python3 "$LIB/propagation.py" \
        --admin "$NODE_ADMIN_PORTS" --proxy "$NODE_PROXY_PORTS" --pids "$NODE_PIDS" \
        --upstream "http://127.0.0.1:$UPSTREAM_PORT" --changes "$PROP_CHANGES" \
        --timeout-s 5 --interval-ms 1 --deadline-s "$PROP_STEP_S" 2>"$WORK/propagation.log") || rc=$?
      case $rc in 130 | 143) exit "$rc" ;; esac # Ctrl-C: stop the run, the trap cleans up
      if [ "$rc" -eq 0 ] && [ -n "$out" ]; then
        sed -n '/^    propagation: /p' "$WORK/propagation.log" >&2
        fact propagation "$out"
      else
        cat "$WORK/propagation.log" >&2
        for n in "${CLUSTER_NODES[@]}"; do tail_log "cluster-node-$n"; done
        prop_fail "$(tail -n1 "$WORK/propagation.log" 2>/dev/null || echo "propagation.py failed")" || true
      fi
    fi
    cluster_nodes_stop
    pg_stop
    at_exit_done pg_stop
  fi
  if [ -n "$PROP_ERROR" ]; then
    log "propagation: FAILED: $PROP_ERROR"
    fact skip.propagation "$PROP_ERROR"
    return 1
  fi
  log "propagation: done in $((SECONDS - t0))s"
}
