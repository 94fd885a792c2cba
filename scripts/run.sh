#!/usr/bin/env bash
# Runs the BFF, the payment simulator and the webhook receiver simulator
# (registered as a demo endpoint for every order event) side by side until
# Ctrl-C, and prints where to go. Called by `make run` after services, migrations and
# seed data are in place.
set -euo pipefail
cd "$(dirname "$0")/.."
HTTP_PORT=${HTTP_PORT:-8080}
PAYSIM_PORT=${PAYSIM_PORT:-8090}
export APP_ENV=${APP_ENV:-development}
export HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:$HTTP_PORT}
export PAYMENTS_URL=${PAYMENTS_URL:-http://127.0.0.1:$PAYSIM_PORT}
export PAYSIM_ADDR=${PAYSIM_ADDR:-127.0.0.1:$PAYSIM_PORT}
export PAYSIM_WEBHOOK_URL=${PAYSIM_WEBHOOK_URL:-http://127.0.0.1:$HTTP_PORT/webhooks/payments}
HOOKSIM_PORT=${HOOKSIM_PORT:-8091}
export HOOKSIM_ADDR=${HOOKSIM_ADDR:-127.0.0.1:$HOOKSIM_PORT}
# The demo endpoint is the simulator on loopback.
export WEBHOOK_ALLOW_PRIVATE=${WEBHOOK_ALLOW_PRIVATE:-true}
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
# Register the webhook receiver simulator (or give it a fresh secret when it
# is registered already), then start it with the secret so it verifies
# every signature.
hooks_note="webhook receiver simulator not built"
if [ -x bin/hooksim ]; then
  staff=$(bin/bff token staff@example.com | tail -1)
  gql() { curl -fsS "http://127.0.0.1:$HTTP_PORT/graphql" -H "Authorization: Bearer $staff" -H 'Content-Type: application/json' -d "$1"; }
  hook_url="http://$HOOKSIM_ADDR/demo"
  existing=$(gql '{"query":"{ webhookEndpoints { id url } }"}' | grep -o "\"id\":\"[^\"]*\",\"url\":\"$hook_url\"" | head -1 | cut -d'"' -f4 || true)
  if [ -n "$existing" ]; then
    answer=$(gql "{\"query\":\"mutation { rotateWebhookSecret(id: \\\"$existing\\\") { secret } }\"}" || true)
  else
    answer=$(gql "{\"query\":\"mutation { createWebhookEndpoint(input: {url: \\\"$hook_url\\\", description: \\\"demo receiver (hooksim)\\\", eventTypes: [ORDER_PLACED, PAYMENT_REQUESTED, PAYMENT_SUCCEEDED, PAYMENT_FAILED, SHIPPING_ADDRESS_UPDATED, ORDER_SHIPPED, ORDER_DELIVERED, ORDER_CANCELLED]}) { secret } }\"}" || true)
  fi
  secret=$(printf '%s' "$answer" | grep -o '"secret":"[^"]*"' | cut -d'"' -f4 || true)
  if [ -n "$secret" ]; then
    HOOKSIM_SECRET="$secret" bin/hooksim >>bin/hooksim.log 2>&1 & pids+=($!)
    hooks_note="receiver simulator on $HOOKSIM_ADDR (what it received: http://$HOOKSIM_ADDR/received)"
  else
    hooks_note="registering the receiver simulator failed: $answer"
  fi
fi
cat <<MSG

  The shop BFF is running.

  Web app     http://127.0.0.1:$HTTP_PORT/          (sign in as alice@example.com, bob@example.com or staff@example.com)
  GraphQL     http://127.0.0.1:$HTTP_PORT/graphql
  GraphiQL    http://127.0.0.1:$HTTP_PORT/graphiql
  Events      http://127.0.0.1:$HTTP_PORT/events?stream=orders
  Payments    simulator on $PAYSIM_ADDR
  Webhooks    $hooks_note; staff see deliveries at http://127.0.0.1:$HTTP_PORT/#/webhooks
  Logs        bin/bff.log, bin/paysim.log, bin/hooksim.log

  A token for alice (Authorization: Bearer …):
  $token

  curl -s http://127.0.0.1:$HTTP_PORT/graphql -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
    -d '{"query":"{ homeScreen { viewer { email } openOrders lifetimeSpend { formatted } } }"}'

  Ctrl-C stops it.
MSG
wait -n "${pids[@]}"
