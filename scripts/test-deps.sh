#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: redis-server and
# redis-sentinel (real Redis for broker tests), chromium (browser tests) and
# the npm fixture with the original Node stack (interop tests).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "test-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -d testdata/node/node_modules ]; then
  echo "test-deps: npm ci in testdata/node"
  (cd testdata/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
