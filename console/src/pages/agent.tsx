import { useEffect, useRef, useState } from "preact/hooks";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AgentStatus, type Agent } from "../../../gen/agentid/v1/agent_pb.js";
import type { TrustScore } from "../../../gen/agentid/v1/activity_pb.js";
import { can, whoMayDo, type Session } from "../api.js";
import type { FeedFollower } from "../feed.js";
import { href } from "../route.js";
import { Card, CopyButton, ErrorBox, Labels, StatusBadge, Time, TrustValue, base64, hex, useLoad } from "../ui.js";

// The live token count is re-read this often while the page is open.
const REFRESH_MS = 5000;

export function AgentPage({ session, agentId, feed }: { session: Session; agentId: string; feed?: FeedFollower }) {
  const agent = useLoad(async () => (await session.api.agents.getAgent({ agentId })).agent!, [session, agentId]);
  const [killed, setKilled] = useState<{ revision: bigint; tokens: bigint }>();

  useEffect(() => {
    const t = setInterval(agent.reload, REFRESH_MS);
    // Another console's kill switch arrives through the feed.
    const off = feed?.onEvent((e) => e.target.case === "agentId" && e.target.value === agentId && agent.reload());
    return () => {
      clearInterval(t);
      off?.();
    };
  }, [agent.reload, feed, agentId]);

  if (!agent.data) {
    return <div class="page">{agent.error !== undefined ? <ErrorBox error={agent.error} /> : <p class="muted">Loading…</p>}</div>;
  }
  const a = agent.data;
  return (
    <div class="page">
      <p class="crumbs">
        <a href={href("agents")}>Agents</a> / <span class="mono">{a.agentId}</span>
      </p>
      <div class="page-head">
        <h1>
          {a.name} <StatusBadge status={a.status} />
        </h1>
        <KillSwitch session={session} agent={a} onKilled={(r) => (setKilled(r), agent.reload())} />
      </div>
      {agent.error !== undefined && <ErrorBox error={agent.error} title="Could not refresh this agent" />}
      {a.status === AgentStatus.REVOKED && <RevokedBanner agent={a} justNow={killed} />}
      <div class="grid">
        <Card title="Identity">
          <dl class="props">
            <dt>Agent id</dt>
            <dd class="mono">
              {a.agentId} <CopyButton text={a.agentId} label="Copy agent id" />
            </dd>
            <dt>Registered</dt>
            <dd>
              <Time ts={a.createdAt} />
            </dd>
            <dt>Public key (Ed25519)</dt>
            <dd class="mono break" title={`hex ${hex(a.publicKey)}`}>
              {base64(a.publicKey)}
            </dd>
            <dt>Allowed scopes</dt>
            <dd>{a.allowedScopes.length ? <span class="chips">{a.allowedScopes.map((s) => <span class="chip" key={s}>{s}</span>)}</span> : <span class="muted">none</span>}</dd>
            <dt>Labels</dt>
            <dd>
              <Labels labels={a.labels} />
            </dd>
          </dl>
        </Card>
        <Card title="Tokens and activity">
          <div class="stats">
            <div class="stat">
              <span class="stat-value" data-testid="live-tokens">
                {a.liveTokenCount.toString()}
              </span>
              <span class="stat-label">live tokens</span>
            </div>
            <div class="stat">
              <span class="stat-value stat-small">
                <Time ts={a.lastActivityAt} />
              </span>
              <span class="stat-label">last activity</span>
            </div>
          </div>
          <p class="muted small">Refreshed every {REFRESH_MS / 1000} s{feed ? " and on every revocation in the feed" : ""}.</p>
        </Card>
        {can(session.role, "trust") ? <TrustCard session={session} agentId={a.agentId} /> : null}
      </div>
      <Timeline session={session} agentId={a.agentId} />
    </div>
  );
}

function RevokedBanner({ agent: a, justNow }: { agent: Agent; justNow?: { revision: bigint; tokens: bigint } }) {
  return (
    <section class="revoked-banner" role="status" aria-label="Revoked">
      <h2>Revoked{justNow ? " just now" : ""}</h2>
      <p>
        by <strong class="mono">{a.revokedBy}</strong> on <Time ts={a.revokedAt} />, at revision <strong>{a.revokedRevision.toString()}</strong>
        {justNow && justNow.tokens > 0n ? ` — ${justNow.tokens} live token(s) made inactive` : ""}
      </p>
      <blockquote>{a.revokedReason}</blockquote>
      <p class="small">Revocation is permanent: every token of this agent is inactive and no new ones are issued. A recovered agent registers as a new identity.</p>
    </section>
  );
}

