#!/usr/bin/env bash
# FAPI 2.0 conformance in CI: build the AS and the runner, start a fresh sandbox platform
# (temporary directory, free ports, short lifetimes), run every supported variant (the
# Security Profile plan's, the Message Signing plan's signed_non_repudiation + jarm
# variants the kit has clients for, and the fapi_profile=openbanking_uk ones against the
# resource server) in parallel, stop the server. Exits non-zero on any FAIL (or if the
# platform, resource server included, does not come up).
#
#   fapi-conformance/run-ci.sh [extra runner flags, e.g. --module happy-flow --verbose]
#
# Env: FAPI_CONFORMANCE_REPORT_DIR (default target/fapi-conformance),
#      FAPI_CONFORMANCE_KEEP=1 keeps the sandbox directory for inspection,
#      CARGO_TARGET_DIR is honoured (the binaries are taken from cargo's target directory).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
report_dir="${FAPI_CONFORMANCE_REPORT_DIR:-$root/target/fapi-conformance}"
par_ttl=30
# Short so the code-expiry module waits little, long enough that a loaded machine still
# exchanges a code in time (5 s failed on 2 busy cores).
code_ttl=15

cd "$root"
cargo build -q -p authz-server -p fapi-conformance
target_dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="${target_dir:-$root/target}/debug"

work="$(mktemp -d "${TMPDIR:-/tmp}/wkz-conformance.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ "${FAPI_CONFORMANCE_KEEP:-0}" != 1 ]]; then rm -rf "$work"; else echo "sandbox kept in $work"; fi
}
trap cleanup EXIT

# A port nothing listens on (and not handed out already in this run).
taken=" "
free_port() {
    local p
    for _ in $(seq 1 100); do
        # Below the kernel's ephemeral range (32768+ here), where outgoing connections
        # of anything else running could take the port between this check and the bind.
        p=$(( (RANDOM % 12000) + 20000 ))
        [[ "$taken" == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            taken+="$p "
            echo "$p"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}
web_port="$(free_port)"; mtls_port="$(free_port)"; rs_port="$(free_port)"

# Start from a clean environment for the server: inherited WEKEZA_* / DATABASE_URL /
# REDIS_URL settings (e.g. from a scaled-backend test run) must not leak in.
unset_args=()
while IFS= read -r name; do unset_args+=(-u "$name"); done < <(compgen -e | grep -E '^(WEKEZA_|DATABASE_URL$|REDIS_URL$)' || true)
(
    cd "$work"
    exec env "${unset_args[@]}" \
        WEKEZA_WEB_PORT="$web_port" WEKEZA_MTLS_PORT="$mtls_port" WEKEZA_RS_PORT="$rs_port" \
        WEKEZA_PAR_TTL_SECS="$par_ttl" WEKEZA_CODE_TTL_SECS="$code_ttl" \
        WEKEZA_SANDBOX_LOAD_CUSTOMERS=200 \
        DATABASE_URL="sqlite://$work/data/wekeza.db" \
        "$bin/wekeza"
) >"$work/server.log" 2>&1 &
server_pid=$!

kit="$work/certs/sandbox/kit.json"
up=0
for _ in $(seq 1 120); do
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    if [[ -s "$kit" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$mtls_port") 2>/dev/null \
        && (exec 3<>"/dev/tcp/127.0.0.1/$web_port") 2>/dev/null \
        && (exec 3<>"/dev/tcp/127.0.0.1/$rs_port") 2>/dev/null; then
        up=1
        break
    fi
    sleep 0.5
done
if [[ "$up" != 1 ]]; then
    echo "the sandbox platform did not start; server log:" >&2
    tail -n 50 "$work/server.log" >&2 || true
    exit 1
fi
echo "sandbox platform up: https://localhost:$web_port (mTLS $mtls_port, resource server $rs_port), PAR ttl ${par_ttl}s, code ttl ${code_ttl}s"

set +e
"$bin/fapi-conformance" \
    --kit "$kit" \
    --all-variants \
    --parallel-variants \
    --code-lifetime "$code_ttl" \
    --expected-warnings "$here/expected-warnings.md" \
    --report-dir "$report_dir" \
    "$@"
status=$?
set -e

if [[ "$status" != 0 ]]; then
    echo "conformance run failed (exit $status); last server log lines:" >&2
    tail -n 30 "$work/server.log" >&2 || true
fi
exit "$status"
