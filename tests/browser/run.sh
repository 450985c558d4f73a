#!/usr/bin/env bash
# Browser (Chromium) and certified-client (openid-client) end-to-end tests of the AS.
# Installs what a fresh machine lacks, builds the server, runs every *.test.mjs.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  echo "installing chromium"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation) \
    >/tmp/wekeza-browser-apt.log 2>&1 || { tail -20 /tmp/wekeza-browser-apt.log; exit 1; }
fi

# Reinstall when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

(cd "$root" && cargo build -p authz-server --locked)
export WEKEZA_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/wekeza"

# One AS per file, each with its own customer, so files may run side by side.
exec node --test --test-concurrency=2 ./*.test.mjs
