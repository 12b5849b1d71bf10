import { useEffect, useState } from "preact/hooks";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { AuditEntry } from "../../../gen/agentid/v1/audit_pb.js";
import type { Session } from "../api.js";
import { go, href, type Route } from "../route.js";
import { CopyButton, ErrorBox, Time, hex, useLoad } from "../ui.js";
import { verifyEntry, type Verification } from "../verify.js";

const KINDS = ["agent.registered", "agent.revoked", "token.issued", "token.revoked", "activity.reported", "policy.created", "policy.deleted", "key.created", "key.revoked"];

/** datetime-local text (the analyst's zone) <-> Date. */
const fromLocal = (s: string) => (s ? new Date(s) : undefined);

export function AuditPage({ session, route }: { session: Session; route: Route }) {
  const p = route.params;
  const agent = p.get("agent") ?? "";
  const kind = p.get("kind") ?? "";
  const since = p.get("since") ?? "";
  const until = p.get("until") ?? "";
  const seq = p.get("seq") ?? "";
  const [form, setForm] = useState({ agent, kind, since, until });
  useEffect(() => setForm({ agent, kind, since, until }), [agent, kind, since, until]);
  const [pages, setPages] = useState<{ entries: AuditEntry[]; next: string }>({ entries: [], next: "" });

  const first = useLoad(async () => {
    const s = fromLocal(since);
    const u = fromLocal(until);
    return session.api.audit.listEntries({
      agentId: agent,
      kind,
      since: s && timestampFromDate(s),
      until: u && timestampFromDate(u),
      pageSize: 200,
    });
  }, [session, agent, kind, since, until]);
  useEffect(() => setPages({ entries: first.data?.entries ?? [], next: first.data?.nextPageToken ?? "" }), [first.data]);
  const [moreError, setMoreError] = useState<unknown>();

  const selected = pages.entries.find((e) => String(e.seq) === seq);
  const select = (e: AuditEntry) => go("audit", { agent, kind, since, until, seq: String(e.seq) });

  return (
    <div class="page">
      <div class="page-head">
        <h1>Audit log</h1>
      </div>
      <form
        class="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          go("audit", { agent: form.agent.trim(), kind: form.kind.trim(), since: form.since, until: form.until });
        }}
      >
        <div class="field grow">
          <label for="audit-agent">Agent id</label>
          <input id="audit-agent" class="mono" value={form.agent} placeholder="agt_…" onInput={(e) => setForm({ ...form, agent: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="audit-kind">Kind</label>
          <input id="audit-kind" list="audit-kinds" value={form.kind} placeholder="any" onInput={(e) => setForm({ ...form, kind: e.currentTarget.value })} />
          <datalist id="audit-kinds">
            {KINDS.map((k) => (
              <option key={k} value={k} />
            ))}
          </datalist>
        </div>
        <div class="field">
          <label for="audit-since">From (local time)</label>
          <input id="audit-since" type="datetime-local" step={1} value={form.since} onInput={(e) => setForm({ ...form, since: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="audit-until">Until (local time)</label>
          <input id="audit-until" type="datetime-local" step={1} value={form.until} onInput={(e) => setForm({ ...form, until: e.currentTarget.value })} />
        </div>
        <div class="field field-button">
          <button type="submit" class="btn btn-primary">
            Search
          </button>
        </div>
      </form>
      {first.error !== undefined && <ErrorBox error={first.error} />}
      <div class="split">
        <div class="table-wrap" aria-busy={first.loading}>
          <table class="table responsive audit-table">
            <caption class="sr-only">Log entries, oldest first</caption>
            <thead>
              <tr>
                <th scope="col" class="num">
                  #
                </th>
                <th scope="col">Time</th>
                <th scope="col">Kind</th>
                <th scope="col">Agent</th>
                <th scope="col">Actor</th>
              </tr>
            </thead>
            <tbody>
              {pages.entries.map((e) => (
                <tr key={String(e.seq)} class={String(e.seq) === seq ? "selected" : ""} data-seq={String(e.seq)}>
                  <td data-label="#" class="num">
                    <a href={href("audit", { agent, kind, since, until, seq: String(e.seq) })} aria-label={`Entry ${e.seq}: ${e.kind}`} onClick={(ev) => (ev.preventDefault(), select(e))}>
                      {String(e.seq)}
                    </a>
                  </td>
                  <td data-label="Time">
                    <Time ts={e.time} />
                  </td>
                  <td data-label="Kind">{e.kind}</td>
                  <td data-label="Agent" class="mono ellipsis">
                    {e.agentId ? <a href={href(`agents/${e.agentId}`)}>{e.agentId}</a> : <span class="muted">—</span>}
                  </td>
                  <td data-label="Actor" class="mono ellipsis">
                    {e.actor}
                  </td>
                </tr>
              ))}
              {first.data && pages.entries.length === 0 && (
                <tr>
                  <td colSpan={5} class="empty">
                    No entries match.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
          {pages.next && (
            <div class="pager">
              <button
                type="button"
                class="btn"
                onClick={async () => {
                  try {
                    const s = fromLocal(since);
                    const u = fromLocal(until);
                    const res = await session.api.audit.listEntries({ agentId: agent, kind, since: s && timestampFromDate(s), until: u && timestampFromDate(u), pageSize: 200, pageToken: pages.next });
                    setPages({ entries: [...pages.entries, ...res.entries], next: res.nextPageToken });
                  } catch (err) {
                    setMoreError(err);
                  }
                }}
              >
                Load more
              </button>
              {moreError !== undefined && <ErrorBox error={moreError} />}
            </div>
          )}
        </div>
        <EntryDetails session={session} entry={selected} key={seq} />
      </div>
    </div>
  );
}

function EntryDetails({ session, entry }: { session: Session; entry?: AuditEntry }) {
  const [result, setResult] = useState<Verification>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  if (!entry) {
    return (
      <aside class="card details" aria-label="Entry details">
        <p class="muted">Choose an entry to see its details and verify it.</p>
      </aside>
    );
  }
  let details = entry.detailsJson;
  try {
    details = JSON.stringify(JSON.parse(entry.detailsJson), null, 2);
  } catch {
    // Shown as stored.
  }
  return (
    <aside class="card details" aria-labelledby="entry-title">
      <h2 id="entry-title">
        Entry #{String(entry.seq)} <span class="muted">{entry.kind}</span>
      </h2>
      <dl class="props">
        <dt>Time</dt>
        <dd>
          <Time ts={entry.time} />
        </dd>
        <dt>Agent</dt>
        <dd class="mono">{entry.agentId || "—"}</dd>
        <dt>Token id</dt>
        <dd class="mono">{entry.tokenId || "—"}</dd>
        <dt>Actor</dt>
        <dd class="mono">{entry.actor}</dd>
        <dt>Reason</dt>
        <dd>{entry.reason || "—"}</dd>
        <dt>Leaf hash</dt>
        <dd class="mono break small">
          {hex(entry.leafHash)} <CopyButton text={hex(entry.leafHash)} label="Copy leaf hash" />
        </dd>
      </dl>
      <h3>Details</h3>
      <pre class="json">{details}</pre>
      <button
        type="button"
        class="btn btn-primary"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          setError(undefined);
          setResult(undefined);
          try {
            setResult(await verifyEntry(session.api, entry));
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        {busy ? "Verifying…" : "Verify in this browser"}
      </button>
      {error !== undefined && <ErrorBox error={error} title="Verification could not run" />}
      {result && (
        <div class={`verify ${result.ok ? "verify-ok" : "verify-bad"}`} role="status" data-verified={result.ok ? "yes" : "no"}>
          <strong>{result.ok ? "Verified: this entry is in the signed log." : "NOT verified."}</strong>
          <ul>
            {result.steps.map((s) => (
              <li key={s.label} class={s.ok ? "ok" : "bad"}>
                <span aria-hidden="true">{s.ok ? "✓" : "✗"}</span> <strong>{s.label}</strong>: <span class="break">{s.detail}</span>
              </li>
            ))}
          </ul>
        </div>
      )}
    </aside>
  );
}
