#!/usr/bin/env bash
# End to end: agentid, a resource server using the SDK, an agent calling it, the kill switch from
# the CLI, and the next request refused. Run from the repository root: bash examples/kill-switch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d); chmod 755 "$WORK"
export AGENTID_URL=http://127.0.0.1:18080
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# 1. agentid, with an embedded PostgreSQL in a temp folder, and an admin key chosen up front.
export AGENTID_API_KEY=$(node bin/agentid.js key generate)
AGENTID_ADMIN_KEY="$AGENTID_API_KEY" AGENTID_DATA_DIR="$WORK/data" AGENTID_PG_PORT=15432 AGENTID_GRPC_PORT=15051 AGENTID_HTTP_PORT=18080 \
  LOG_LEVEL=warn node bin/agentid.js serve 2>"$WORK/agentid.log" &
until curl -s -o /dev/null "$AGENTID_URL"; do sleep 0.2; done
echo "agentid up"

# 2. The resource server (examples/resource-server.ts), verifying with the SDK under its own key,
#    bound to its audience.
RS_KEY=$(node bin/agentid.js key create --name orders-api --role resource_server --audience https://orders.example.com 2>/dev/null)
AGENTID_API_KEY="$RS_KEY" AGENTID_GRPC=http://127.0.0.1:15051 PORT=13000 node --import tsx examples/resource-server.ts &
until curl -s -o /dev/null http://127.0.0.1:13000/metrics; do sleep 0.2; done

# 3. An agent and its token.
AGENT=$(node bin/agentid.js agent register --name billing-bot --key-out "$WORK/bot.pem" --scope orders:read --audience https://orders.example.com 2>/dev/null)
TOKEN=$(node bin/agentid.js token issue --agent "$AGENT" --scope orders:read --audience https://orders.example.com --ttl 15m)

# 4. The agent calls the API: the first call is introspected, the rest come from the cache.
for i in 1 2 3; do curl -s -H "authorization: Bearer $TOKEN" http://127.0.0.1:13000/orders; done

# 5. The kill switch, then call again as fast as possible until refused.
node bin/agentid.js agent kill "$AGENT" --reason "compromised"
START=$(date +%s%N)
until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" http://127.0.0.1:13000/orders)" = 401 ]; do :; done
echo "refused $(( ($(date +%s%N) - START) / 1000000 )) ms after the kill command returned:"
curl -s -i -H "authorization: Bearer $TOKEN" http://127.0.0.1:13000/orders | sed -n '1p;/www-authenticate/p;$p'
curl -s http://127.0.0.1:13000/metrics
