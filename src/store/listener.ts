import pg from "pg";
import type { Logger } from "pino";

export interface ListenerOptions {
  databaseUrl: string;
  channels: readonly string[];
  logger: Logger;
  /** Prefix of its log lines ("feed", "sequencer"). */
  name: string;
  onNotification(channel: string, payload: string | undefined): void;
  /** After a lost connection is back: whatever was announced meanwhile went unheard. */
  onReconnect(): void;
}

/**
 * A dedicated LISTEN connection that comes back by itself: on a lost connection it reconnects
 * with exponential backoff (100 ms to 5 s) and says so through onReconnect. NOTIFY is only ever a
 * wake-up here; the tables stay the truth.
 */
export class Listener {
  private client: pg.Client | undefined;
  private closed = false;
  private backoffMs = 100;

  constructor(private readonly o: ListenerOptions) {}

  /** Connects and listens; rejects if the first connection fails. */
  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.o.databaseUrl });
    client.on("notification", (m) => this.o.onNotification(m.channel, m.payload));
    client.on("error", (err) => {
      this.o.logger.warn({ err: err.message }, `${this.o.name}: LISTEN connection lost; reconnecting`);
      this.restart(client);
    });
    client.on("end", () => this.restart(client));
    try {
      await client.connect();
      for (const channel of this.o.channels) await client.query(`listen ${channel}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.backoffMs = 100;
  }

  private restart(client: pg.Client): void {
    if (this.closed || this.client !== client) return;
    this.client = undefined;
    client.end().catch(() => {});
    const retry = (): void => {
      if (this.closed) return;
      this.start().then(
        () => this.o.onReconnect(),
        (err: Error) => {
          this.o.logger.warn({ err: err.message, retryMs: this.backoffMs }, `${this.o.name}: LISTEN reconnect failed`);
          this.backoffMs = Math.min(this.backoffMs * 2, 5000);
          setTimeout(retry, this.backoffMs).unref();
        },
      );
    };
    setTimeout(retry, this.backoffMs).unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }
}
