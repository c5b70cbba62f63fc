#!/usr/bin/env bash
# Plateau's balancer against Debian's HAProxy, same backend, same machine, driven by wrk.
# Prints JSON: plateau_rps, haproxy_rps, rps_ratio, plateau_p99_ms, haproxy_p99_ms.
#
#   bash balancer/bench/balancer.sh            # from the workspace root
#   DURATION=10s CONNECTIONS=64 THREADS=2 bash balancer/bench/balancer.sh
#
# HTTP keep-alive, one backend, Host-header routing on both sides (HAProxy with an ACL on the
# Host header and `option forwardfor`, as Plateau adds X-Forwarded-For). On a 2-core machine
# wrk, the proxy and the backend share the cores: compare the two numbers, not the absolute.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
TARGET=${CARGO_TARGET_DIR:-target}

if ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq haproxy wrk >/dev/null
fi

cargo build --release -q -p plateau-balancer --example bench_balancer
BIN="$TARGET/release/examples/bench_balancer"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND_PORT=$(free_port); PLATEAU_PORT=$(free_port); HAPROXY_PORT=$(free_port); SERVICE_PORT=$(free_port)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP_LOGS:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
[ -n "${KEEP_LOGS:-}" ] && echo "logs in $WORK" >&2

"$BIN" backend "$BACKEND_PORT" & PIDS+=($!)
"$BIN" balancer "$PLATEAU_PORT" "$BACKEND_PORT" "$SERVICE_PORT" 2>"$WORK/plateau.log" & PIDS+=($!)
cat >"$WORK/haproxy.cfg" <<CFG
global
  maxconn 8000  # the sandbox allows 20000 file descriptors
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 60s
  option forwardfor
frontend http_in
  bind 127.0.0.1:$HAPROXY_PORT
  acl host_bench hdr(host) -i bench.local
  use_backend bench if host_bench
backend bench
  server s1 127.0.0.1:$BACKEND_PORT
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!)

wait_http() {
  for _ in $(seq 1 100); do
    if curl -fs -o /dev/null -H 'Host: bench.local' "http://127.0.0.1:$1/"; then return 0; fi
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2; return 1
}
wait_http "$PLATEAU_PORT"; wait_http "$HAPROXY_PORT"

# wrk's "Requests/sec" and the 99% line of --latency, in milliseconds.
run_wrk() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H 'Host: bench.local' "http://127.0.0.1:$1/")
  echo "$out" >&2
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}')
  echo "$rps $p99"
}

wrk -t1 -c8 -d2s -H 'Host: bench.local' "http://127.0.0.1:$PLATEAU_PORT/" >/dev/null  # warm-up
wrk -t1 -c8 -d2s -H 'Host: bench.local' "http://127.0.0.1:$HAPROXY_PORT/" >/dev/null
read -r P_RPS P_P99 <<<"$(run_wrk "$PLATEAU_PORT")"
read -r H_RPS H_P99 <<<"$(run_wrk "$HAPROXY_PORT")"

python3 - "$P_RPS" "$H_RPS" "$P_P99" "$H_P99" <<'PY'
import json, sys
p, h, pp, hp = (float(x) for x in sys.argv[1:5])
print(json.dumps({
    "plateau_rps": round(p, 1),
    "haproxy_rps": round(h, 1),
    "rps_ratio": round(p / h, 3) if h else None,
    "plateau_p99_ms": round(pp, 3),
    "haproxy_p99_ms": round(hp, 3),
}))
PY
