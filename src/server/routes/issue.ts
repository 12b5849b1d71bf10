import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { IssueRequest, IssueResponseSchema } from "../../../gen/agentid/v1/token_pb.js";
import { issueToken, resolveTtl } from "../../domain/tokens.js";
import { invalidArgument } from "../../domain/errors.js";
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
    const ttlMs = resolveTtl("ttl", req.ttl ? durationMs(req.ttl) : undefined, ttlPolicy);
    const { token, record } = await issueToken(ctx.db, { agentId, scopes, audiences, ttlMs }, call.principal);
    ctx.logger.info({ tokenId: record.id, agentId }, "token issued");
    return { token, tokenId: record.id, expiresAt: timestampFromDate(record.expiresAt) };
  };
}
