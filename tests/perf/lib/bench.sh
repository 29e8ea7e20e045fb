# shellcheck shell=bash
# tests/perf: load rounds, scenarios, and the gateway's start-up and memory.
# Needs from run: ROUNDS, ROUND_S, WARMUP_S, WRK_THREADS, WRK_CONNS, STARTUP_RUNS,
# STARTUP_RUNS_10K, ROUTES_10K, plus what lib/contenders.sh needs.

# wrk_run SECONDS URL OUT: one wrk run from the load CPUs; bounded by timeout.
# Sends the request headers in WRK_HEADERS (an array), if any.
WRK_HEADERS=()
wrk_run() {
  local s=$1 u=$2 out=$3 pin=() h hargs=()
  [ -n "$LOAD_CPUS" ] && pin=(taskset -c "$LOAD_CPUS")
  for h in "${WRK_HEADERS[@]}"; do hargs+=(-H "$h"); done
  timeout $((s + 30)) "${pin[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${s}s" \
    --timeout 5s --latency "${hargs[@]}" -s "$LIB/report.lua" "$u" >"$out" 2>&1
}

# bench_round SCENARIO NAME URL ROUND: one measured turn of one contender.
# CPU time: the contender's processes, the load side (front HAProxy, upstream
# nginx, and wrk, from the `times` builtin run in this shell), the machine's CPUs.
bench_round() {
  local scenario=$1 c=$2 u=$3 r=$4 out before after
  out="$WORK/wrk-$scenario-$c-$r.txt"
  budget_check "round $r of $c ($scenario)"
  alive "${CPID[$c]}" || die "$c died during $scenario (log: $WORK/$c-*.log)"
  before=$(python3 "$LIB/procstat.py" snapshot "${CPID[$c]}" "$FRONT_PID" "$UPSTREAM_PID")
  times >"$WORK/times0"
  wrk_run "$ROUND_S" "$u" "$out" || { cat "$out" >&2; die "wrk failed against $c ($u)"; }
  times >"$WORK/times1"
  after=$(python3 "$LIB/procstat.py" snapshot "${CPID[$c]}" "$FRONT_PID" "$UPSTREAM_PID")
  python3 "$HERE/report.py" record "$WORK/rounds.jsonl" --scenario "$scenario" --contender "$c" \
    --round "$r" --wrk-out "$out" --before "$before" --after "$after" \
    --times "$WORK/times0" "$WORK/times1" || die "cannot read wrk's result ($out)"
}

# run_scenario SCENARIO ROUTES SCHEME: all three contenders up at once (each
# on its own ports), checked, warmed up, then ROUNDS turns A B C A B C ...;
# peak RSS is read at the end, then they are stopped.
run_scenario() {
  local scenario=$1 n=$2 scheme=$3 path c r
  path="/svc-$((n / 2))/"
  budget_check "scenario $scenario"
  log "$scenario: $n route(s), $scheme, requests to $path; starting the contenders"
  for c in "${CONTENDERS[@]}"; do start_contender "$c" "$n"; done
  for c in "${CONTENDERS[@]}"; do verify_contender "$c" "$n" "$scheme" "$path"; done
  log "$scenario: all three answer 200 \"ok\" through the front HAProxy; warm-up ${WARMUP_S}s each"
  for c in "${CONTENDERS[@]}"; do
    wrk_run "$WARMUP_S" "$(url "$c" "$scheme" "$path")" "$WORK/wrk-$scenario-$c-warmup.txt" ||
      { cat "$WORK/wrk-$scenario-$c-warmup.txt" >&2; die "wrk failed against $c (warm-up)"; }
  done
  for r in $(seq 1 "$ROUNDS"); do
    log "$scenario: round $r of $ROUNDS (${ROUND_S}s per contender)"
    for c in "${CONTENDERS[@]}"; do
      bench_round "$scenario" "$c" "$(url "$c" "$scheme" "$path")" "$r"
    done
  done
  for c in "${CONTENDERS[@]}"; do
    fact "hwm.$scenario.$c" "$(python3 "$LIB/procstat.py" hwm "${CPID[$c]}")"
    stop_contender "$c"
  done
}

# measure_startup: exec -> /status/ready 200, and RSS once ready, at 1 route
# and at ROUTES_10K routes (the node alone, before any load).
measure_startup() {
  local out pin=()
  budget_check "start-up"
  [ -n "$CONTENDER_CPUS" ] && pin=(taskset -c "$CONTENDER_CPUS")
  log "start-up: $STARTUP_RUNS runs at 1 route, $STARTUP_RUNS_10K at $ROUTES_10K routes (exec -> /status/ready 200)"
  out=$(python3 "$LIB/startup.py" --admin-port "$ADMIN_PORT" --runs "$STARTUP_RUNS" \
    --log "$WORK/startup.log" -- "${pin[@]}" "$GATEWAY_BIN" start --conf "$(gateway_conf 1)") ||
    { tail -n 15 "$WORK/startup.log" >&2; die "start-up measurement failed at 1 route"; }
  fact startup "$out"
  log "start-up at 1 route: $out"
  out=$(python3 "$LIB/startup.py" --admin-port "$ADMIN_PORT" --runs "$STARTUP_RUNS_10K" \
    --log "$WORK/startup.log" -- "${pin[@]}" "$GATEWAY_BIN" start --conf "$(gateway_conf "$ROUTES_10K")") ||
    { tail -n 15 "$WORK/startup.log" >&2; die "start-up measurement failed at $ROUTES_10K routes"; }
  fact startup_10k "$out"
  log "start-up at $ROUTES_10K routes: $out"
}
