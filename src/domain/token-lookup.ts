import type { Db } from "../store/database.js";
import { readTokensAtRevision, type TokenState } from "../store/tokens.js";

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
  private queue: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly db: Db,
    private readonly maxInFlight = 4,
    private readonly maxBatch = 512,
  ) {}

  lookup(tokenHash: Buffer): Promise<Lookup> {
    return new Promise((resolve, reject) => {
      this.queue.push({ key: tokenHash.toString("base64"), resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    // After the current I/O callbacks: requests read in the same turn share a batch.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      const keys = [...new Set(batch.map((w) => w.key))];
      readTokensAtRevision(this.db, keys.map((k) => Buffer.from(k, "base64")))
        .then(
          ({ revision, tokens }) => {
            for (const w of batch) w.resolve({ revision, token: tokens.get(w.key) });
          },
          (err: unknown) => {
            for (const w of batch) w.reject(err);
          },
        )
        .finally(() => {
          this.inFlight--;
          this.schedule();
        });
    }
  }
}
