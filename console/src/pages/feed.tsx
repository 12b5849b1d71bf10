import { useEffect, useState } from "preact/hooks";
import { whoMayDo, type Session } from "../api.js";
import type { FeedFollower, FeedSnapshot, FeedState } from "../feed.js";
import { href } from "../route.js";
import { Time } from "../ui.js";

const STATE_TEXT: Record<FeedState, string> = {
  connecting: "Connecting",
  connected: "Connected",
  stale: "Stale",
  reconnecting: "Reconnecting",
  refused: "Refused",
};

export function FeedPage({ session, feed }: { session: Session; feed?: FeedFollower }) {
  const [snap, setSnap] = useState<FeedSnapshot | undefined>(feed?.snapshot);
  const [, tick] = useState(0);
  useEffect(() => feed?.subscribe(setSnap), [feed]);
  // Ages ("3 s ago") move on even when nothing arrives.
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, []);

  if (!feed || !snap) {
    return (
      <div class="page">
        <h1>Live feed</h1>
        <div class="alert alert-error" role="alert">
          <strong>Permission denied</strong>
          <span>
            Your {session.role.replace("_", " ")} key may not watch revocations. Sign in with an {whoMayDo("feed")} key.
          </span>
        </div>
      </div>
    );
  }
  const age = snap.lastMessageAt ? Math.max(0, Math.round((Date.now() - snap.lastMessageAt) / 1000)) : undefined;
  const retryIn = snap.retryAt ? Math.max(0, Math.ceil((snap.retryAt - Date.now()) / 1000)) : undefined;
  return (
    <div class="page feed-page">
      <div class="page-head">
        <h1>Live feed</h1>
      </div>
      <div class="feed-status" role="status" aria-live="polite">
        <span class={`state state-${snap.state}`} data-state={snap.state}>
          <span class="state-dot" aria-hidden="true" />
          {STATE_TEXT[snap.state]}
        </span>
        <span class="feed-fact">
          <span class="muted">revision</span> <span class="mono" data-testid="feed-revision">{snap.revision.toString()}</span>
        </span>
        <span class="feed-fact">
          <span class="muted">last message</span> {age === undefined ? "—" : `${age} s ago`}
        </span>
        <span class="feed-fact">
          <span class="muted">reconnects</span> {snap.reconnects}
        </span>
        <span class="feed-note small muted">
          {snap.state === "reconnecting" && `${snap.error ?? "stream lost"}; retrying${retryIn ? ` in ${retryIn} s` : ""}, resuming after revision ${snap.revision}`}
          {snap.state === "stale" && "no bookmark from the server for over 3 s: events may be late"}
          {snap.state === "refused" && snap.error}
          {snap.state === "connected" && (session.role === "resource_server" ? "showing revocations for your key's audiences" : "all revocations")}
        </span>
      </div>
      <div class="feed-list" tabIndex={0} aria-label="Revocations, newest first">
        <table class="table feed-table">
          <caption class="sr-only">Revocations, newest first</caption>
          <thead>
            <tr>
              <th scope="col" class="num">
                Rev.
              </th>
              <th scope="col">Revoked</th>
              <th scope="col">Target</th>
              <th scope="col">By</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody>
            {snap.events.map(({ event: e, receivedAt, replayed }) => (
              <tr
                key={String(e.revision)}
                class={replayed ? "" : "live"}
                data-revision={String(e.revision)}
                data-agent-id={e.target.case === "agentId" ? e.target.value : e.tokenAgentId}
                data-received-at={receivedAt}
              >
                <td class="num mono">{String(e.revision)}</td>
                <td>
                  <Time ts={e.revokedAt} />
                </td>
                <td class="ellipsis">
                  {e.target.case === "agentId" ? (
                    <>
                      <span class="kind-tag kind-agent">agent</span>{" "}
                      <a class="mono" href={href(`agents/${e.target.value}`)}>
                        {e.target.value}
                      </a>
                    </>
                  ) : (
                    <>
                      <span class="kind-tag">token</span> <span class="mono">{e.target.value}</span>
                    </>
                  )}
                </td>
                <td class="mono ellipsis">{e.revokedBy}</td>
                <td class="ellipsis" title={e.reason}>
                  {e.reason}
                </td>
              </tr>
            ))}
            {snap.events.length === 0 && (
              <tr>
                <td colSpan={5} class="empty">
                  No revocations yet. They appear here the moment they commit.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </div>
  );
}
