import { createPrivateKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Client } from "@connectrpc/connect";
import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Role } from "../../gen/agentid/v1/key_pb.js";
import { PolicyKind } from "../../gen/agentid/v1/policy_pb.js";
import { ActivityKind } from "../../gen/agentid/v1/activity_pb.js";
import { agentActivity } from "./activity.js";
import { API_KEY_PREFIX, newSecret } from "../domain/ids.js";
import { signedIssueRequest } from "../client/self-issue.js";
import { AgentSchema, AgentStatus } from "../../gen/agentid/v1/agent_pb.js";
import { IntrospectResponseSchema, type TokenService } from "../../gen/agentid/v1/token_pb.js";
import type { RevocationEvent } from "../../gen/agentid/v1/revocation_pb.js";
import { NoteError, openCheckpoint } from "../audit/note.js";
import { auditCheckpoint, auditLog, auditVerify, auditWitness, parseTime as parseTimeOrFail } from "./audit.js";
import { DEFAULT_URL, version } from "./about.js";
import { json, shown } from "./terminal.js";
import type { Common } from "./rpc.js";

/** The server's clients, loaded on first use (see rpc.ts). */
async function clients(values: Common, anonymous = false) {
  return (await import("./rpc.js")).clients(values, fail, anonymous);
}

/**
 * One entry per command: the list in `agentid --help`, group help (`agentid agent --help`) and
 * dispatch all come from this table. A new command is one more entry.
 */
export interface Command {
  /** One line for the command lists. */
  summary: string;
  /** The command's own help, from "Usage:". */
  help: string;
  run(argv: string[], cmd: string): Promise<void> | void;
}

/** Exit statuses, as documented in `agentid --help`. */
const EXIT = { ok: 0, negative: 1, error: 2 } as const;

function fail(message: string): never {
  process.stderr.write(`agentid: ${message}\n`);
  process.exit(EXIT.error);
}

function args<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T, cmd: string) {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, help: { type: "boolean" }, url: { type: "string" }, "api-key": { type: "string" } },
      allowPositionals: true,
    });
  } catch (err) {
    fail(`${(err as Error).message}\n\n${COMMANDS[cmd]!.help}`);
  }
}

function printJson<D extends DescMessage>(schema: D, m: MessageShape<D>): void {
  process.stdout.write(json(toJson(schema, m), 2) + "\n");
}

/** A duration such as 90s, 15m, 2h or 7d; zero is refused rather than read as "the default". */
function parseDuration(flag: string, s: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(s);
  if (!m) fail(`${flag}: expected a number with s, m, h or d, like 15m; got ${JSON.stringify(s)}`);
  const ms = Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
  if (ms === 0) fail(`${flag}: must be more than 0 (leave it out for the server's default)`);
  return ms;
}

