#!/usr/bin/env bash
# Domestic payments per second on PostgreSQL + Redis (the README's payment table), one run:
# a release `wekeza` in a fresh temp dir and a fresh PostgreSQL schema, N load customers whose
# consents are authorised first, then `wekeza-load payments` executes them all.
#
# usage: loadtest/pay-bench.sh [payments=3000] [accounts=200] [connections=64]
#   accounts: 1 = every payment leaves one shared account (that row's lock bounds it);
#             N > 1 = WEKEZA_SANDBOX_LOAD_ACCOUNTS=N debtor accounts.
# env: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), REDIS_URL
#      (default redis://127.0.0.1:6379), NO_BUILD=1 to skip the release build,
#      PAY_CLIENT=private_key_jwt to pay as the ES256-signing kit client (default
#      tls_client_auth, PS256; responses are signed in the same algorithm, ADR 0020),
#      PRESIGN=1 to sign the payment bodies before the timed phase (wekeza-load --presign).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tgt="${CARGO_TARGET_DIR:-$repo/target}"
n="${1:-3000}"; accounts="${2:-200}"; conns="${3:-64}"
db="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis="${REDIS_URL:-redis://127.0.0.1:6379}"
plans='{sandbox={client_rate_per_second=1000000.0,client_burst=1000000,org_rate_per_second=1000000.0,org_burst=1000000,org_daily_quota=1000000000}}'
[ -n "${NO_BUILD:-}" ] || (cd "$repo" && cargo build --release --locked -p authz-server -p loadtest)
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Below the kernel's ephemeral range (32768+), so no outgoing connection takes a port.
web=$(( 20000 + RANDOM % 12000 ))
while ! { port_free "$web" && port_free $((web + 1)) && port_free $((web + 2)); }; do web=$(( 20000 + RANDOM % 12000 )); done
dir="$(mktemp -d /tmp/wekeza-paybench.XXXXXX)"
schema="paybench_$(date +%s)_$RANDOM"
extra=()
[ "$accounts" -gt 1 ] && extra+=("WEKEZA_SANDBOX_LOAD_ACCOUNTS=$accounts")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  sleep 1
  psql "$db" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
(cd "$dir" && exec env WEKEZA_PLANS="$plans" WEKEZA_SANDBOX_LOAD_CUSTOMERS="$n" "${extra[@]}" \
  DATABASE_URL="$db" WEKEZA_DATABASE_SCHEMA="$schema" REDIS_URL="$redis" \
  WEKEZA_WEB_PORT="$web" WEKEZA_MTLS_PORT=$((web + 1)) WEKEZA_RS_PORT=$((web + 2)) \
  "$tgt/release/wekeza") > "$dir/wekeza.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f "$dir/certs/sandbox/kit.json" ] && curl -fsS --cacert "$dir/certs/ca.pem" "https://localhost:$web/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/wekeza.log" >&2; exit 1; }
  sleep 0.5
done
# The resource server is a child process that listens a moment after the AS is healthy.
for _ in $(seq 1 120); do
  ! port_free $((web + 2)) && break
  sleep 0.5
done
rs="$(pgrep -P "$pid" -x wekeza | head -1 || true)"
pids="$pid${rs:+,$rs}"
echo "code $(cd "$repo" && git rev-parse --short HEAD); payments=$n accounts=$accounts connections=$conns; server pids $pids"
"$tgt/release/wekeza-load" payments --kit "$dir/certs/sandbox/kit.json" --payments "$n" \
  --connections "$conns" --prepare-connections 16 --customers "$n" --server-pid "$pids" \
  --client "${PAY_CLIENT:-tls_client_auth}" ${PRESIGN:+--presign}
