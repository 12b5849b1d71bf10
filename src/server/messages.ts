// Records to API messages, in one place.
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ApiKeySchema, Role } from "../../gen/agentid/v1/key_pb.js";
import { PolicyKind, PolicySchema } from "../../gen/agentid/v1/policy_pb.js";
import { TrustScoreSchema } from "../../gen/agentid/v1/activity_pb.js";
import type { ApiKeyRecord } from "../store/api-keys.js";
import type { PolicyRecord } from "../store/policies.js";
import type { TrustScoreRecord } from "../store/activity.js";
import type { Role as StoreRole } from "../store/database.js";
import { AgentSchema, AgentStatus } from "../../gen/agentid/v1/agent_pb.js";
import { InactiveReason, type IntrospectResponseSchema } from "../../gen/agentid/v1/token_pb.js";
import { WatchRevocationsResponseSchema, type RevocationEventSchema } from "../../gen/agentid/v1/revocation_pb.js";
import type { AgentActivitySummary, AgentRecord, AgentStatus as StoreAgentStatus } from "../store/agents.js";
import type { Introspection } from "../domain/tokens.js";
import type { FrameEncoder } from "../feed/frame.js";
import type { LogEvent } from "../store/revocation-reads.js";
import type { AuditEntrySchema, CheckpointSchema } from "../../gen/agentid/v1/audit_pb.js";
import type { EntryWithLeaf } from "../domain/audit.js";
import type { SignedCheckpoint } from "../audit/log.js";
import type { StoredCheckpoint } from "../store/audit.js";
import { canonicalJson, type JsonValue } from "../audit/canonical-json.js";

export function agentMessage(a: AgentRecord, summary?: AgentActivitySummary) {
  return create(AgentSchema, {
    liveTokenCount: summary?.liveTokens ?? 0n,
    lastActivityAt: summary?.lastActivityAt ? timestampFromDate(summary.lastActivityAt) : undefined,
    trustScore: summary?.trustScore ?? undefined,
    agentId: a.id,
    name: a.name,
    publicKey: a.publicKey,
    labels: a.labels,
    status: a.status === "ACTIVE" ? AgentStatus.ACTIVE : AgentStatus.REVOKED,
    createdAt: timestampFromDate(a.createdAt),
    revokedAt: a.revokedAt ? timestampFromDate(a.revokedAt) : undefined,
    revokedReason: a.revokedReason ?? "",
    revokedBy: a.revokedBy ?? "",
    revokedRevision: a.revokedRevision ?? 0n,
    allowedScopes: a.allowedScopes,
    allowedAudiences: a.allowedAudiences,
    deploymentId: a.deploymentId,
  });
}

const ROLES = { admin: Role.ADMIN, issuer: Role.ISSUER, resource_server: Role.RESOURCE_SERVER } as const;

export function roleFromMessage(r: Role): StoreRole | undefined {
  switch (r) {
    case Role.ADMIN:
      return "admin";
    case Role.ISSUER:
      return "issuer";
    case Role.RESOURCE_SERVER:
      return "resource_server";
    case Role.UNSPECIFIED:
      return undefined;
    default:
      return undefined;
  }
}

export function apiKeyMessage(k: ApiKeyRecord) {
  return create(ApiKeySchema, {
    keyId: k.id,
    name: k.name,
    role: ROLES[k.role],
    audiences: k.audiences,
    createdAt: timestampFromDate(k.createdAt),
    createdBy: k.createdBy,
    revokedAt: k.revokedAt ? timestampFromDate(k.revokedAt) : undefined,
  });
}

export function policyMessage(p: PolicyRecord) {
  return create(PolicySchema, {
    name: p.name,
    kind: p.kind === "scope_violations" ? PolicyKind.SCOPE_VIOLATIONS : PolicyKind.TRUST_BELOW,
    threshold: p.threshold,
    window: p.windowSeconds ? durationFromMs(p.windowSeconds * 1000) : undefined,
    createdAt: timestampFromDate(p.createdAt),
    createdBy: p.createdBy,
  });
}

