# shellcheck shell=bash
# tests/perf --profile: where the gateway's CPU goes per proxied request.
# The gateway runs under callgrind (instruction counts: repeatable, unlike
# timings) behind the front HAProxy, with the same config as the 1-route
# scenario; wrk sends a bounded load. Prints instructions per request and the
# functions with the most inclusive instructions; keeps callgrind.out.
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
  timeout $((PROFILE_S + 30)) wrk -t1 -c16 -d"${PROFILE_S}s" "$(url gateway http "$path")" \
    >"$WORK/wrk-profile.txt" 2>&1 || { cat "$WORK/wrk-profile.txt" >&2; die "wrk failed"; }
  reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk-profile.txt")
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  [ -s "$out" ] || die "callgrind wrote no profile"
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '\nGateway under callgrind: %s requests, %s instructions in all (start-up included)\n' "$reqs" "$total"
  printf '  about %s instructions per proxied request\n' "$((total / (reqs + 1)))"
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
