import { useEffect, useState } from "preact/hooks";
import { AgentStatus } from "../../../gen/agentid/v1/agent_pb.js";
import type { Session } from "../api.js";
import type { FeedFollower } from "../feed.js";
import { go, href, type Route } from "../route.js";
import { ErrorBox, Labels, StatusBadge, Time, TrustValue, useLoad } from "../ui.js";

const PAGE_SIZE = 50;

const STATUS: Record<string, AgentStatus> = { all: AgentStatus.UNSPECIFIED, active: AgentStatus.ACTIVE, revoked: AgentStatus.REVOKED };

/** "team=payments env=prod" -> { team: "payments", env: "prod" }; a bare key is an error. */
function parseLabels(text: string): Record<string, string> | string {
  const out: Record<string, string> = {};
  for (const part of text.split(/[\s,]+/).filter(Boolean)) {
    const i = part.indexOf("=");
    if (i <= 0) return `write labels as key=value (got "${part}")`;
    out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

export function AgentsPage({ session, route, feed }: { session: Session; route: Route; feed?: FeedFollower }) {
  const q = route.params.get("q") ?? "";
  const status = route.params.get("status") ?? "all";
  const label = route.params.get("label") ?? "";
  const token = route.params.get("page") ?? "";
  const pageNo = Number(route.params.get("n") ?? "1");
  const [form, setForm] = useState({ q, status, label });
  useEffect(() => setForm({ q, status, label }), [q, status, label]);

  const labels = parseLabels(label);
  const list = useLoad(async () => {
    if (typeof labels === "string") throw new Error(labels);
    return session.api.agents.listAgents({ pageSize: PAGE_SIZE, pageToken: token, query: q, status: STATUS[status] ?? AgentStatus.UNSPECIFIED, labels });
  }, [session, q, status, label, token]);

  // A revocation of a listed agent, from any console, shows here at once.
  useEffect(
    () =>
      feed?.onEvent((e) => {
        if (e.target.case === "agentId" && list.data?.agents.some((a) => a.agentId === e.target.value)) list.reload();
      }),
    [feed, list.data],
  );

  return (
    <div class="page">
      <div class="page-head">
        <h1>Agents</h1>
      </div>
      <form
        class="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          go("agents", { q: form.q.trim(), status: form.status === "all" ? "" : form.status, label: form.label.trim() });
        }}
      >
        <div class="field grow">
          <label for="agent-search">Search name or id</label>
          <input id="agent-search" type="search" value={form.q} placeholder="billing-bot or agt_…" onInput={(e) => setForm({ ...form, q: e.currentTarget.value })} />
        </div>
        <div class="field">
          <label for="agent-status">Status</label>
          <select id="agent-status" value={form.status} onChange={(e) => setForm({ ...form, status: e.currentTarget.value })}>
            <option value="all">All</option>
            <option value="active">Active</option>
            <option value="revoked">Revoked</option>
          </select>
        </div>
        <div class="field">
          <label for="agent-label">Label</label>
          <input id="agent-label" value={form.label} placeholder="team=payments" onInput={(e) => setForm({ ...form, label: e.currentTarget.value })} />
        </div>
        <div class="field field-button">
          <button type="submit" class="btn btn-primary">
            Search
          </button>
        </div>
      </form>
      {list.error !== undefined && <ErrorBox error={list.error} />}
      {(list.data || list.error === undefined) && (
        <>
          <div class="table-wrap" aria-busy={list.loading}>
            <table class="table responsive">
              <caption class="sr-only">Agents, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Agent</th>
                  <th scope="col">Status</th>
                  <th scope="col" class="num">Trust</th>
                  <th scope="col">Labels</th>
                  <th scope="col" class="num">Live tokens</th>
                  <th scope="col">Last activity</th>
                </tr>
              </thead>
              <tbody>
                {list.data?.agents.map((a) => (
                  <tr key={a.agentId} data-agent-id={a.agentId}>
                    <td data-label="Agent">
                      <div>
                        <a href={href(`agents/${a.agentId}`)} class="agent-link">
                          {a.name}
                        </a>
                        <div class="mono small muted">{a.agentId}</div>
                      </div>
                    </td>
                    <td data-label="Status">
                      <StatusBadge status={a.status} />
                    </td>
                    <td data-label="Trust" class="num">
                      <TrustValue score={a.trustScore} />
                    </td>
                    <td data-label="Labels">
                      <Labels labels={a.labels} />
                    </td>
                    <td data-label="Live tokens" class="num">
                      {a.liveTokenCount.toString()}
                    </td>
                    <td data-label="Last activity">
                      <Time ts={a.lastActivityAt} />
                    </td>
                  </tr>
                ))}
                {list.data && list.data.agents.length === 0 && (
                  <tr>
                    <td colSpan={6} class="empty">
                      No agents match.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
          <nav class="pager" aria-label="Pages">
            <button type="button" class="btn" disabled={pageNo <= 1} onClick={() => history.back()}>
              Previous page
            </button>
            <span class="muted">Page {pageNo}</span>
            <button
              type="button"
              class="btn"
              disabled={!list.data?.nextPageToken}
              onClick={() =>
                go("agents", {
                  q,
                  status: status === "all" ? "" : status,
                  label,
                  page: list.data!.nextPageToken,
                  n: String(pageNo + 1),
                })
              }
            >
              Next page
            </button>
          </nav>
        </>
      )}
    </div>
  );
}
