import type { Db } from "../store/database.js";
import { readTokensAtRevision, type TokenState } from "../store/tokens.js";
import { Batcher } from "./batcher.js";

export interface Lookup {
  revision: bigint;
  token: TokenState | undefined;
}

interface Waiting {
  key: string;
  resolve: (l: Lookup) => void;
  reject: (e: unknown) => void;
}

/**
 * Introspect's database read, batched: lookups that arrive while the database is busy are
 * answered together by one statement (one snapshot, one revision for all of them). Under light
 * load each lookup runs alone at once; under heavy load many share a round trip, which is what
 * lets Introspect keep up with the transport.
 */
export class TokenLookup {
  private readonly batcher: Batcher<Waiting>;

  constructor(
    private readonly db: Db,
    maxInFlight = 4,
    maxBatch = 512,
  ) {
    this.batcher = new Batcher((batch) => this.read(batch), maxInFlight, maxBatch);
  }

  lookup(tokenHash: Buffer): Promise<Lookup> {
    return new Promise((resolve, reject) => this.batcher.add({ key: tokenHash.toString("base64"), resolve, reject }));
  }

  private async read(batch: Waiting[]): Promise<void> {
    const keys = [...new Set(batch.map((w) => w.key))];
    try {
      const { revision, tokens } = await readTokensAtRevision(this.db, keys.map((k) => Buffer.from(k, "base64")));
      for (const w of batch) w.resolve({ revision, token: tokens.get(w.key) });
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  }
}
