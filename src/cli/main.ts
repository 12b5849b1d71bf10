import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { Code, createClient, ConnectError, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AgentService, AgentStatus } from "../../gen/agentid/v1/agent_pb.js";
import { TokenService } from "../../gen/agentid/v1/token_pb.js";
import { RevocationService } from "../../gen/agentid/v1/revocation_pb.js";
import { AuditService } from "../../gen/agentid/v1/audit_pb.js";
import { serve } from "./serve.js";
import { auditCheckpoint, auditLog, auditVerify } from "./audit.js";

const DEFAULT_URL = "http://127.0.0.1:8080";

const USAGE = `agentid: identity for AI agents

Usage: agentid <command> [options]

Commands:
  serve                      run the server (gRPC and Connect), see README for settings
  agent register             register an agent
  agent get <agent_id>       show one agent
  agent list                 list agents
  agent kill <agent_id>      revoke an agent and all its tokens (alias of revoke --agent)
  token issue                issue a token for an agent
  token introspect <token>   check a token against live state
  revoke                     revoke a token, a token id, or an agent
  watch                      follow the revocation feed, one line per event
  audit log --agent ID       an agent's history from the transparency log, as a timeline
  audit verify               check the whole transparency log offline, naming any bad entry
  audit checkpoint           print (and save) the log's current signed checkpoint

Every client command talks to a running server at --url (default $AGENTID_URL or ${DEFAULT_URL}).
Run "agentid <command> --help" for its options.`;

const HELP: Record<string, string> = {
  serve: `Usage: agentid serve

Runs the server. Settings come from the environment (README, "Configuration"):
DATABASE_URL (empty: embedded PostgreSQL in AGENTID_DATA_DIR), AGENTID_GRPC_PORT (50051),
AGENTID_HTTP_PORT (8080), AGENTID_HOST (127.0.0.1), LOG_LEVEL (info).`,
  "agent register": `Usage: agentid agent register --name NAME (--public-key BASE64 | --key-out FILE) [--label k=v ...]

  --name NAME          display name, 1 to 128 characters
  --public-key BASE64  the agent's raw 32-byte Ed25519 public key, base64
  --key-out FILE       generate a new key pair; write the private key (PKCS#8 PEM) to FILE
  --label k=v          a label; repeatable`,
  "agent get": `Usage: agentid agent get <agent_id>`,
  "agent list": `Usage: agentid agent list [--status active|revoked] [--page-size N] [--page-token T]

Prints one agent per line: id, status, name. The next page token, if any, goes to stderr.`,
  "agent kill": `Usage: agentid agent kill <agent_id> --reason TEXT

Revokes the agent for good: all its tokens stop working at once and no new ones can be issued.`,
  "token issue": `Usage: agentid token issue --agent ID [--scope S ...] [--audience A ...] [--ttl 15m]

  --ttl  lifetime: a number with s, m, h or d (default: the server's, 1h)
Prints the token on stdout and its id and expiry on stderr, so "$(agentid token issue ...)" captures the token.`,
  "token introspect": `Usage: agentid token introspect <token|-> [--scope S]

Use - to read the token from stdin (keeps it out of shell history). Prints the answer as JSON.`,
  revoke: `Usage: agentid revoke (--token T | --token-id ID | --agent ID) --reason TEXT

Irreversible. Revoking twice is not an error.`,
  watch: `Usage: agentid watch [--after REVISION]

Follows the revocation feed and prints one line per event until interrupted.
  --after  start after this revision (default 0: every retained revocation)`,
  "audit log": `Usage: agentid audit log [--agent ID] [--kind KIND] [--since TIME] [--until TIME] [--json]

Prints matching transparency log entries oldest first, one line each: time, seq, kind, token id,
actor, reason, details. TIME is RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), or an age
such as 90m, 2h or 7d (that long ago). --since is inclusive, --until exclusive.
  --json  one JSON object per line instead`,
  "audit verify": `Usage: agentid audit verify [--checkpoint FILE] [--save-checkpoint FILE] [--key VKEY]

Fetches every entry and the current signed checkpoint, recomputes each leaf hash from the entry's
contents and the Merkle tree from the leaves, and checks the signature, sample inclusion proofs,
and (with --checkpoint) that a checkpoint saved earlier is still a prefix of the log, by root and
by consistency proof. Names every entry that was changed, deleted, moved or inserted.
Exit status 0: the log verifies; 1: it does not (each problem on stdout).
  --checkpoint FILE       a checkpoint saved earlier (by --save-checkpoint or audit checkpoint --out)
  --save-checkpoint FILE  after a successful check, save the current checkpoint to FILE
  --key VKEY              trust this verifier key instead of the one the server reports`,
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
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean" }, url: { type: "string" } }, allowPositionals: true });
  } catch (err) {
    fail(`${(err as Error).message}\n\n${HELP[cmd]}`);
  }
}

