import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { Code, createClient, ConnectError, type Client } from "@connectrpc/connect";
import { createTransport } from "../client/transport.js";
import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { KeyService, Role } from "../../gen/agentid/v1/key_pb.js";
import { PolicyKind, PolicyService } from "../../gen/agentid/v1/policy_pb.js";
import { ActivityKind, ActivityService } from "../../gen/agentid/v1/activity_pb.js";
import { agentActivity } from "./activity.js";
import { API_KEY_PREFIX, newSecret } from "../domain/ids.js";
import { signedIssueRequest } from "../client/self-issue.js";
import { AgentService, AgentStatus } from "../../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService } from "../../gen/agentid/v1/revocation_pb.js";
import { AuditService } from "../../gen/agentid/v1/audit_pb.js";
import { serve } from "./serve.js";
import { auditCheckpoint, auditLog, auditVerify, auditWitness } from "./audit.js";

const DEFAULT_URL = "http://127.0.0.1:8080";

const USAGE = `agentid: identity for AI agents

Usage: agentid <command> [options]

Commands:
  serve                      run the server (gRPC and Connect), see README for settings
  agent register             register an agent
  agent get <agent_id>       show one agent
  agent list                 list agents
  agent kill <agent_id>      revoke an agent and all its tokens (alias of revoke --agent)
  agent trust <agent_id>     show an agent's trust score and its factors (--history for the past)
  agent activity <agent_id>  what an agent did, minute by minute, with score changes and the kill
  token issue                issue a token for an agent (with an API key, or as the agent with --key)
  token introspect <token>   check a token against live state
  revoke                     revoke a token, a token id, or an agent
  watch                      follow the revocation feed, one line per event
  key create|list|revoke     manage API keys (admin)
  key generate               print a new admin key offline, for AGENTID_ADMIN_KEY
  policy create|list|delete  manage automatic revocation policies (admin)
  activity report            report an agent's misbehaviour (resource servers)
  audit log --agent ID       an agent's history from the transparency log, as a timeline
  audit verify               check the whole transparency log offline, naming any bad entry
  audit checkpoint           print (and save) the log's current signed checkpoint
  audit witness              witness the log: cosign each consistent checkpoint, alarm on forks

Every client command talks to a running server at --url (default $AGENTID_URL or ${DEFAULT_URL})
and authenticates with --api-key (default $AGENTID_API_KEY).
Run "agentid <command> --help" for its options.`;

