#!/usr/bin/env bash
# Runs the BFF and the payment simulator side by side until Ctrl-C, and
# prints where to go. Called by `make run` after services, migrations and
# seed data are in place.
set -euo pipefail
cd "$(dirname "$0")/.."
HTTP_PORT=${HTTP_PORT:-8080}
PAYSIM_PORT=${PAYSIM_PORT:-8090}
export HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:$HTTP_PORT}
export PAYMENTS_URL=${PAYMENTS_URL:-http://127.0.0.1:$PAYSIM_PORT}
export PAYSIM_ADDR=${PAYSIM_ADDR:-127.0.0.1:$PAYSIM_PORT}
export PAYSIM_WEBHOOK_URL=${PAYSIM_WEBHOOK_URL:-http://127.0.0.1:$HTTP_PORT/webhooks/payments}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
if [ -x bin/paysim ]; then
  bin/paysim >>bin/paysim.log 2>&1 & pids+=($!)
fi
bin/bff serve >>bin/bff.log 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "bff failed to start; see bin/bff.log"; tail -20 bin/bff.log; exit 1; }
  sleep 0.2
done
token=$(bin/bff token alice@example.com | tail -1)
cat <<MSG

  The shop BFF is running.

  Web app     http://127.0.0.1:$HTTP_PORT/          (sign in as alice@example.com, bob@example.com or staff@example.com)
  GraphQL     http://127.0.0.1:$HTTP_PORT/graphql
  GraphiQL    http://127.0.0.1:$HTTP_PORT/graphiql
  Events      http://127.0.0.1:$HTTP_PORT/events?stream=orders
  Payments    simulator on $PAYSIM_ADDR
  Logs        bin/bff.log, bin/paysim.log

  A token for alice (Authorization: Bearer …):
  $token

  curl -s http://127.0.0.1:$HTTP_PORT/graphql -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
    -d '{"query":"{ homeScreen { viewer { email } openOrders lifetimeSpend { formatted } } }"}'

  Ctrl-C stops it.
MSG
wait -n "${pids[@]}"
