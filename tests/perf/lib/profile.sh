# shellcheck shell=bash
# tests/perf --profile: where the gateway's CPU goes per proxied request.
# The gateway runs under callgrind (instruction counts: repeatable, unlike
# timings) behind the front HAProxy, with the same config as the 1-route
# scenario; wrk sends a bounded load. The counters are zeroed once the
# gateway answers, so start-up is not counted (callgrind_control -z). Prints
# instructions per request and the functions with the most inclusive
# instructions; keeps callgrind.out.
# Needs from run: WORK, GATEWAY_BIN, PROFILE_S, plus the libs.

profile_gateway() {
  local out="$WORK/callgrind.out" path=/svc-0/ pid reqs total _
  command -v valgrind >/dev/null || ensure_packages valgrind:valgrind
  log "profile: the gateway under callgrind, wrk -t1 -c16 for ${PROFILE_S}s through the front HAProxy"
  spawn gateway-callgrind "" valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$GATEWAY_BIN" start --conf "$(gateway_conf 1)"
  pid=$SPAWNED_PID
  for _ in $(seq 1 600); do
    alive "$pid" || { tail_log gateway-callgrind; die "the gateway exited under valgrind"; }
    fetch "$(url gateway http "$path")"
    [ "$FETCH_CODE" = 200 ] && break
    sleep 0.2
  done
  [ "$FETCH_CODE" = 200 ] || die "the gateway under valgrind never answered 200"
  callgrind_control -z "$pid" >/dev/null 2>&1 || die "callgrind_control could not zero the counters of $pid"
  timeout $((PROFILE_S + 30)) wrk -t1 -c16 -d"${PROFILE_S}s" "$(url gateway http "$path")" \
    >"$WORK/wrk-profile.txt" 2>&1 || { cat "$WORK/wrk-profile.txt" >&2; die "wrk failed"; }
  reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk-profile.txt")
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  [ -s "$out" ] || die "callgrind wrote no profile"
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '\nGateway under callgrind: %s requests, %s instructions in all (from the first of them)\n' "$reqs" "$total"
  printf '  about %s instructions per proxied request\n' "$((total / reqs))"
  printf '\nInclusive instructions per request, top functions (callgrind_annotate --inclusive=yes):\n'
  callgrind_annotate --inclusive=yes "$out" 2>/dev/null |
    awk -v reqs="$reqs" '/^ *[0-9,]+ \( *[0-9.]+%\)/ {
        n = $1; gsub(",", "", n)
        sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, ""); sub(/ \[.*\]$/, "")
        gsub(/\/root\/\.cargo\/registry\/src\/[^\/]+\//, ""); gsub(/\/rustc\/[0-9a-f]+\//, "")
        if ($0 ~ /PROGRAM TOTALS|\?\?\?|libc_start|backtrace|gateway::main|cli::main|run_task|raw::poll/) next
        if (!seen[$0]++ && n / reqs >= 300) printf "  %8d  %s\n", n / reqs, substr($0, 1, 150)
      }' | sed -n '1,50p'
  printf '\nprofile kept: %s (callgrind_annotate --tree=calling --inclusive=yes %s)\n' "$out" "$out"
}

# profile_plugin_sets: instructions per request of each plugin set
# (lib/plugins.sh, PERF_PLUGIN_SETS to pick some), the gateway under
# callgrind as above, so a plugin's cost is read without the timing noise of
# a shared machine. Counting starts when the gateway answers (start-up, which
# differs by set, is left out) and ends when it exits.
profile_plugin_sets() {
  local line name headers=() hargs=() h out pid reqs total u per base="" width=3
  command -v valgrind >/dev/null || ensure_packages valgrind:valgrind
  plugin_sets
  u=$(url gateway http /svc-0/)
  printf '\nInstructions per request under callgrind, %ss of wrk -t1 -c16 per set\n' "$PROFILE_S"
  # The set column as wide as the longest set name.
  for line in "${PLUGIN_SETS[@]}"; do
    name=${line%%$'\t'*}
    if [ ${#name} -gt "$width" ]; then width=${#name}; fi
  done
  printf '  %-*s %12s %10s %9s\n' "$width" set instructions "vs none" requests
  for line in "${PLUGIN_SETS[@]}"; do
    IFS=$'\t' read -r -a headers <<<"$line"
    name=${headers[0]}
    headers=("${headers[@]:1}")
    hargs=()
    for h in "${headers[@]}"; do hargs+=(-H "$h"); done
    out="$WORK/callgrind-$name.out"
    spawn "callgrind-$name" "" valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$(plugin_bin "$name")" start --conf "$WORK/gateway-plugins-$name.conf"
    pid=$SPAWNED_PID
    for _ in $(seq 1 600); do
      alive "$pid" || { tail_log "callgrind-$name"; die "the gateway with $name exited under valgrind"; }
      fetch_with "$u" "${headers[@]}"
      [ "$FETCH_CODE" = 200 ] && break
      sleep 0.2
    done
    [ "$FETCH_CODE" = 200 ] || die "the gateway with $name under valgrind never answered 200"
    callgrind_control -z "$pid" >/dev/null 2>&1 || die "callgrind_control could not zero the counters of $pid"
    timeout $((PROFILE_S + 30)) wrk -t1 -c16 -d"${PROFILE_S}s" "${hargs[@]}" "$u" \
      >"$WORK/wrk-profile-$name.txt" 2>&1 || { cat "$WORK/wrk-profile-$name.txt" >&2; die "wrk failed"; }
    reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk-profile-$name.txt")
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    [ -s "$out" ] || die "callgrind wrote no profile for $name"
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    per=$((total / reqs))
    [ -z "$base" ] && base=$per
    printf '  %-*s %12s %9s%% %9s\n' "$width" "$name" "$per" \
      "$(python3 -c 'import sys; print(f"{(int(sys.argv[1]) / int(sys.argv[2]) - 1) * 100:+.1f}")' "$per" "$base")" "$reqs"
    fact "profile.plugins.$name" "{\"instructions_per_request\": $per, \"requests\": $reqs}"
  done
}
