#!/usr/bin/env bash
# Plateau's balancer against Debian's HAProxy, same backend, same machine, driven by wrk.
# Prints JSON: plateau_rps, haproxy_rps, rps_ratio, plateau_p99_ms, haproxy_p99_ms, then the
# task-lifecycle figures of `bench_balancer lifecycle`: running_to_routed_ms,
# failed_during_scale_down, failed_during_rolling_restart (and their sample/request counts).
#
#   bash balancer/bench/balancer.sh            # from the workspace root
#   DURATION=10s CONNECTIONS=64 THREADS=2 PROXY_THREADS=2 ROUNDS=2 bash balancer/bench/balancer.sh
#
# HTTP keep-alive, one backend, Host-header routing on both sides (HAProxy with an ACL on the
# Host header and `option forwardfor`, as Plateau adds X-Forwarded-For). Fairness: both
# proxies run PROXY_THREADS threads (HAProxy `nbthread`, Plateau's data-plane workers),
# default 2 = the cores of the reference machine (HAProxy 2.6's own default is one thread per
# CPU). On a 2-core machine wrk, the proxy and the backend share the cores: compare the two
# numbers, not the absolute. `proxy_cpu_us_per_request_*` is each proxy's own CPU time (user
# + system, from /proc) per request served, the figure least disturbed by other load.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PROXY_THREADS=${PROXY_THREADS:-2}
ROUNDS=${ROUNDS:-2}
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
"$BIN" balancer "$PLATEAU_PORT" "$BACKEND_PORT" "$SERVICE_PORT" "$PROXY_THREADS" 2>"$WORK/plateau.log" & PLATEAU_PID=$!; PIDS+=($PLATEAU_PID)
cat >"$WORK/haproxy.cfg" <<CFG
global
  maxconn 8000  # the sandbox allows 20000 file descriptors
  nbthread $PROXY_THREADS
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
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)

wait_http() {
  for _ in $(seq 1 100); do
    if curl -fs -o /dev/null -H 'Host: bench.local' "http://127.0.0.1:$1/"; then return 0; fi
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2; return 1
}
wait_http "$PLATEAU_PORT"; wait_http "$HAPROXY_PORT"

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# wrk's "Requests/sec", the 99% line of --latency in milliseconds, and the proxy's CPU time
# per request in microseconds. $1: port, $2: the proxy's pid.
run_wrk() {
  local out t0 t1
  t0=$(cpu_ticks "$2")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H 'Host: bench.local' "http://127.0.0.1:$1/")
  t1=$(cpu_ticks "$2")
  echo "$out" >&2
  local rps p99 n
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$rps $p99 $(python3 -c "print(($t1-$t0)*1e6/$(getconf CLK_TCK)/max($n,1))")"
}

wrk -t1 -c8 -d2s -H 'Host: bench.local' "http://127.0.0.1:$PLATEAU_PORT/" >/dev/null  # warm-up
wrk -t1 -c8 -d2s -H 'Host: bench.local' "http://127.0.0.1:$HAPROXY_PORT/" >/dev/null
# ROUNDS rounds in A-B-B-A order (Plateau first in odd rounds, HAProxy first in even ones), so
# neither proxy always runs while the other's connections are still winding down or while
# the machine's other load rises; the JSON has the means and each round.
P_ALL=(); H_ALL=()
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    P_ALL+=("$(run_wrk "$PLATEAU_PORT" "$PLATEAU_PID")"); H_ALL+=("$(run_wrk "$HAPROXY_PORT" "$HAPROXY_PID")")
  else
    H_ALL+=("$(run_wrk "$HAPROXY_PORT" "$HAPROXY_PID")"); P_ALL+=("$(run_wrk "$PLATEAU_PORT" "$PLATEAU_PID")")
  fi
done

# The task lifecycle: the balancer's actor following a stand-in Marathon, real backend
# processes, steady load (see examples/bench_balancer.rs).
LIFECYCLE=$("$BIN" lifecycle 2>"$WORK/lifecycle.log" | tail -n 1)
cat "$WORK/lifecycle.log" >&2

python3 - "$PROXY_THREADS" "$LIFECYCLE" "$(IFS=,; echo "${P_ALL[*]}")" "$(IFS=,; echo "${H_ALL[*]}")" <<'PY'
import json, sys
rounds = lambda arg: [[float(x) for x in r.split()] for r in arg.split(",")]
P, H = rounds(sys.argv[3]), rounds(sys.argv[4])
mean = lambda rs, i: sum(r[i] for r in rs) / len(rs)
p, h = mean(P, 0), mean(H, 0)
out = {
    "plateau_rps": round(p, 1),
    "haproxy_rps": round(h, 1),
    "rps_ratio": round(p / h, 3) if h else None,
    "plateau_p99_ms": round(mean(P, 1), 3),
    "haproxy_p99_ms": round(mean(H, 1), 3),
    "proxy_cpu_us_per_request_plateau": round(mean(P, 2), 2),
    "proxy_cpu_us_per_request_haproxy": round(mean(H, 2), 2),
    "proxy_threads": int(sys.argv[1]),
    "plateau_rps_rounds": [round(r[0], 1) for r in P],
    "haproxy_rps_rounds": [round(r[0], 1) for r in H],
}
out.update(json.loads(sys.argv[2]))
print(json.dumps(out))
PY
