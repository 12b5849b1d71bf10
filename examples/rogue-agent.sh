#!/usr/bin/env bash
# The product brief's scenario, end to end, in real processes: agentid on a fresh embedded
# PostgreSQL with time compressed (a 2 s trust window stands for an hour, usage bucketed per
# second), then examples/rogue-agent.ts: an SDK-guarded orders API, an agent at its baseline, a
# 25x spike on customer scopes it never used, the trust score falling, a policy revoking it, the
# SDK refusing it, and the timeline from the transparency log.
# Run from the repository root: bash examples/rogue-agent.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d); chmod 755 "$WORK"
port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
PG_PORT=$(port); GRPC_PORT=$(port); HTTP_PORT=$(port)
export AGENTID_URL=http://127.0.0.1:$HTTP_PORT AGENTID_GRPC=http://127.0.0.1:$GRPC_PORT
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

export AGENTID_API_KEY=$(node bin/agentid.js key generate)
AGENTID_ADMIN_KEY="$AGENTID_API_KEY" AGENTID_DATA_DIR="$WORK/data" AGENTID_PG_PORT=$PG_PORT AGENTID_GRPC_PORT=$GRPC_PORT AGENTID_HTTP_PORT=$HTTP_PORT \
  AGENTID_TRUST_WINDOW_SECONDS=2 AGENTID_TRUST_BASELINE_WINDOWS=10 AGENTID_TRUST_MIN_BASELINE=20 AGENTID_ACTIVITY_BUCKET_SECONDS=1 \
  LOG_LEVEL=warn node bin/agentid.js serve 2>"$WORK/agentid.log" &
until curl -s -o /dev/null "$AGENTID_URL"; do sleep 0.2; done
echo "agentid up (trust window 2s, usage buckets of 1s)"

WINDOW_SECONDS=2 BUCKET_SECONDS=1 node --import tsx examples/rogue-agent.ts | tee "$WORK/out.txt"

# The investigator's view of the same, from the CLI.
AGENT=$(sed -n 's/^agent \(agt_[0-9A-Za-z]*\).*/\1/p' "$WORK/out.txt")
echo
echo "\$ npx agentid agent activity $AGENT --since 5m   (last lines)"
node bin/agentid.js agent activity "$AGENT" --since 5m | tail -4
