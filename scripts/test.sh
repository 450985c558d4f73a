#!/usr/bin/env bash
# The test command: the whole suite on the embedded backend (SQLite), then again on the
# scaled backend (PostgreSQL + Redis), then the browser and certified-client tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_URL="${WEKEZA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_URL_T="${WEKEZA_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

# The crash test (tests/crash) runs the real `wekeza` binary: build it first, so it exists
# and is this tree's on a fresh machine (cargo test does not build another package's bin).
cargo build -p authz-server --locked

echo "== unit, storage and end-to-end tests on SQLite (embedded) =="
WEKEZA_TEST_BACKEND=sqlite cargo test --workspace --locked

echo "== the same suite on PostgreSQL + Redis (scaled) =="
WEKEZA_TEST_BACKEND=scaled WEKEZA_TEST_POSTGRES_URL="$PG_URL" WEKEZA_TEST_REDIS_URL="$REDIS_URL_T" \
  cargo test --workspace --locked

echo "== FAPI 2.0 conformance runner, every supported variant, against a fresh sandbox =="
fapi-conformance/run-ci.sh

if [ -x tests/browser/run.sh ]; then
  echo "== browser and certified-client tests =="
  tests/browser/run.sh
fi
