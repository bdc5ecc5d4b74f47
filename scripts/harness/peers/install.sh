#!/usr/bin/env bash
# Install the Node test peers (ocpp-rpc, pinned in package.json) into scripts/harness/peers/node_modules.
# Called by .ci/run; safe to run again. Needs node and npm; exits 0 with a notice without them
# (the strict-peer tests then skip, saying why).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "scripts/harness/peers: node/npm not found; the strict OCPP central system tests will be skipped" >&2
    exit 0
fi
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
else
    npm install --no-audit --no-fund --loglevel=error
fi
node -e "require('ocpp-rpc'); console.log('scripts/harness/peers: ocpp-rpc ' + require('ocpp-rpc/package.json').version)"