function KillSwitch({ session, agent: a, onKilled }: { session: Session; agent: Agent; onKilled: (r: { revision: bigint; tokens: bigint }) => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState("");
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  // Someone else may pull it while this dialog is open: the page learns it from the feed or its
  // refresh, or from the check just before revoking.
  const [revokedBy, setRevokedBy] = useState<Agent>();
  const already = revokedBy ?? (a.status === AgentStatus.REVOKED ? a : undefined);
  const allowed = can(session.role, "kill");
  const ready = reason.trim().length > 0 && typed === a.name && !busy && !already;

  const confirm = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const now = (await session.api.agents.getAgent({ agentId: a.agentId })).agent!;
      if (now.status === AgentStatus.REVOKED) {
        setRevokedBy(now);
        return;
      }
      const res = await session.api.tokens.revoke({ target: { case: "agentId", value: a.agentId }, reason: reason.trim() });
      dialog.current?.close();
      onKilled({ revision: res.revision, tokens: res.tokensRevoked });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      {a.status === AgentStatus.ACTIVE && (
        <button
          type="button"
          class="btn btn-danger"
          disabled={!allowed}
          title={allowed ? undefined : `Needs an ${whoMayDo("kill")} key`}
          onClick={() => {
            setError(undefined);
            setTyped("");
            dialog.current?.showModal();
          }}
        >
          Kill switch: revoke agent
        </button>
      )}
      <dialog ref={dialog} class="dialog" aria-labelledby="kill-title">
        <form
          method="dialog"
          onSubmit={(e) => {
            e.preventDefault();
            if (ready) void confirm();
          }}
        >
          <h2 id="kill-title">Revoke {a.name}?</h2>
          <p class="danger-text">
            This revokes the agent and its {a.liveTokenCount.toString()} live token(s) everywhere, at once. <strong>It cannot be undone.</strong>
          </p>
          <label for="kill-reason">Reason (recorded in the log and sent to every resource server)</label>
          <textarea id="kill-reason" rows={3} maxLength={512} required value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
          <label for="kill-confirm">
            Type the agent's name, <strong class="mono">{a.name}</strong>, to confirm
          </label>
          <input id="kill-confirm" autocomplete="off" spellcheck={false} value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
          {already && (
            <div class="alert alert-error" role="alert">
              <strong>Already revoked</strong>
              <span>
                by <span class="mono">{already.revokedBy}</span> at revision {already.revokedRevision.toString()}: “{already.revokedReason}”. Nothing more to do.
              </span>
            </div>
          )}
          {error !== undefined && <ErrorBox error={error} />}
          <div class="dialog-actions">
            <button type="button" class="btn" onClick={() => dialog.current?.close()}>
              {already ? "Close" : "Cancel"}
            </button>
            <button type="submit" class="btn btn-danger" disabled={!ready}>
              {busy ? "Revoking…" : "Revoke permanently"}
            </button>
          </div>
        </form>
      </dialog>
    </>
  );
}

const RANGES = { "24h": 24 * 3600_000, "7d": 7 * 24 * 3600_000, "30d": 30 * 24 * 3600_000 } as const;