function clients(url: string | undefined) {
  const transport = createConnectTransport({ baseUrl: url || process.env.AGENTID_URL || DEFAULT_URL, httpVersion: "1.1" });
  return {
    agents: createClient(AgentService, transport),
    tokens: createClient(TokenService, transport),
    revocations: createClient(RevocationService, transport),
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
  const twoWord = first === "agent" || first === "token" || first === "audit";
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
      const { values } = args(rest, { name: { type: "string" }, "public-key": { type: "string" }, "key-out": { type: "string" }, label: { type: "string", multiple: true } }, cmd);
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
      const { agents } = clients(values.url);
      const res = await agents.registerAgent({ name: values.name, publicKey, labels });
      process.stdout.write(`${res.agent!.agentId}\n`);
      return;
    }
    case "agent get": {
      const { values, positionals } = args(rest, {}, cmd);
      if (positionals.length !== 1) fail(HELP[cmd]!);
      const res = await clients(values.url).agents.getAgent({ agentId: positionals[0] });
      const { AgentSchema } = await import("../../gen/agentid/v1/agent_pb.js");
      printJson(AgentSchema, res.agent!);
      return;
    }
    case "agent list": {
      const { values } = args(rest, { status: { type: "string" }, "page-size": { type: "string" }, "page-token": { type: "string" } }, cmd);
      const status = { active: AgentStatus.ACTIVE, revoked: AgentStatus.REVOKED, undefined: AgentStatus.UNSPECIFIED }[String(values.status)];
      if (status === undefined) fail(`--status: expected active or revoked`);
      const res = await clients(values.url).agents.listAgents({
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
      return revoke(clients(values.url).tokens, { case: "agentId", value: positionals[0]! }, values.reason);
    }
    case "token issue": {
      const { values } = args(rest, { agent: { type: "string" }, scope: { type: "string", multiple: true }, audience: { type: "string", multiple: true }, ttl: { type: "string" } }, cmd);
      if (!values.agent) fail(`--agent is required\n\n${HELP[cmd]}`);
      const res = await clients(values.url).tokens.issue({
        agentId: values.agent,
        scopes: values.scope ?? [],
        audiences: values.audience ?? [],
        ttl: values.ttl ? durationFromMs(parseTtl(values.ttl)) : undefined,
      });
      process.stdout.write(`${res.token}\n`);
      process.stderr.write(`token_id ${res.tokenId}, expires ${iso(res.expiresAt)}\n`);
      return;
    }
    case "token introspect": {
      const { values, positionals } = args(rest, { scope: { type: "string" } }, cmd);
      if (positionals.length !== 1) fail(HELP[cmd]!);
      const token = positionals[0] === "-" ? await readStdin() : positionals[0]!;
      const res = await clients(values.url).tokens.introspect({ token, requiredScope: values.scope ?? "" });
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
      return revoke(clients(values.url).tokens, targets[0]!, values.reason);
    }
    case "watch": {
      const { values } = args(rest, { after: { type: "string" } }, cmd);
      const after = values.after ?? "0";
      if (!/^\d+$/.test(after)) fail(`--after: expected a revision number`);
      const controller = new AbortController();
      process.once("SIGINT", () => controller.abort());
      process.once("SIGTERM", () => controller.abort());
      try {
        for await (const res of clients(values.url).revocations.watchRevocations({ afterRevision: BigInt(after) }, { signal: controller.signal })) {
          if (res.kind.case !== "revocation") continue;
          const e = res.kind.value;
          const target = e.target.case === "tokenId" ? `token ${e.target.value} (agent ${e.tokenAgentId})` : `agent ${e.target.value}`;
          process.stdout.write(`${e.revision}\t${iso(e.revokedAt)}\trevoked ${target}\tby ${e.revokedBy}\treason ${JSON.stringify(e.reason)}\n`);
        }
      } catch (err) {
        if (controller.signal.aborted) return;
        throw err;
      }
      return;
    }
    case "audit log": {
      const { values } = args(rest, { agent: { type: "string" }, kind: { type: "string" }, since: { type: "string" }, until: { type: "string" }, json: { type: "boolean" } }, cmd);
      return auditLog(clients(values.url).audit, values, fail);
    }
    case "audit verify": {
      const { values } = args(rest, { checkpoint: { type: "string" }, "save-checkpoint": { type: "string" }, key: { type: "string" } }, cmd);
      const saved = values.checkpoint === undefined ? undefined : readFileSync(values.checkpoint, "utf8");
      const ok = await auditVerify(clients(values.url).audit, { saved, saveTo: values["save-checkpoint"], key: values.key });
      if (!ok) process.exit(1);
      return;
    }
    case "audit checkpoint": {
      const { values } = args(rest, { out: { type: "string" }, key: { type: "string" } }, cmd);
      return auditCheckpoint(clients(values.url).audit, { out: values.out, key: values.key });
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