const HELP: Record<string, string> = {
  serve: `Usage: agentid serve

Runs the server. Settings come from the environment (README, "Configuration"):
DATABASE_URL (empty: embedded PostgreSQL in AGENTID_DATA_DIR), AGENTID_GRPC_PORT (50051),
AGENTID_HTTP_PORT (8080), AGENTID_HOST (127.0.0.1), LOG_LEVEL (info).`,
  "agent register": `Usage: agentid agent register --name NAME (--public-key BASE64 | --key-out FILE) [--scope S ...] [--label k=v ...]

  --name NAME          display name, 1 to 128 characters
  --scope S            a scope the agent may hold (its allowed scopes); repeatable
  --public-key BASE64  the agent's raw 32-byte Ed25519 public key, base64
  --key-out FILE       generate a new key pair; write the private key (PKCS#8 PEM) to FILE
  --label k=v          a label; repeatable`,
  "agent get": `Usage: agentid agent get <agent_id>`,
  "agent list": `Usage: agentid agent list [--status active|revoked] [--page-size N] [--page-token T]

Prints one agent per line: id, status, name. The next page token, if any, goes to stderr.`,
  "agent kill": `Usage: agentid agent kill <agent_id> --reason TEXT

Revokes the agent for good: all its tokens stop working at once and no new ones can be issued.`,
  "token issue": `Usage: agentid token issue --agent ID [--scope S ...] [--audience A ...] [--ttl 15m] [--key FILE]

  --ttl  lifetime: a number with s, m, h or d (default: the server's, 1h)
  --key  the agent's private key (PEM, as written by agent register --key-out): the agent issues
         its own token by signing the request, with no API key, within its allowed scopes
Prints the token on stdout and its id and expiry on stderr, so "$(agentid token issue ...)" captures the token.`,
  "token introspect": `Usage: agentid token introspect <token|-> [--scope S]

Use - to read the token from stdin (keeps it out of shell history). Prints the answer as JSON.`,
  revoke: `Usage: agentid revoke (--token T | --token-id ID | --agent ID) --reason TEXT

Irreversible. Revoking twice is not an error.`,
  "agent activity": `Usage: agentid agent activity <agent_id> [--since 2h] [--until TIME] [--json]
Prints the agent's timeline, oldest first: usage summaries reported by resource servers (counts
per scope, audience and outcome), trust score changes, policy decisions, reports, issuance and the
kill. TIME is RFC 3339, a date, or an age such as 90m or 2h (default --since 1h).`,
  "agent trust": `Usage: agentid agent trust <agent_id> [--history] [--since ISO] [--until ISO]

Prints the trust score (0 to 100) with each factor's contribution; --history lists past scores.`,
  "key create": `Usage: agentid key create --name NAME --role admin|issuer|resource_server [--audience A ...]

Prints the new key's secret on stdout (shown once) and its id on stderr.
Resource server keys need at least one --audience: they introspect only tokens issued for it.`,
  "key list": `Usage: agentid key list`,
  "key revoke": `Usage: agentid key revoke <key_id>`,
  "key generate": `Usage: agentid key generate

Prints a new random ak_ key without contacting a server, for AGENTID_ADMIN_KEY.`,
  "policy create": `Usage: agentid policy create --name NAME (--scope-violations N --window 1h | --trust-below T)

  --scope-violations N --window W   revoke an agent with more than N scope violations within W
  --trust-below T                   revoke an agent whose trust score falls below T (1 to 100)`,
  "policy list": `Usage: agentid policy list`,
  "policy delete": `Usage: agentid policy delete <name>`,
  "activity report": `Usage: agentid activity report (--token-id tok_... | --agent ID) --kind scope_violation|anomalous_request [--detail TEXT]

Records an incident; policies are evaluated at once. Resource servers name the token (only one
issued for their audiences); admins may name the agent, and see the new trust score.`,
  watch: `Usage: agentid watch [--after REVISION]

Follows the revocation feed and prints one line per event until interrupted.
  --after  start after this revision (default 0: every retained revocation)`,
  "audit log": `Usage: agentid audit log [--agent ID] [--kind KIND] [--since TIME] [--until TIME] [--json]

Prints matching transparency log entries oldest first, one line each: time, seq, kind, token id,
actor, reason, details. TIME is RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), or an age
such as 90m, 2h or 7d (that long ago). --since is inclusive, --until exclusive.
  --json  one JSON object per line instead`,
  "audit verify": `Usage: agentid audit verify [--checkpoint FILE] [--save-checkpoint FILE] [--key VKEY] [--witness URL|VKEY ...] [--min-witnesses N] [--tiles]

Fetches every entry and the current signed checkpoint, recomputes each leaf hash from the entry's
contents and the Merkle tree from the leaves, and checks the signature, sample inclusion proofs,
and (with --checkpoint) that a checkpoint saved earlier is still a prefix of the log, by root and
by consistency proof. Names every entry that was changed, deleted, moved or inserted.
Exit status 0: the log verifies; 1: it does not (each problem on stdout).
  --checkpoint FILE       a checkpoint saved earlier (by --save-checkpoint or audit checkpoint --out)
  --save-checkpoint FILE  after a successful check, save the current checkpoint to FILE
  --key VKEY              trust this verifier key instead of the one the server reports
  --witness URL|VKEY      a witness (agentid audit witness) to fetch a cosigned checkpoint from,
                          or a witness key to trust (without keys, the witnesses' own are trusted);
                          the log must extend each witness's checkpoint; repeatable
  --min-witnesses N       require cosignatures by N trusted witnesses (default 1 with --witness)
  --tiles                 read the checkpoint, entries and leaves as C2SP tlog-tiles (plain GETs
                          of /checkpoint and /tile/..., cacheable) instead of ListEntries`,
  "audit witness": `Usage: agentid audit witness --state DIR [--name NAME] [--log-key VKEY] [--listen HOST:PORT] [--interval 1s] [--once]

Follows the log at --url: fetches its checkpoint, checks it extends the last one accepted (by a
consistency proof), and cosigns it (C2SP tlog-cosignature) with the witness's own key, kept in
DIR. A fork or a rollback is refused, logged as ALARM, counted in /status and /metrics, and the
conflicting signed checkpoint is kept in DIR as evidence.
  --state DIR         the witness key, the log key it follows, the latest cosigned checkpoint
  --name NAME         the witness's key name (default agentid-witness)
  --log-key VKEY      the log's verifier key (default: the server's, trusted on first use)
  --listen HOST:PORT  serve POST /add-checkpoint (C2SP tlog-witness), GET /checkpoint (the latest
                      cosigned checkpoint), /key, /status and /metrics
  --interval DUR      how often to fetch the log's checkpoint: 500ms, 1s, 5m (default 1s)
  --once              check once and exit: 0 if consistent, 1 on a fork or rollback`,
  "audit checkpoint": `Usage: agentid audit checkpoint [--out FILE] [--key VKEY]

Prints the current signed checkpoint (a signed note) after checking its signature, and the
server's verifier key on stderr. --out also writes the note to FILE.`,
};

