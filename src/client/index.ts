// The resource-server SDK. Imports nothing that needs a database: only gen/, the token checksum
// and Connect.
export { createVerifier } from "./verifier.js";
export type { InactiveCause, Revocation, Verifier, VerifyOptions, VerifierMetrics, VerifierOptions, VerifyResult } from "./verifier.js";
export { FeedFollower } from "./feed.js";
export type { FeedFollowerOptions } from "./feed.js";
export { agentTokenInterceptor, kAgentToken, requireAgentToken } from "./middleware.js";
export type { TransportOptions } from "./transport.js";