function TrustCard({ session, agentId }: { session: Session; agentId: string }) {
  const [range, setRange] = useState<keyof typeof RANGES>("7d");
  const current = useLoad(async () => (await session.api.activity.getTrustScore({ agentId })).trustScore!, [session, agentId]);
  const history = useLoad(
    async () => (await session.api.activity.listTrustScores({ agentId, since: timestampFromMs(Date.now() - RANGES[range]), pageSize: 1000 })).trustScores,
    [session, agentId, range, current.data],
  );
  const t = current.data;
  return (
    <Card
      title="Trust score"
      class="span-2"
      actions={
        <div class="field inline">
          <label for="trust-range">History</label>
          <select id="trust-range" value={range} onChange={(e) => setRange(e.currentTarget.value as keyof typeof RANGES)}>
            <option value="24h">last 24 hours</option>
            <option value="7d">last 7 days</option>
            <option value="30d">last 30 days</option>
          </select>
        </div>
      }
    >
      {current.error !== undefined && <ErrorBox error={current.error} />}
      {t && (
        <div class="trust-body">
          <div class="trust-now">
            <span class="trust-big">
              <TrustValue score={t.score} />
            </span>
            <span class="muted small">
              of 100, computed <Time ts={t.computedAt} />
            </span>
          </div>
          <table class="table factors responsive">
            <caption class="sr-only">Factors of the trust score</caption>
            <thead>
              <tr>
                <th scope="col">Factor</th>
                <th scope="col" class="num">
                  Contribution
                </th>
                <th scope="col">What it saw</th>
              </tr>
            </thead>
            <tbody>
              {t.factors.map((f) => (
                <tr key={f.name}>
                  <td data-label="Factor">{f.name.replace(/_/g, " ")}</td>
                  <td data-label="Contribution" class={`num ${f.contribution < 0 ? "neg" : ""}`}>
                    {f.contribution === 0 ? "0" : f.contribution.toFixed(1)}
                  </td>
                  <td data-label="What it saw" class="small">
                    {f.detail}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <TrustChart scores={history.data ?? []} since={Date.now() - RANGES[range]} />
    </Card>
  );
}

const SHORT = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });

/** A line chart of the score over time, drawn in SVG at a fixed height (no layout shift). */
function TrustChart({ scores, since }: { scores: TrustScore[]; since: number }) {
  // Drawn at the figure's real width, so that text and dots are never stretched.
  const figure = useRef<HTMLElement>(null);
  const [W, setW] = useState(640);
  useEffect(() => {
    const el = figure.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setW(Math.max(200, Math.round(el.clientWidth))));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const H = 160;
  const pad = { l: 32, r: 8, t: 8, b: 22 };
  const now = Date.now();
  // The time axis spans the recorded scores (at least 5 minutes), within the chosen range.
  const first = scores.length ? timestampDate(scores[0]!.computedAt!).getTime() : since;
  const start = Math.max(since, Math.min(first, now - 5 * 60_000));
  const x = (ms: number) => pad.l + ((ms - start) / (now - start)) * (W - pad.l - pad.r);
  const y = (s: number) => pad.t + (1 - s / 100) * (H - pad.t - pad.b);
  const pts = scores.map((s) => [x(timestampDate(s.computedAt!).getTime()), y(s.score)] as const);
  const last = scores[scores.length - 1];
  const summary = scores.length
    ? `${scores.length} recorded scores; lowest ${Math.min(...scores.map((s) => s.score)).toFixed(0)}, latest ${last!.score.toFixed(0)}`
    : "No scores recorded in this range";
  return (
    <figure class="chart" ref={figure}>
      <svg width={W} height={H} viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`Trust score history: ${summary}`}>
        {[0, 50, 100].map((g) => (
          <g key={g}>
            <line x1={pad.l} x2={W - pad.r} y1={y(g)} y2={y(g)} class="grid-line" />
            <text x={pad.l - 6} y={y(g) + 4} class="axis" text-anchor="end">
              {g}
            </text>
          </g>
        ))}
        <text x={pad.l} y={H - 6} class="axis">
          {SHORT.format(start)}
        </text>
        <text x={W - pad.r} y={H - 6} class="axis" text-anchor="end">
          now
        </text>
        {pts.length > 1 && <polyline points={[...pts, [x(now), pts[pts.length - 1]![1]]].map((p) => p.join(",")).join(" ")} class="line" />}
        {pts.map(([px, py], i) => (
          <circle key={i} cx={px} cy={py} r={2.5} class="dot" />
        ))}
      </svg>
      <figcaption class="muted small">{summary}</figcaption>
    </figure>
  );
}

function Timeline({ session, agentId }: { session: Session; agentId: string }) {
  const allowed = can(session.role, "audit");
  const entries = useLoad(async () => (allowed ? (await session.api.audit.listEntries({ agentId, pageSize: 1000 })).entries : []), [session, agentId]);
  return (
    <Card title="Timeline from the transparency log">
      {!allowed && <p class="muted">Needs an {whoMayDo("audit")} key.</p>}
      {entries.error !== undefined && <ErrorBox error={entries.error} />}
      <ol class="timeline">
        {[...(entries.data ?? [])].reverse().map((e) => (
          <li key={String(e.seq)} class={`tl tl-${e.kind.replace(/\./g, "-")}`}>
            <div class="tl-head">
              <span class="tl-kind">{e.kind}</span>
              <Time ts={e.time} />
            </div>
            <div class="small">
              by <span class="mono">{e.actor}</span>
              {e.tokenId && (
                <>
                  {" "}
                  · token <span class="mono">{e.tokenId}</span>
                </>
              )}
              {e.reason && <> · “{e.reason}”</>}
            </div>
            <a class="small" href={href("audit", { agent: agentId, seq: String(e.seq) })}>
              Entry #{String(e.seq)}: details and verification
            </a>
          </li>
        ))}
        {entries.data?.length === 0 && allowed && <li class="muted">No entries yet.</li>}
      </ol>
    </Card>
  );
}