/** The one time parser for --since and --until (RFC 3339, a date, or an age such as 2h). */
function parseTime(flag: string, s: string | undefined): Timestamp | undefined {
  return s === undefined ? undefined : timestampFromDate(parseTimeOrFail(flag, s, fail));
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

async function readStdin(): Promise<string> {
  let s = "";
  for await (const chunk of process.stdin) s += chunk;
  return s.trim();
}

async function revoke(tokens: Client<typeof TokenService>, target: { case: "token" | "tokenId" | "agentId"; value: string }, reason: string) {
  const res = await tokens.revoke({ target, reason });
  process.stdout.write(
    res.alreadyRevoked
      ? `already revoked (revision ${res.revision}); nothing changed\n`
      : `revoked at revision ${res.revision} (${res.tokensRevoked} token(s) made inactive)\n`,
  );
}

/** A saved checkpoint must at least look like one, so a wrong file is blamed, not the log. */
function readSavedCheckpoint(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    fail(`--checkpoint: cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    // The shape is checked here; the signature (with the server's key) by audit verify.
    openCheckpoint(text, "shape-check", new Uint8Array(32));
  } catch (err) {
    const why = (err as Error).message;
    if (!(err instanceof NoteError) || !/^(no signature by key|signature by)/.test(why)) {
      fail(`--checkpoint: ${file} is not a saved checkpoint (${why}); save one with "audit verify --save-checkpoint FILE" or "audit checkpoint --out FILE"`);
    }
  }
  return text;
}

function printEvent(e: RevocationEvent): void {
  const target = e.target.case === "tokenId" ? `token ${e.target.value} (agent ${e.tokenAgentId})` : `agent ${e.target.value}`;
  process.stdout.write(`${e.revision}\t${iso(e.revokedAt)}\t${shown(`revoked ${target}`)}\tby ${shown(e.revokedBy)}\treason ${json(e.reason)}\n`);
}

const HELP_SERVE = `Usage: agentid serve

Runs the server. Settings come from the environment (README, "Configuration"):
DATABASE_URL (empty: embedded PostgreSQL in AGENTID_DATA_DIR), AGENTID_GRPC_PORT (50051),
AGENTID_HTTP_PORT (8080), AGENTID_HOST (127.0.0.1), LOG_LEVEL (info).`;

export const COMMANDS: Record<string, Command> = {
  serve: {
    summary: "run the server (gRPC and Connect), see README for settings",
    help: HELP_SERVE,
    // Loaded only here: client commands never pay for the server's modules.
    run: async () => (await import("./serve.js")).serve(),
  },
  "agent register": {
    summary: "register an agent",
    help: `Usage: agentid agent register --name NAME (--public-key BASE64 | --key-out FILE) [--scope S ...] [--audience A ...] [--label k=v ...]

  --name NAME          display name, 1 to 128 characters
  --scope S            a scope the agent's tokens may carry (its allowed scopes); repeatable
  --audience A         an audience the agent's tokens may list (its allowed audiences); repeatable
                       (with neither, the agent can be issued only tokens with no scope and no audience)
  --public-key BASE64  the agent's raw 32-byte Ed25519 public key, base64
  --key-out FILE       generate a new key pair; write the private key (PKCS#8 PEM) to FILE
                       (removed again if the registration fails)
  --label k=v          a label; repeatable
Prints the agent id on stdout, and the deployment id its self-issued proofs must name on stderr.`,
    async run(rest, cmd) {
      const { values } = args(rest, { name: { type: "string" }, "public-key": { type: "string" }, "key-out": { type: "string" }, label: { type: "string", multiple: true }, scope: { type: "string", multiple: true }, audience: { type: "string", multiple: true } }, cmd);
      if (!values.name) fail(`--name is required\n\n${COMMANDS[cmd]!.help}`);
      if (!values["public-key"] === !values["key-out"]) fail(`give exactly one of --public-key and --key-out\n\n${COMMANDS[cmd]!.help}`);
      const labels: Record<string, string> = {};
      for (const l of values.label ?? []) {
        const i = l.indexOf("=");
        if (i < 1) fail(`--label: expected key=value, got ${JSON.stringify(l)}`);
        labels[l.slice(0, i)] = l.slice(i + 1);
      }
      const { agents } = await clients(values);
      let publicKey: Uint8Array;
      const keyOut = values["key-out"];
      if (keyOut) {
        const { publicKey: pub, privateKey } = generateKeyPairSync("ed25519");
        try {
          writeFileSync(keyOut, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
        } catch (err) {
          fail(`--key-out: cannot create ${keyOut}: ${(err as Error).message}`);
        }
        // The raw key is the last 32 bytes of the SPKI DER encoding.
        publicKey = new Uint8Array(pub.export({ type: "spki", format: "der" }).subarray(-32));
      } else {
        publicKey = new Uint8Array(Buffer.from(values["public-key"]!, "base64"));
      }
      try {
        const res = await agents.registerAgent({ name: values.name, publicKey, labels, allowedScopes: values.scope ?? [], allowedAudiences: values.audience ?? [] });
        process.stdout.write(`${res.agent!.agentId}\n`);
        process.stderr.write(`deployment ${res.agent!.deploymentId}\n`);
      } catch (err) {
        // A key for an agent that does not exist would only mislead.
        if (keyOut) rmSync(keyOut, { force: true });
        throw err;
      }
    },
  },
  "agent get": {
    summary: "show one agent",
    help: `Usage: agentid agent get <agent_id>`,
    async run(rest, cmd) {
      const { values, positionals } = args(rest, {}, cmd);
      if (positionals.length !== 1) fail(COMMANDS[cmd]!.help);
      const res = await (await clients(values)).agents.getAgent({ agentId: positionals[0] });
      printJson(AgentSchema, res.agent!);
    },
  },
  "agent list": {
    summary: "list agents",
    help: `Usage: agentid agent list [--status active|revoked] [--page-size N] [--page-token T]

Prints one agent per line: id, status, name. The next page token, if any, goes to stderr.`,
    async run(rest, cmd) {
      const { values } = args(rest, { status: { type: "string" }, "page-size": { type: "string" }, "page-token": { type: "string" } }, cmd);
      const status = { active: AgentStatus.ACTIVE, revoked: AgentStatus.REVOKED, undefined: AgentStatus.UNSPECIFIED }[String(values.status)];
      if (status === undefined) fail(`--status: expected active or revoked`);
      const res = await (await clients(values)).agents.listAgents({
        status,
        pageSize: values["page-size"] ? Number(values["page-size"]) : 0,
        pageToken: values["page-token"] ?? "",
      });
      for (const a of res.agents) process.stdout.write(`${shown(a.agentId)}\t${AgentStatus[a.status]}\t${shown(a.name)}\n`);
      if (res.nextPageToken) process.stderr.write(`next page: --page-token ${res.nextPageToken}\n`);
    },
  },
  "agent kill": {
    summary: "revoke an agent and all its tokens (alias of revoke --agent)",
    help: `Usage: agentid agent kill <agent_id> --reason TEXT

Revokes the agent for good: all its tokens stop working at once and no new ones can be issued.
Killing an agent that is already revoked changes nothing, and says so.`,
    async run(rest, cmd) {
      const { values, positionals } = args(rest, { reason: { type: "string" } }, cmd);
      if (positionals.length !== 1 || !values.reason) fail(COMMANDS[cmd]!.help);
      return revoke((await clients(values)).tokens, { case: "agentId", value: positionals[0]! }, values.reason);
    },
  },
  "agent trust": {
    summary: "show an agent's trust score and its factors (--history for the past)",
    help: `Usage: agentid agent trust <agent_id> [--history] [--since TIME] [--until TIME]

Prints the trust score (0 to 100) with each factor's contribution; --history lists past scores.
TIME is RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), or an age such as 90m, 2h or 7d.`,
    async run(rest, cmd) {
      const { values, positionals } = args(rest, { history: { type: "boolean" }, since: { type: "string" }, until: { type: "string" } }, cmd);
      if (positionals.length !== 1) fail(COMMANDS[cmd]!.help);
      const since = parseTime("--since", values.since);
      const until = parseTime("--until", values.until);
      const c = (await clients(values)).activity;
      const scores = values.history
        ? (await c.listTrustScores({ agentId: positionals[0], since, until, pageSize: 1000 })).trustScores
        : [(await c.getTrustScore({ agentId: positionals[0] })).trustScore!];
      for (const t of scores) {
        process.stdout.write(`${iso(t.computedAt)}\tscore ${t.score.toFixed(1)}\n`);
        if (!values.history) for (const f of t.factors) process.stdout.write(`  ${f.name.padEnd(16)} ${f.contribution >= 0 ? "+" : ""}${f.contribution.toFixed(1).padStart(6)}  ${shown(f.detail)}\n`);
      }
    },
  },
  "agent activity": {
    summary: "what an agent did, minute by minute, with score changes and the kill",
    help: `Usage: agentid agent activity <agent_id> [--since 2h] [--until TIME] [--json]
Prints the agent's timeline, oldest first: usage summaries reported by resource servers (counts
per scope, audience and outcome), trust score changes, policy decisions, reports, issuance and the
kill. TIME is RFC 3339, a date, or an age such as 90m or 2h (default --since 1h).`,
    async run(rest, cmd) {
      const { values, positionals } = args(rest, { since: { type: "string" }, until: { type: "string" }, json: { type: "boolean" } }, cmd);
      if (positionals.length !== 1) fail(COMMANDS[cmd]!.help);
      return agentActivity((await clients(values)).activity, positionals[0]!, values, fail);
    },
  },
  "token issue": {
    summary: "issue a token for an agent (with an API key, or as the agent with --key)",
    help: `Usage: agentid token issue --agent ID [--scope S ...] [--audience A ...] [--ttl 15m] [--key FILE --deployment ID]

  --ttl  lifetime: a number (more than 0) with s, m, h or d (default: the server's, 1h)
  --key  the agent's private key (PEM, as written by agent register --key-out): the agent issues
         its own token by signing the request, with no API key, within its allowed scopes and audiences
  --deployment  with --key: the deployment id (dep_..., printed by agent register, shown by agent get;
         default $AGENTID_DEPLOYMENT_ID); the proof is valid for this deployment only
Prints the token on stdout and its id and expiry on stderr, so "$(agentid token issue ...)" captures the token.`,
    async run(rest, cmd) {
      const { values } = args(rest, { agent: { type: "string" }, scope: { type: "string", multiple: true }, audience: { type: "string", multiple: true }, ttl: { type: "string" }, key: { type: "string" }, deployment: { type: "string" } }, cmd);
      if (!values.agent) fail(`--agent is required\n\n${COMMANDS[cmd]!.help}`);
      const deploymentId = values.deployment || process.env.AGENTID_DEPLOYMENT_ID || "";
      if (values.key && !deploymentId) fail(`--key needs --deployment (or $AGENTID_DEPLOYMENT_ID): the id agent register printed\n\n${COMMANDS[cmd]!.help}`);
      const ttlMs = values.ttl === undefined ? undefined : parseDuration("--ttl", values.ttl);
      const request = values.key
        ? signedIssueRequest({ deploymentId, agentId: values.agent, privateKey: readPrivateKey(values.key), scopes: values.scope, audiences: values.audience, ttlMs })
        : { agentId: values.agent, scopes: values.scope ?? [], audiences: values.audience ?? [], ttl: ttlMs === undefined ? undefined : durationFromMs(ttlMs) };
      const res = await (await clients(values, Boolean(values.key))).tokens.issue(request);
      process.stdout.write(`${res.token}\n`);
      process.stderr.write(`token_id ${res.tokenId}, expires ${iso(res.expiresAt)}\n`);
    },
  },
  "token introspect": {
    summary: "check a token against live state (exit 0 active, 1 inactive)",
    help: `Usage: agentid token introspect <token|-> [--scope S]

Use - to read the token from stdin (keeps it out of shell history). Prints the answer as JSON.
Exit status 0: the token is active (with --scope: and holds it); 1: it is not (the JSON says why);
2: the question could not be answered (bad usage, server unreachable, refused).`,
    async run(rest, cmd) {
      const { values, positionals } = args(rest, { scope: { type: "string" } }, cmd);
      if (positionals.length !== 1) fail(COMMANDS[cmd]!.help);
      const token = positionals[0] === "-" ? await readStdin() : positionals[0]!;
      const res = await (await clients(values)).tokens.introspect({ token, requiredScope: values.scope ?? "" });
      process.stdout.write(json(toJson(IntrospectResponseSchema, res, { alwaysEmitImplicit: true }), 2) + "\n");
      if (!res.active) process.exitCode = EXIT.negative;
    },
  },
  revoke: {
    summary: "revoke a token, a token id, or an agent",
    help: `Usage: agentid revoke (--token T | --token-id ID | --agent ID) --reason TEXT

Irreversible. Revoking twice is not an error: the second time says "already revoked".`,
    async run(rest, cmd) {
      const { values } = args(rest, { token: { type: "string" }, "token-id": { type: "string" }, agent: { type: "string" }, reason: { type: "string" } }, cmd);
      const targets = [
        values.token !== undefined && { case: "token" as const, value: values.token === "-" ? await readStdin() : values.token },
        values["token-id"] !== undefined && { case: "tokenId" as const, value: values["token-id"] },
        values.agent !== undefined && { case: "agentId" as const, value: values.agent },
      ].filter((t) => t !== false);
      if (targets.length !== 1) fail(`give exactly one of --token, --token-id and --agent\n\n${COMMANDS[cmd]!.help}`);
      if (!values.reason) fail(`--reason is required\n\n${COMMANDS[cmd]!.help}`);
      return revoke((await clients(values)).tokens, targets[0]!, values.reason);
    },
  },
  watch: {
    summary: "follow the revocation feed, one line per event",
    help: `Usage: agentid watch [--after REVISION]

Follows the revocation feed and prints one line per event until interrupted. When the server goes
away it reconnects with backoff (saying so on stderr) and resumes after the last revision printed,
so no event is missed or printed twice. Credentials that are refused end it with exit status 2.
  --after  start after this revision (default 0: every retained revocation)`,
    async run(rest, cmd) {
      const { values } = args(rest, { after: { type: "string" } }, cmd);
      return (await import("./rpc.js")).watch(values, fail, printEvent);
    },
  },
  "key create": {
    summary: "create an API key (admin)",
    help: `Usage: agentid key create --name NAME --role admin|issuer|resource_server [--audience A ...]

Prints the new key's secret on stdout (shown once) and its id on stderr.
Resource server keys need at least one --audience: they introspect only tokens issued for it.`,
    async run(rest, cmd) {
      const { values } = args(rest, { name: { type: "string" }, role: { type: "string" }, audience: { type: "string", multiple: true } }, cmd);
      const role = { admin: Role.ADMIN, issuer: Role.ISSUER, resource_server: Role.RESOURCE_SERVER }[values.role ?? ""];
      if (!values.name || role === undefined) fail(COMMANDS[cmd]!.help);
      const res = await (await clients(values)).keys.createApiKey({ name: values.name, role, audiences: values.audience ?? [] });
      process.stdout.write(`${res.secret}\n`);
      process.stderr.write(`key_id ${res.key!.keyId} (${values.role}); the secret above is shown only once\n`);
    },
  },
  "key list": {
    summary: "list API keys (admin)",
    help: `Usage: agentid key list`,
    async run(rest, cmd) {
      const { values } = args(rest, {}, cmd);
      for (const k of (await (await clients(values)).keys.listApiKeys({})).keys) {
        const state = k.revokedAt ? `revoked ${iso(k.revokedAt)}` : "active";
        process.stdout.write(`${shown(k.keyId)}\t${Role[k.role].toLowerCase()}\t${state}\t${shown(k.name)}\t${shown(k.audiences.join(","))}\n`);
      }
    },
  },
  "key revoke": {
    summary: "revoke an API key (admin)",
    help: `Usage: agentid key revoke <key_id>`,
    async run(rest, cmd) {
      const { values, positionals } = args(rest, {}, cmd);
      if (positionals.length !== 1) fail(COMMANDS[cmd]!.help);
      const res = await (await clients(values)).keys.revokeApiKey({ keyId: positionals[0] });
      process.stdout.write(`revoked ${res.key!.keyId} at ${iso(res.key!.revokedAt)}\n`);
    },
  },
  "key generate": {
    summary: "print a new admin key offline, for AGENTID_ADMIN_KEY",
    help: `Usage: agentid key generate

Prints a new random ak_ key without contacting a server, for AGENTID_ADMIN_KEY.`,
    run() {
      process.stdout.write(`${newSecret(API_KEY_PREFIX)}\n`);
    },
  },
  "policy create": {
    summary: "create an automatic revocation policy (admin)",
    help: `Usage: agentid policy create --name NAME (--scope-violations N --window 1h | --trust-below T)

  --scope-violations N --window W   revoke an agent with more than N scope violations within W
  --trust-below T                   revoke an agent whose trust score falls below T (1 to 100)`,
    async run(rest, cmd) {
      const { values } = args(rest, { name: { type: "string" }, "scope-violations": { type: "string" }, window: { type: "string" }, "trust-below": { type: "string" } }, cmd);
      if (!values.name || (values["scope-violations"] === undefined) === (values["trust-below"] === undefined)) fail(COMMANDS[cmd]!.help);
      const policy =
        values["scope-violations"] !== undefined
          ? { name: values.name, kind: PolicyKind.SCOPE_VIOLATIONS, threshold: Number(values["scope-violations"]), window: durationFromMs(parseDuration("--window", values.window ?? "1h")) }
          : { name: values.name, kind: PolicyKind.TRUST_BELOW, threshold: Number(values["trust-below"]) };
      const res = await (await clients(values)).policies.createPolicy({ policy });
      process.stdout.write(`created policy ${res.policy!.name}\n`);
    },
  },
  "policy list": {
    summary: "list policies (admin)",
    help: `Usage: agentid policy list`,
    async run(rest, cmd) {
      const { values } = args(rest, {}, cmd);
      for (const p of (await (await clients(values)).policies.listPolicies({})).policies) {
        const rule = p.kind === PolicyKind.SCOPE_VIOLATIONS ? `more than ${p.threshold} scope violations within ${Number(p.window?.seconds ?? 0n)}s` : `trust score below ${p.threshold}`;
        process.stdout.write(`${shown(p.name)}\t${rule}\tby ${shown(p.createdBy)}\n`);
      }
    },
  },
  "policy delete": {
    summary: "delete a policy (admin)",
    help: `Usage: agentid policy delete <name>`,
    async run(rest, cmd) {
      const { values, positionals } = args(rest, {}, cmd);
      if (positionals.length !== 1) fail(COMMANDS[cmd]!.help);
      await (await clients(values)).policies.deletePolicy({ name: positionals[0] });
      process.stdout.write(`deleted policy ${positionals[0]}\n`);
    },
  },
  "activity report": {
    summary: "report an agent's misbehaviour (resource servers)",
    help: `Usage: agentid activity report (--token-id tok_... | --agent ID) --kind scope_violation|anomalous_request [--detail TEXT]

Records an incident; policies are evaluated at once. Resource servers name the token (only one
issued for their audiences); admins may name the agent, and see the new trust score.`,
    async run(rest, cmd) {
      const { values } = args(rest, { agent: { type: "string" }, "token-id": { type: "string" }, kind: { type: "string" }, detail: { type: "string" } }, cmd);
      const kind = { scope_violation: ActivityKind.SCOPE_VIOLATION, anomalous_request: ActivityKind.ANOMALOUS_REQUEST }[values.kind ?? ""];
      if (!values.agent === !values["token-id"] || kind === undefined) fail(COMMANDS[cmd]!.help);
      const res = await (await clients(values)).activity.reportActivity({ agentId: values.agent ?? "", tokenId: values["token-id"] ?? "", kind, detail: values.detail ?? "" });
      const score = res.trustScore ? `trust score ${res.trustScore.score.toFixed(1)}` : "reported";
      process.stdout.write(`${score}${res.agentRevoked ? `; agent revoked${res.revokedBy ? ` by ${res.revokedBy}` : ""}` : ""}\n`);
    },
  },
  "audit log": {
    summary: "an agent's history from the transparency log, as a timeline",
    help: `Usage: agentid audit log [--agent ID] [--kind KIND] [--since TIME] [--until TIME] [--json]

Prints matching transparency log entries oldest first, one line each: time, seq, kind, token id,
actor, reason, details. TIME is RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), or an age
such as 90m, 2h or 7d (that long ago). --since is inclusive, --until exclusive.
  --json  one JSON object per line instead`,
    async run(rest, cmd) {
      const { values } = args(rest, { agent: { type: "string" }, kind: { type: "string" }, since: { type: "string" }, until: { type: "string" }, json: { type: "boolean" } }, cmd);
      return auditLog((await clients(values)).audit, values, fail);
    },
  },
  "audit verify": {
    summary: "check the whole transparency log offline, naming any bad entry",
    help: `Usage: agentid audit verify [--checkpoint FILE] [--save-checkpoint FILE] [--key VKEY] [--witness URL|VKEY ...] [--min-witnesses N] [--tiles]

Fetches every entry and the current signed checkpoint, recomputes each leaf hash from the entry's
contents and the Merkle tree from the leaves, and checks the signature, sample inclusion proofs,
and (with --checkpoint) that a checkpoint saved earlier is still a prefix of the log, by root and
by consistency proof. Names every entry that was changed, deleted, moved or inserted.
Exit status 0: the log verifies; 1: it does not (each problem on stdout); 2: it could not be
checked (a --checkpoint file that is not a checkpoint, server unreachable).
  --checkpoint FILE       a checkpoint saved earlier (by --save-checkpoint or audit checkpoint --out)
  --save-checkpoint FILE  after a successful check, save the current checkpoint to FILE
  --key VKEY              trust this verifier key instead of the one the server reports
  --witness URL|VKEY      a witness (agentid audit witness) to fetch a cosigned checkpoint from,
                          or a witness key to trust (without keys, the witnesses' own are trusted);
                          the log must extend each witness's checkpoint; repeatable
  --min-witnesses N       require cosignatures by N trusted witnesses (default 1 with --witness)
  --tiles                 read the checkpoint, entries and leaves as C2SP tlog-tiles (plain GETs
                          of /checkpoint and /tile/..., cacheable) instead of ListEntries`,
    async run(rest, cmd) {
      const { values } = args(
        rest,
        { checkpoint: { type: "string" }, "save-checkpoint": { type: "string" }, key: { type: "string" }, witness: { type: "string", multiple: true }, "min-witnesses": { type: "string" }, tiles: { type: "boolean" } },
        cmd,
      );
      const saved = values.checkpoint === undefined ? undefined : readSavedCheckpoint(values.checkpoint);
      const min = values["min-witnesses"];
      if (min !== undefined && !/^[0-9]{1,3}$/.test(min)) fail(`--min-witnesses: expected a number, got ${JSON.stringify(min)}`);
      const tiles = values.tiles ? { url: (await import("./rpc.js")).serverUrl(values, fail), apiKey: values["api-key"] || process.env.AGENTID_API_KEY } : undefined;
      const c = await clients(values);
      // Only an admin key reads every entry: with any other, each entry it may not read would
      // look deleted, and a log that is whole would be reported as tampered with.
      const key = (await c.keys.getCurrentPrincipal({})).key;
      if (key?.role !== Role.ADMIN) {
        const role = key ? Role[key.role].toLowerCase() : "unknown";
        fail(`audit verify needs an admin key: ${/^[aeiou]/.test(role) ? "an" : "a"} ${role} key may read only some of the log's entries, and each one it may not read would look deleted (audit checkpoint checks the signed checkpoint with any key)`);
      }
      const ok = await auditVerify(
        c.audit,
        { saved, saveTo: values["save-checkpoint"], key: values.key, witnesses: values.witness, minWitnesses: min === undefined ? undefined : Number(min), tiles },
        fail,
      );
      if (!ok) process.exitCode = EXIT.negative;
    },
  },
  "audit witness": {
    summary: "witness the log: cosign each consistent checkpoint, alarm on forks",
    help: `Usage: agentid audit witness --state DIR [--name NAME] [--log-key VKEY] [--listen HOST:PORT] [--interval 1s] [--once]

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
    async run(rest, cmd) {
      const { values } = args(rest, { state: { type: "string" }, name: { type: "string" }, "log-key": { type: "string" }, listen: { type: "string" }, interval: { type: "string" }, once: { type: "boolean" } }, cmd);
      if (!values.state) fail(`--state is required\n\n${COMMANDS[cmd]!.help}`);
      const interval = values.interval;
      const intervalMs = interval === undefined ? 1000 : /^\d+ms$/.test(interval) ? Number(interval.slice(0, -2)) : parseDuration("--interval", interval);
      const ok = await auditWitness(
        (await clients(values)).audit,
        { state: values.state, name: values.name || "agentid-witness", logKey: values["log-key"], listen: values.listen, intervalMs, once: values.once ?? false },
        fail,
      );
      if (!ok) process.exitCode = EXIT.negative;
    },
  },
  "audit checkpoint": {
    summary: "print (and save) the log's current signed checkpoint",
    help: `Usage: agentid audit checkpoint [--out FILE] [--key VKEY]

Prints the current signed checkpoint (a signed note) after checking its signature, and the
server's verifier key on stderr. --out also writes the note to FILE.`,
    async run(rest, cmd) {
      const { values } = args(rest, { out: { type: "string" }, key: { type: "string" } }, cmd);
      return auditCheckpoint((await clients(values)).audit, { out: values.out, key: values.key });
    },
  },
};

