# shellcheck shell=bash
# tests/perf: what each plugin costs. The gateway alone (nginx and HAProxy
# have no Kong plugins), one route, through the same front HAProxy, once per
# plugin set of gen_plugins.py: "none" is the baseline every other set is
# compared with. Sets take turns within each round (none, key-auth, ...,
# none, key-auth, ...), so drift on the machine spreads over all of them.
# With PERF_BASELINE_BIN set (another build of the gateway, say the commit
# before a change), the set "none@baseline" runs that binary without plugins
# in the same turns: the change's cost on a route without plugins.
# PERF_PLUGIN_SETS (comma-separated names) measures only those sets, and
# PERF_PLUGIN_ROUNDS overrides the number of rounds: a longer look at a few.
# Needs from run: PLUGIN_ROUND_S, ROUNDS, WARMUP_S, plus what bench.sh needs.

# fetch_with URL HEADER...: fetch with request headers (FETCH_CODE, FETCH_BODY).
fetch_with() {
  local u=$1 args=() h out
  shift
  for h in "$@"; do args+=(-H "$h"); done
  out=$(curl -sk --max-time 5 "${args[@]}" -o - -w '\n%{http_code}' "$u" 2>/dev/null) || true
  FETCH_CODE=${out##*$'\n'}
  FETCH_BODY=${out%$'\n'*}
  [ -n "$FETCH_CODE" ] || FETCH_CODE=000
}

# plugin_sets: writes the sets' declarative files and configs; PLUGIN_SETS
# holds one line per set, NAME<TAB>HEADER..., in the order measured.
PLUGIN_SETS=()
plugin_sets() {
  local sets=() line name
  mapfile -t sets < <(python3 "$HERE/gen_plugins.py" "127.0.0.1:$UPSTREAM_PORT" "$WORK/plugins") ||
    die "gen_plugins.py failed"
  if [ -n "${PERF_BASELINE_BIN:-}" ]; then
    [ -x "$PERF_BASELINE_BIN" ] || die "PERF_BASELINE_BIN=$PERF_BASELINE_BIN is not an executable"
    # An older build may not know credentials: the same route, no consumers.
    sed '/^consumers:/,$d' "$WORK/plugins/plugins-none.yml" >"$WORK/plugins/plugins-none@baseline.yml"
    sets=("${sets[0]}" "none@baseline" "${sets[@]:1}")
    fact baseline_gateway "\"$("$PERF_BASELINE_BIN" --version 2>&1 | head -n1)\""
  fi
  if [ -n "${PERF_PLUGIN_SETS:-}" ]; then
    local wanted=() keep=()
    IFS=, read -r -a wanted <<<"$PERF_PLUGIN_SETS"
    for line in "${sets[@]}"; do
      for name in "${wanted[@]}"; do
        [ "${line%%$'\t'*}" = "$name" ] && keep+=("$line")
      done
    done
    [ ${#keep[@]} -gt 0 ] || die "PERF_PLUGIN_SETS=$PERF_PLUGIN_SETS names no set of gen_plugins.py"
    sets=("${keep[@]}")
  fi
  for line in "${sets[@]}"; do
    name=${line%%$'\t'*}
    render_conf gateway.conf.tmpl "$WORK/gateway-plugins-$name.conf" \
      "ROUTES_FILE=$WORK/plugins/plugins-$name.yml"
  done
  PLUGIN_SETS=("${sets[@]}")
}

# plugin_bin NAME: the binary a set runs.
plugin_bin() {
  if [ "$1" = none@baseline ]; then printf '%s' "$PERF_BASELINE_BIN"; else printf '%s' "$GATEWAY_BIN"; fi
}

run_plugin_costs() {
  local sets=() line name r i headers=() u c=gateway bin
  budget_check "plugin costs"
  plugin_sets
  sets=("${PLUGIN_SETS[@]}")
  local rounds=${PERF_PLUGIN_ROUNDS:-$ROUNDS}
  u=$(url gateway http /svc-0/)
  log "plugins: ${#sets[@]} sets on one route, ${PLUGIN_ROUND_S}s per set per round, $rounds rounds"
  for r in $(seq 1 "$rounds"); do
    for line in "${sets[@]}"; do
      IFS=$'\t' read -r -a headers <<<"$line"
      name=${headers[0]}
      headers=("${headers[@]:1}")
      bin=$(plugin_bin "$name")
      spawn "gateway-plugins-$name" "$CONTENDER_CPUS" "$bin" start \
        --conf "$WORK/gateway-plugins-$name.conf"
      # shellcheck disable=SC2004 # CPID is associative (lib/contenders.sh)
      CPID[$c]=$SPAWNED_PID
      for i in $(seq 1 300); do
        alive "${CPID[$c]}" ||
          { tail_log "gateway-plugins-$name"; die "the gateway with $name exited at start"; }
        fetch_with "$u" "${headers[@]}"
        [ "$FETCH_CODE" = 200 ] && break
        sleep 0.1
      done
      if [ "$FETCH_CODE" != 200 ] || [ "$FETCH_BODY" != "$UPSTREAM_BODY" ]; then
        tail_log "gateway-plugins-$name"
        die "the gateway with $name answers $FETCH_CODE '$FETCH_BODY', not 200 'ok' (after $i tries)"
      fi
      # shellcheck disable=SC2034 # read by wrk_run
      WRK_HEADERS=("${headers[@]}")
      wrk_run "$WARMUP_S" "$u" "$WORK/wrk-plugins-$name-warmup-$r.txt" ||
        { cat "$WORK/wrk-plugins-$name-warmup-$r.txt" >&2; die "wrk failed against $name (warm-up)"; }
      ROUND_S=$PLUGIN_ROUND_S bench_round "plugins.$name" "$c" "$u" "$r"
      # shellcheck disable=SC2034 # read by wrk_run
      WRK_HEADERS=()
      [ "$r" = "$rounds" ] && fact "hwm.plugins.$name" "$(python3 "$LIB/procstat.py" hwm "${CPID[$c]}")"
      stop_contender "$c"
    done
  done
}