function fail(message: string): never {
  process.stderr.write(`agentid: ${message}\n`);
  process.exit(2);
}

function args<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T, cmd: string) {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean" }, url: { type: "string" }, "api-key": { type: "string" } },
      allowPositionals: true,
    });
  } catch (err) {
    fail(`${(err as Error).message}\n\n${HELP[cmd]}`);
  }
}

function clients(values: { url?: string; "api-key"?: string }, anonymous = false) {
  const key = anonymous ? undefined : values["api-key"] || process.env.AGENTID_API_KEY;
  // The SDK's transport: Connect over HTTP/1.1 to the HTTP port, with the key as a bearer credential.
  const transport = createTransport(values.url || process.env.AGENTID_URL || DEFAULT_URL, { protocol: "connect", apiKey: key });
  return {
    agents: createClient(AgentService, transport),
    tokens: createClient(TokenService, transport),
    revocations: createClient(RevocationService, transport),
    keys: createClient(KeyService, transport),
    policies: createClient(PolicyService, transport),
    activity: createClient(ActivityService, transport),
    audit: createClient(AuditService, transport),
  };
}

function printJson<D extends DescMessage>(schema: D, m: MessageShape<D>): void {
  process.stdout.write(JSON.stringify(toJson(schema, m), null, 2) + "\n");
}

function parseTtl(s: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(s);
  if (!m) fail(`--ttl: expected a number with s, m, h or d, like 15m; got ${JSON.stringify(s)}`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
}

function iso(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toISOString() : "-";
}

function readPrivateKey(file: string): KeyObject {
  try {
    return createPrivateKey(readFileSync(file));
  } catch (err) {
    fail(`--key: cannot read an Ed25519 private key from ${file}: ${(err as Error).message}`);
  }
}

function parseTime(flag: string, s: string | undefined): Timestamp | undefined {
  if (s === undefined) return undefined;
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) fail(`${flag}: expected an ISO 8601 time, got ${JSON.stringify(s)}`);
  return timestampFromDate(d);
}

