# shellcheck shell=bash
# tests/perf: the upstream, the front HAProxy and the three contenders.
# Needs from run: WORK, HERE, LIB, GATEWAY_BIN, CERT, KEY, PEM, the port
# arrays PORT TLS FRONT FRONT_TLS, ADMIN_PORT, UPSTREAM_PORT, CONTENDER_CPUS,
# LOAD_CPUS.

CONTENDERS=(gateway nginx haproxy)
declare -A CPID=()    # contender -> pid while it runs
UPSTREAM_BODY=$'ok\n'

render() { python3 "$LIB/render.py" "$@" || die "cannot render $1"; }

# The values every template may use.
template_values() {
  local c
  printf '%s\n' "DIR=$WORK" "UPSTREAM_PORT=$UPSTREAM_PORT" "ADMIN_GATEWAY=$ADMIN_PORT" \
    "CERT=$CERT" "KEY=$KEY" "PEM=$PEM"
  for c in "${CONTENDERS[@]}"; do
    printf '%s\n' "PORT_${c^^}=${PORT[$c]}" "TLS_${c^^}=${TLS[$c]}" \
      "FRONT_${c^^}=${FRONT[$c]}" "FRONT_TLS_${c^^}=${FRONT_TLS[$c]}"
  done
}

render_conf() { # render_conf TEMPLATE OUT [NAME=VALUE...]
  local tmpl=$1 out=$2 values=()
  shift 2
  mapfile -t values < <(template_values)
  render "$HERE/conf/$tmpl" "$out" "${values[@]}" "$@"
}

start_upstream() {
  render_conf upstream-nginx.conf.tmpl "$WORK/upstream.conf"
  spawn upstream "$LOAD_CPUS" nginx -p "$WORK" -c "$WORK/upstream.conf" -g 'daemon off;'
  UPSTREAM_PID=$SPAWNED_PID
  wait_listen upstream "$UPSTREAM_PID" "$UPSTREAM_PORT"
  fetch "http://127.0.0.1:$UPSTREAM_PORT/svc-0/"
  if [ "$FETCH_CODE" != 200 ] || [ "$FETCH_BODY" != "$UPSTREAM_BODY" ]; then
    die "the upstream nginx answers $FETCH_CODE '$FETCH_BODY', not 200 'ok'"
  fi
}

start_front() {
  render_conf front-haproxy.cfg.tmpl "$WORK/front.cfg"
  haproxy -c -q -f "$WORK/front.cfg" >"$WORK/front-check.log" 2>&1 ||
    { cat "$WORK/front-check.log" >&2; die "the front HAProxy config does not load"; }
  spawn front "$LOAD_CPUS" haproxy -db -f "$WORK/front.cfg"
  FRONT_PID=$SPAWNED_PID
  wait_listen front "$FRONT_PID" "${FRONT[gateway]}"
}

# gateway_conf ROUTES: the gateway's config file for that route count.
gateway_conf() {
  local out="$WORK/gateway-$1.conf"
  [ -f "$out" ] || render_conf gateway.conf.tmpl "$out" "ROUTES_FILE=$WORK/routes/kong-$1.yml"
  printf '%s' "$out"
}

# start_contender NAME ROUTES: starts it with ROUTES routes; CPID[NAME] is its pid.
start_contender() {
  local c=$1 n=$2 conf
  case $c in
    gateway)
      conf=$(gateway_conf "$n")
      spawn "gateway-$n" "$CONTENDER_CPUS" "$GATEWAY_BIN" start --conf "$conf"
      ;;
    nginx)
      conf="$WORK/nginx-$n.conf"
      render_conf nginx.conf.tmpl "$conf" "ROUTES_FILE=$WORK/routes/nginx-routes-$n.conf"
      spawn "nginx-$n" "$CONTENDER_CPUS" nginx -p "$WORK" -c "$conf" -g 'daemon off;'
      ;;
    haproxy)
      conf="$WORK/haproxy-$n.cfg"
      render_conf haproxy.cfg.tmpl "$conf" "ROUTES_FILE=$WORK/routes/haproxy-$n.map"
      spawn "haproxy-$n" "$CONTENDER_CPUS" haproxy -db -f "$conf"
      ;;
  esac
  CPID[$c]=$SPAWNED_PID
}

stop_contender() {
  [ -n "${CPID[$1]:-}" ] && stop_tree "${CPID[$1]}"
  unset "CPID[$1]"
}

# url NAME SCHEME PATH: the contender's address through the front HAProxy.
url() {
  if [ "$2" = https ]; then
    printf 'https://127.0.0.1:%s%s' "${FRONT_TLS[$1]}" "$3"
  else
    printf 'http://127.0.0.1:%s%s' "${FRONT[$1]}" "$3"
  fi
}

# verify_contender NAME ROUTES SCHEME PATH: waits (up to 30 s) until a
# request through the front HAProxy gets the upstream's 200 "ok"; fails
# clearly if it never does. Then checks that an unknown path is a 404.
verify_contender() {
  local c=$1 n=$2 scheme=$3 path=$4 logname="$1-$2" _
  for _ in $(seq 1 300); do
    alive "${CPID[$c]}" || { tail_log "$logname"; die "$c exited at start (log: $WORK/$logname.log)"; }
    fetch "$(url "$c" "$scheme" "$path")"
    [ "$FETCH_CODE" = 200 ] && break
    sleep 0.1
  done
  if [ "$FETCH_CODE" != 200 ] || [ "$FETCH_BODY" != "$UPSTREAM_BODY" ]; then
    tail_log "$logname"
    die "$c through the front HAProxy ($(url "$c" "$scheme" "$path")) answers $FETCH_CODE '$FETCH_BODY', not 200 'ok'"
  fi
  fetch "$(url "$c" "$scheme" /no-such-route/)"
  if [ "$FETCH_CODE" != 404 ]; then
    log "WARNING: $c answers $FETCH_CODE (not 404) for /no-such-route/ with $n route(s): its routing does not discriminate paths"
    fact "note.routing.$c" "/no-such-route/ got $FETCH_CODE instead of 404: $c matches paths it has no route for, so the 10k-routes figure does not measure its route lookup"
  fi
}

fact() { python3 "$HERE/report.py" fact "$WORK/facts.jsonl" "$1" "$2"; }
