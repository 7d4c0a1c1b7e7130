#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: redis-server and
# redis-sentinel (real Redis for broker tests), chromium (browser tests) and
# the npm fixture with the original Node stack (interop tests). It installs
# with apt-get (Debian, Ubuntu); on other systems it says what to install and
# fails.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=() # Debian package names
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
# The browser tests run /usr/bin/chromium unless PRIMUS_TEST_CHROMIUM names another.
if [ -n "${PRIMUS_TEST_CHROMIUM:-}" ]; then
  if [ ! -x "$PRIMUS_TEST_CHROMIUM" ]; then
    echo "test-deps: PRIMUS_TEST_CHROMIUM=$PRIMUS_TEST_CHROMIUM is not an executable file" >&2
    exit 1
  fi
elif [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if ! command -v node >/dev/null; then
  missing+=(nodejs npm)
elif ! command -v npm >/dev/null; then
  missing+=(npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    cat >&2 <<EOF
test-deps: missing ${missing[*]} (Debian package names), and there is no
apt-get here to install them. make test needs:
  - redis-server and redis-sentinel, Redis 7 or later, on the PATH
      macOS: brew install redis     Alpine: apk add redis
  - Chromium (or Chrome) at /usr/bin/chromium, or PRIMUS_TEST_CHROMIUM set to its binary
      macOS: PRIMUS_TEST_CHROMIUM="/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"
      Alpine: apk add chromium
  - Node.js 20 or later with npm, on the PATH
      macOS: brew install node      Alpine: apk add nodejs npm
Install them, then run make test again.
EOF
    exit 1
  fi
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