async function readStdin(): Promise<string> {
  let s = "";
  for await (const chunk of process.stdin) s += chunk;
  return s.trim();
}

async function revoke(tokens: Client<typeof TokenService>, target: { case: "token" | "tokenId" | "agentId"; value: string }, reason: string) {
  const res = await tokens.revoke({ target, reason });
  process.stdout.write(`revoked at revision ${res.revision} (${res.tokensRevoked} token(s) made inactive)\n`);
}

async function main(argv: string[]): Promise<void> {
  const [first, second] = argv;
  const twoWord = ["agent", "token", "key", "policy", "activity", "audit"].includes(first ?? "");
  const cmd = twoWord ? `${first} ${second ?? ""}` : (first ?? "");
  const rest = argv.slice(twoWord ? 2 : 1);
  if (!first || first === "--help" || first === "-h" || first === "help") {
    process.stdout.write(USAGE + "\n");
    return;
  }
  if (!(cmd in HELP)) fail(`unknown command "${cmd.trim()}"\n\n${USAGE}`);
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(HELP[cmd] + "\n");
    return;
  }

  switch (cmd) {
    case "serve":
      return serve();
    case "agent register": {
      const { values } = args(rest, { name: { type: "string" }, "public-key": { type: "string" }, "key-out": { type: "string" }, label: { type: "string", multiple: true }, scope: { type: "string", multiple: true } }, cmd);
      if (!values.name) fail(`--name is required\n\n${HELP[cmd]}`);
      if (!values["public-key"] === !values["key-out"]) fail(`give exactly one of --public-key and --key-out\n\n${HELP[cmd]}`);
      let publicKey: Uint8Array;
      if (values["key-out"]) {
        const { publicKey: pub, privateKey } = generateKeyPairSync("ed25519");
        writeFileSync(values["key-out"], privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
        // The raw key is the last 32 bytes of the SPKI DER encoding.
        publicKey = new Uint8Array(pub.export({ type: "spki", format: "der" }).subarray(-32));
      } else {
        publicKey = new Uint8Array(Buffer.from(values["public-key"]!, "base64"));
      }
      const labels: Record<string, string> = {};
      for (const l of values.label ?? []) {
        const i = l.indexOf("=");
        if (i < 1) fail(`--label: expected key=value, got ${JSON.stringify(l)}`);
        labels[l.slice(0, i)] = l.slice(i + 1);
      }
      const { agents } = clients(values);
      const res = await agents.registerAgent({ name: values.name, publicKey, labels, allowedScopes: values.scope ?? [] });
      process.stdout.write(`${res.agent!.agentId}\n`);
      return;
    }
    case "agent get": {
      const { values, positionals } = args(rest, {}, cmd);
      if (positionals.length !== 1) fail(HELP[cmd]!);
      const res = await clients(values).agents.getAgent({ agentId: positionals[0] });
      const { AgentSchema } = await import("../../gen/agentid/v1/agent_pb.js");
      printJson(AgentSchema, res.agent!);
      return;
    }
    case "agent list": {
      const { values } = args(rest, { status: { type: "string" }, "page-size": { type: "string" }, "page-token": { type: "string" } }, cmd);
      const status = { active: AgentStatus.ACTIVE, revoked: AgentStatus.REVOKED, undefined: AgentStatus.UNSPECIFIED }[String(values.status)];
      if (status === undefined) fail(`--status: expected active or revoked`);
      const res = await clients(values).agents.listAgents({
        status,
        pageSize: values["page-size"] ? Number(values["page-size"]) : 0,
        pageToken: values["page-token"] ?? "",
      });
      for (const a of res.agents) process.stdout.write(`${a.agentId}\t${AgentStatus[a.status]}\t${a.name}\n`);
      if (res.nextPageToken) process.stderr.write(`next page: --page-token ${res.nextPageToken}\n`);
      return;
    }
    case "agent kill": {
      const { values, positionals } = args(rest, { reason: { type: "string" } }, cmd);
      if (positionals.length !== 1 || !values.reason) fail(HELP[cmd]!);
      return revoke(clients(values).tokens, { case: "agentId", value: positionals[0]! }, values.reason);
    }
    case "token issue": {
      const { values } = args(rest, { agent: { type: "string" }, scope: { type: "string", multiple: true }, audience: { type: "string", multiple: true }, ttl: { type: "string" }, key: { type: "string" } }, cmd);
      if (!values.agent) fail(`--agent is required\n\n${HELP[cmd]}`);
      const ttlMs = values.ttl ? parseTtl(values.ttl) : undefined;
      const request = values.key
        ? signedIssueRequest({ agentId: values.agent, privateKey: readPrivateKey(values.key), scopes: values.scope, audiences: values.audience, ttlMs })
        : { agentId: values.agent, scopes: values.scope ?? [], audiences: values.audience ?? [], ttl: ttlMs ? durationFromMs(ttlMs) : undefined };
      const res = await clients(values, Boolean(values.key)).tokens.issue(request);
      process.stdout.write(`${res.token}\n`);
      process.stderr.write(`token_id ${res.tokenId}, expires ${iso(res.expiresAt)}\n`);
      return;
    }
    case "token introspect": {
      const { values, positionals } = args(rest, { scope: { type: "string" } }, cmd);
      if (positionals.length !== 1) fail(HELP[cmd]!);
      const token = positionals[0] === "-" ? await readStdin() : positionals[0]!;
      const res = await clients(values).tokens.introspect({ token, requiredScope: values.scope ?? "" });
      const { IntrospectResponseSchema } = await import("../../gen/agentid/v1/token_pb.js");
      process.stdout.write(JSON.stringify(toJson(IntrospectResponseSchema, res, { alwaysEmitImplicit: true }), null, 2) + "\n");
      return;
    }
    case "revoke": {
      const { values } = args(rest, { token: { type: "string" }, "token-id": { type: "string" }, agent: { type: "string" }, reason: { type: "string" } }, cmd);
      const targets = [
        values.token !== undefined && { case: "token" as const, value: values.token === "-" ? await readStdin() : values.token },
        values["token-id"] !== undefined && { case: "tokenId" as const, value: values["token-id"] },
        values.agent !== undefined && { case: "agentId" as const, value: values.agent },
      ].filter((t) => t !== false);
      if (targets.length !== 1) fail(`give exactly one of --token, --token-id and --agent\n\n${HELP[cmd]}`);
      if (!values.reason) fail(`--reason is required\n\n${HELP[cmd]}`);
      return revoke(clients(values).tokens, targets[0]!, values.reason);
    }
    case "agent activity": {
      const { values, positionals } = args(rest, { since: { type: "string" }, until: { type: "string" }, json: { type: "boolean" } }, cmd);
      if (positionals.length !== 1) fail(HELP[cmd]!);
      return agentActivity(clients(values).activity, positionals[0]!, values, fail);
    }
    case "agent trust": {
      const { values, positionals } = args(rest, { history: { type: "boolean" }, since: { type: "string" }, until: { type: "string" } }, cmd);
      if (positionals.length !== 1) fail(HELP[cmd]!);
      const c = clients(values).activity;
      const scores = values.history
        ? (await c.listTrustScores({ agentId: positionals[0], since: parseTime("--since", values.since), until: parseTime("--until", values.until), pageSize: 1000 })).trustScores
        : [(await c.getTrustScore({ agentId: positionals[0] })).trustScore!];
      for (const t of scores) {
        process.stdout.write(`${iso(t.computedAt)}\tscore ${t.score.toFixed(1)}\n`);
        if (!values.history) for (const f of t.factors) process.stdout.write(`  ${f.name.padEnd(16)} ${f.contribution >= 0 ? "+" : ""}${f.contribution.toFixed(1).padStart(6)}  ${f.detail}\n`);
      }
      return;
    }
    case "key create": {
      const { values } = args(rest, { name: { type: "string" }, role: { type: "string" }, audience: { type: "string", multiple: true } }, cmd);
      const role = { admin: Role.ADMIN, issuer: Role.ISSUER, resource_server: Role.RESOURCE_SERVER }[values.role ?? ""];
      if (!values.name || role === undefined) fail(HELP[cmd]!);
      const res = await clients(values).keys.createApiKey({ name: values.name, role, audiences: values.audience ?? [] });
      process.stdout.write(`${res.secret}\n`);
      process.stderr.write(`key_id ${res.key!.keyId} (${values.role}); the secret above is shown only once\n`);
      return;
    }
    case "key list": {
      const { values } = args(rest, {}, cmd);
      for (const k of (await clients(values).keys.listApiKeys({})).keys) {
        const state = k.revokedAt ? `revoked ${iso(k.revokedAt)}` : "active";
        process.stdout.write(`${k.keyId}\t${Role[k.role].toLowerCase()}\t${state}\t${k.name}\t${k.audiences.join(",")}\n`);
      }
      return;
    }
    case "key revoke": {
      const { values, positionals } = args(rest, {}, cmd);
      if (positionals.length !== 1) fail(HELP[cmd]!);
      const res = await clients(values).keys.revokeApiKey({ keyId: positionals[0] });
      process.stdout.write(`revoked ${res.key!.keyId} at ${iso(res.key!.revokedAt)}\n`);
      return;
    }
    case "key generate":
      process.stdout.write(`${newSecret(API_KEY_PREFIX)}\n`);
      return;
    case "policy create": {
      const { values } = args(rest, { name: { type: "string" }, "scope-violations": { type: "string" }, window: { type: "string" }, "trust-below": { type: "string" } }, cmd);
      if (!values.name || (values["scope-violations"] === undefined) === (values["trust-below"] === undefined)) fail(HELP[cmd]!);
      const policy =
        values["scope-violations"] !== undefined
          ? { name: values.name, kind: PolicyKind.SCOPE_VIOLATIONS, threshold: Number(values["scope-violations"]), window: durationFromMs(parseTtl(values.window ?? "1h")) }
          : { name: values.name, kind: PolicyKind.TRUST_BELOW, threshold: Number(values["trust-below"]) };
      const res = await clients(values).policies.createPolicy({ policy });
      process.stdout.write(`created policy ${res.policy!.name}\n`);
      return;
    }
    case "policy list": {
      const { values } = args(rest, {}, cmd);
      for (const p of (await clients(values).policies.listPolicies({})).policies) {
        const rule = p.kind === PolicyKind.SCOPE_VIOLATIONS ? `more than ${p.threshold} scope violations within ${Number(p.window?.seconds ?? 0n)}s` : `trust score below ${p.threshold}`;
        process.stdout.write(`${p.name}\t${rule}\tby ${p.createdBy}\n`);
      }
      return;
    }
    case "policy delete": {
      const { values, positionals } = args(rest, {}, cmd);
      if (positionals.length !== 1) fail(HELP[cmd]!);
      await clients(values).policies.deletePolicy({ name: positionals[0] });
      process.stdout.write(`deleted policy ${positionals[0]}\n`);
      return;
    }
    case "activity report": {
      const { values } = args(rest, { agent: { type: "string" }, "token-id": { type: "string" }, kind: { type: "string" }, detail: { type: "string" } }, cmd);
      const kind = { scope_violation: ActivityKind.SCOPE_VIOLATION, anomalous_request: ActivityKind.ANOMALOUS_REQUEST }[values.kind ?? ""];
      if (!values.agent === !values["token-id"] || kind === undefined) fail(HELP[cmd]!);
      const res = await clients(values).activity.reportActivity({ agentId: values.agent ?? "", tokenId: values["token-id"] ?? "", kind, detail: values.detail ?? "" });
      const score = res.trustScore ? `trust score ${res.trustScore.score.toFixed(1)}` : "reported";
      process.stdout.write(`${score}${res.agentRevoked ? `; agent revoked${res.revokedBy ? ` by ${res.revokedBy}` : ""}` : ""}\n`);
      return;
    }
    case "watch": {
      const { values } = args(rest, { after: { type: "string" } }, cmd);
      const after = values.after ?? "0";
      if (!/^\d+$/.test(after)) fail(`--after: expected a revision number`);
      const controller = new AbortController();
      process.once("SIGINT", () => controller.abort());
      process.once("SIGTERM", () => controller.abort());
      try {
        for await (const res of clients(values).revocations.watchRevocations({ afterRevision: BigInt(after) }, { signal: controller.signal })) {
          for (const e of res.events) {
            const target = e.target.case === "tokenId" ? `token ${e.target.value} (agent ${e.tokenAgentId})` : `agent ${e.target.value}`;
            process.stdout.write(`${e.revision}\t${iso(e.revokedAt)}\trevoked ${target}\tby ${e.revokedBy}\treason ${JSON.stringify(e.reason)}\n`);
          }
        }
      } catch (err) {
        if (controller.signal.aborted) return;
        throw err;
      }
      return;
    }
    case "audit log": {
      const { values } = args(rest, { agent: { type: "string" }, kind: { type: "string" }, since: { type: "string" }, until: { type: "string" }, json: { type: "boolean" } }, cmd);
      return auditLog(clients(values).audit, values, fail);
    }
    case "audit verify": {
      const { values } = args(rest, { checkpoint: { type: "string" }, "save-checkpoint": { type: "string" }, key: { type: "string" }, witness: { type: "string", multiple: true }, "min-witnesses": { type: "string" }, tiles: { type: "boolean" } }, cmd);
      const saved = values.checkpoint === undefined ? undefined : readFileSync(values.checkpoint, "utf8");
      const min = values["min-witnesses"];
      if (min !== undefined && !/^[0-9]{1,3}$/.test(min)) fail(`--min-witnesses: expected a number, got ${JSON.stringify(min)}`);
      const ok = await auditVerify(clients(values).audit, { saved, saveTo: values["save-checkpoint"], key: values.key, witnesses: values.witness, minWitnesses: min === undefined ? undefined : Number(min), tiles: values.tiles ? { url: values.url || process.env.AGENTID_URL || DEFAULT_URL, apiKey: values["api-key"] || process.env.AGENTID_API_KEY } : undefined }, fail);
      if (!ok) process.exit(1);
      return;
    }
    case "audit witness": {
      const { values } = args(rest, { state: { type: "string" }, name: { type: "string" }, "log-key": { type: "string" }, listen: { type: "string" }, interval: { type: "string" }, once: { type: "boolean" } }, cmd);
      if (!values.state) fail(`--state is required\n\n${HELP[cmd]}`);
      const ok = await auditWitness(clients(values).audit, { state: values.state, name: values.name || "agentid-witness", logKey: values["log-key"], listen: values.listen, intervalMs: values.interval ? (/^\d+ms$/.test(values.interval) ? Number(values.interval.slice(0, -2)) : parseTtl(values.interval)) : 1000, once: values.once ?? false }, fail);
      if (!ok) process.exit(1);
      return;
    }
    case "audit checkpoint": {
      const { values } = args(rest, { out: { type: "string" }, key: { type: "string" } }, cmd);
      return auditCheckpoint(clients(values).audit, { out: values.out, key: values.key });
    }
    default:
      fail(`unknown command "${cmd}"`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConnectError) {
    const hint = err.code === Code.Unavailable ? " (is the server running?)" : "";
    fail(`${Code[err.code]}${hint}: ${err.rawMessage}`);
  }
  fail((err as Error).message);
});
