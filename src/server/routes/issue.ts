import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { IssueRequest, IssueResponseSchema } from "../../../gen/agentid/v1/token_pb.js";
import { resolveTtl, verifyAgentProof } from "../../domain/tokens.js";
import { DomainError, invalidArgument } from "../../domain/errors.js";
import { requireAgentId, requireWords } from "../../domain/validate.js";
import type { AppContext } from "../context.js";
import type { CallContext } from "../call.js";

export function issueRoute(ctx: AppContext) {
  const ttlPolicy = { defaultMs: ctx.config.tokenDefaultTtlMs, maxMs: ctx.config.tokenMaxTtlMs };
  return async (req: IssueRequest, call: CallContext): Promise<MessageInitShape<typeof IssueResponseSchema>> => {
    const agentId = requireAgentId("agent_id", req.agentId);
    const scopes = requireWords("scopes", req.scopes, 128, 64);
    const audiences = requireWords("audiences", req.audiences, 256, 16);
    if (req.ttl && (req.ttl.nanos < 0 || req.ttl.seconds < 0n)) throw invalidArgument("ttl", "must be positive");
    const requestedTtlMs = req.ttl ? durationMs(req.ttl) : undefined;
    const ttlMs = resolveTtl("ttl", requestedTtlMs, ttlPolicy);

    // Without an API key, the agent itself is asking: it must prove it holds its key, and it can
    // only ever issue for itself (the proof is over this very agent_id).
    const selfIssued = call.caller === undefined;
    if (selfIssued) {
      const proof = req.proof;
      if (!proof) {
        throw new DomainError("unauthenticated", "missing credentials: send an API key, or sign the request with the agent's key (proof)");
      }
      if (!proof.signedAt) throw invalidArgument("proof.signed_at", "is required");
      await verifyAgentProof(
        ctx.db,
        { agentId, scopes: req.scopes, audiences: req.audiences, ttlMs: requestedTtlMs ?? 0, signedAtMs: timestampDate(proof.signedAt).getTime(), nonce: proof.nonce },
        proof.signature,
        ctx.config.proofMaxSkewMs,
      );
    } else if (req.proof) {
      throw invalidArgument("proof", "send either an API key or a proof, not both");
    }

    const actor = selfIssued ? `agent:${agentId}` : call.principal;
    const { token, record } = await ctx.issuer.issue({ agentId, scopes, audiences, ttlMs }, actor);
    ctx.logger.debug({ tokenId: record.id, agentId, by: actor }, "token issued");
    ctx.metrics?.issuance(selfIssued ? "self" : "issuer");
    return { token, tokenId: record.id, expiresAt: timestampFromDate(record.expiresAt) };
  };
}