export function trustScoreMessage(t: TrustScoreRecord) {
  return create(TrustScoreSchema, {
    agentId: t.agentId,
    score: t.score,
    factors: t.factors.map((f) => ({
      name: f.name,
      contribution: f.contribution,
      detail: f.detail,
      count: BigInt(f.count ?? 0),
      window: f.windowMs ? durationFromMs(f.windowMs) : undefined,
      baseline: f.baseline ?? 0,
    })),
    computedAt: timestampFromDate(t.computedAt),
  });
}

export function agentStatusFilter(s: AgentStatus): StoreAgentStatus | undefined {
  switch (s) {
    case AgentStatus.UNSPECIFIED:
      return undefined;
    case AgentStatus.ACTIVE:
      return "ACTIVE";
    case AgentStatus.REVOKED:
      return "REVOKED";
    default:
      return undefined;
  }
}

export function introspectResponse(r: Introspection): MessageInitShape<typeof IntrospectResponseSchema> {
  const t = r.token;
  return {
    active: r.active,
    inactiveReason: r.inactiveReason ? InactiveReason[r.inactiveReason] : InactiveReason.UNSPECIFIED,
    revision: r.revision,
    // Details only for active tokens: an inactive answer says why, and no more (RFC 7662 §2.2).
    ...(r.active && t
      ? {
          tokenId: t.id,
          agentId: t.agentId,
          scopes: t.scopes,
          audiences: t.audiences,
          issuedAt: timestampFromDate(t.issuedAt),
          expiresAt: timestampFromDate(t.expiresAt),
        }
      : {}),
  };
}

function revocationEvent(e: LogEvent): MessageInitShape<typeof RevocationEventSchema> {
  return {
    revision: e.revision,
    target: e.tokenId ? { case: "tokenId", value: e.tokenId } : { case: "agentId", value: e.agentId },
    tokenAgentId: e.tokenId ? e.agentId : "",
    // Whole for every caller that may see it, as its log entry is (docs/feed-and-sdk.md).
    reason: e.reason,
    revokedBy: e.revokedBy,
    revokedAt: timestampFromDate(e.revokedAt),
    expiresAt: e.expiresAt ? timestampFromDate(e.expiresAt) : undefined,
  };
}

/** Feed batches and bookmarks, built and encoded once for every stream that shares them. */
export const feedFrames: FrameEncoder = {
  events(events) {
    const message = create(WatchRevocationsResponseSchema, { events: events.map(revocationEvent) });
    return { message: deepFreeze(message), bytes: toBinary(WatchRevocationsResponseSchema, message) };
  },
  progress(revision) {
    const message = create(WatchRevocationsResponseSchema, { progress: { revision } });
    return { message: deepFreeze(message), bytes: toBinary(WatchRevocationsResponseSchema, message) };
  },
};

/** Shared between streams: nothing may change it after encoding. */
function deepFreeze<T>(o: T): T {
  if (typeof o === "object" && o !== null && !ArrayBuffer.isView(o) && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

export function auditEntryMessage(e: EntryWithLeaf): MessageInitShape<typeof AuditEntrySchema> {
  return {
    seq: e.seq,
    time: timestampFromDate(e.at),
    kind: e.kind,
    agentId: e.agentId,
    tokenId: e.tokenId,
    actor: e.actor,
    reason: e.reason,
    // Re-encoded canonically: jsonb keeps values but not key order.
    detailsJson: canonicalJson(e.details as JsonValue),
    leafHash: e.committedLeafHash,
    salt: e.salt,
  };
}

export function checkpointMessage(c: SignedCheckpoint | StoredCheckpoint): MessageInitShape<typeof CheckpointSchema> {
  // A stored checkpoint's origin is its note's first line.
  const origin = "origin" in c ? c.origin : c.note.slice(0, c.note.indexOf("\n"));
  return { origin, treeSize: c.treeSize, rootHash: c.rootHash, note: c.note };
}
