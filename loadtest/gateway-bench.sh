#!/usr/bin/env bash
# What the gateway (ADR 0015) costs the resource server: balance reads (`wekeza-load rs`,
# closed loop, one client) against a fresh release sandbox started three ways, in turn:
#   off      WEKEZA_GATEWAY_ENABLED=false WEKEZA_METERING_ENABLED=false
#   limits   limits on (a plan the load never exhausts: every scope counted), no metering
#   full     limits + metering (the default)
# Usage: loadtest/gateway-bench.sh [rounds=3] [duration=10s] [connections=32]
# NO_BUILD=1 skips `cargo build --release`; binaries from ${CARGO_TARGET_DIR:-target}/release.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
rounds="${1:-3}"; dur="${2:-10s}"; conns="${3:-32}"
[ -n "${NO_BUILD:-}" ] || (cd "$repo" && cargo build --release -p authz-server -p loadtest)
plans='{sandbox={client_rate_per_second=1000000.0,client_burst=1000000,org_rate_per_second=1000000.0,org_burst=1000000,org_daily_quota=1000000000}}'
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
spid=""; dir=""
cleanup() { [ -n "$spid" ] && kill "$spid" 2>/dev/null; [ -n "$dir" ] && rm -rf "$dir"; return 0; }
trap cleanup EXIT
run() { # label VAR=value...
  local label="$1"; shift
  local web; web=$(( 20000 + RANDOM % 20000 ))
  while ! { port_free "$web" && port_free $((web + 1)) && port_free $((web + 2)); }; do web=$(( 20000 + RANDOM % 20000 )); done
  dir="$(mktemp -d /tmp/wekeza-gw-bench.XXXXXX)"
  (cd "$dir" && exec env WEKEZA_PLANS="$plans" WEKEZA_WEB_PORT="$web" WEKEZA_MTLS_PORT=$((web + 1)) \
    WEKEZA_RS_PORT=$((web + 2)) "$@" "$bin/wekeza") > "$dir.log" 2>&1 &
  spid=$!
  for _ in $(seq 1 240); do
    [ -f "$dir/certs/sandbox/kit.json" ] && curl -fsS --cacert "$dir/certs/ca.pem" "https://localhost:$web/healthz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  sleep 2 # the resource-server child fetches the JWKS
  local r
  r="$("$bin/wekeza-load" rs --kit "$dir/certs/sandbox/kit.json" --scenario balances --duration "$dur" --connections "$conns" | grep '^RESULT')"
  printf '%-7s %s\n' "$label" "$(grep -o 'req_s=[0-9]*\| p99_ms=[0-9.]*\|status_429=[0-9]*' <<<"$r" | tr '\n' ' ')"
  kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=""
  rm -rf "$dir" "$dir.log"; dir=""
}
for i in $(seq 1 "$rounds"); do
  echo "round $i"
  run off WEKEZA_GATEWAY_ENABLED=false WEKEZA_METERING_ENABLED=false
  run limits WEKEZA_METERING_ENABLED=false
  run full
done