function commandList(names: string[]): string {
  return names.map((n) => `  ${n.padEnd(24)} ${COMMANDS[n]!.summary}`).join("\n");
}

function usage(): string {
  return `agentid ${version()}: identity for AI agents

Usage: agentid <command> [options]

Commands:
${commandList(Object.keys(COMMANDS))}

Every client command talks to a running server's HTTP port at --url (default $AGENTID_URL or
${DEFAULT_URL}) and authenticates with --api-key (default $AGENTID_API_KEY).
Run "agentid <command> --help" for a command's options, "agentid <group> --help" for a group's
commands, "agentid --version" for the version.
Exit status: 0 success; 1 a negative answer (token introspect: inactive; audit verify: the log
does not verify); 2 an error (bad usage, server unreachable or refusing).`;
}

function groupHelp(group: string): string {
  return `Usage: agentid ${group} <command> [options]

Commands:
${commandList(Object.keys(COMMANDS).filter((n) => n.startsWith(`${group} `)))}

Run "agentid ${group} <command> --help" for a command's options.`;
}

async function main(argv: string[]): Promise<void> {
  const [first, second] = argv;
  if (!first || first === "--help" || first === "-h" || first === "help") {
    process.stdout.write(usage() + "\n");
    return;
  }
  if (first === "--version" || first === "-V" || first === "version") {
    process.stdout.write(`agentid ${version()}\n`);
    return;
  }
  const groups = new Set(Object.keys(COMMANDS).filter((n) => n.includes(" ")).map((n) => n.split(" ")[0]!));
  if (groups.has(first)) {
    if (second === undefined || second === "--help" || second === "-h" || second === "help") {
      process.stdout.write(groupHelp(first) + "\n");
      return;
    }
    const cmd = `${first} ${second}`;
    if (!COMMANDS[cmd]) fail(`unknown command "${cmd}"\n\n${groupHelp(first)}`);
    return runCommand(cmd, argv.slice(2));
  }
  if (!COMMANDS[first]) fail(`unknown command "${first}"\n\n${usage()}`);
  return runCommand(first, argv.slice(1));
}

async function runCommand(cmd: string, rest: string[]): Promise<void> {
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(COMMANDS[cmd]!.help + "\n");
    return;
  }
  await COMMANDS[cmd]!.run(rest, cmd);
}

// Output piped into a reader that stops early (`| head`) ends the command quietly, as in any Unix tool.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? EXIT.ok);
    throw err;
  });
}

main(process.argv.slice(2)).catch(async (err: unknown) => {
  // rpc.ts is loaded already whenever a call could have failed.
  fail(shown((await import("./rpc.js")).describeError(err) ?? (err as Error).message));
});
