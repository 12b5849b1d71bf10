import type { Client } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ActivityEvent, ActivityService } from "../../gen/agentid/v1/activity_pb.js";
import { parseTime } from "./audit.js";
import { json, shown } from "./terminal.js";

type Fail = (message: string) => never;

/** One line per event: time, kind, what happened (a usage summary lists its scopes and outcomes). */
export function formatTimeline(events: readonly ActivityEvent[]): string {
  return events
    .map((e) => {
      const t = e.at ? timestampDate(e.at).toISOString() : "-";
      return `${t}  ${shown(e.kind).padEnd(11)}  ${shown(e.summary)}`;
    })
    .join("\n");
}

/** `agentid agent activity <agent_id> --since 2h`: the investigator's timeline. */
export async function agentActivity(
  client: Client<typeof ActivityService>,
  agentId: string,
  o: { since?: string; until?: string; json?: boolean },
  fail: Fail,
): Promise<void> {
  const until = o.until === undefined ? undefined : parseTime("--until", o.until, fail);
  const since = parseTime("--since", o.since ?? "1h", fail);
  const { events } = await client.getActivity({ agentId, since: timestampFromDate(since), until: until && timestampFromDate(until), pageSize: 5000 });
  if (o.json) {
    for (const e of events) {
      process.stdout.write(
        json({
          at: e.at ? timestampDate(e.at).toISOString() : null,
          kind: e.kind,
          summary: e.summary,
          seq: e.seq.toString(),
          usage: e.usage && { reporter: e.usage.reporter, total: Number(e.usage.total), counts: e.usage.counts.map((c) => ({ audience: c.audience, scope: c.scope, ...(c.operation ? { operation: c.operation } : {}), outcome: c.outcome, count: Number(c.count) })) },
          score: e.trustScore?.score,
        }) + "\n",
      );
    }
    return;
  }
  if (events.length === 0) process.stderr.write("no activity in that range\n");
  else process.stdout.write(formatTimeline(events) + "\n");
}
