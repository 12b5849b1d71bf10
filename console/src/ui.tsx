import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { AgentStatus } from "../../gen/agentid/v1/agent_pb.js";
import { describeError } from "./api.js";

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A time in the analyst's time zone, with UTC on hover. */
export function Time({ ts, date }: { ts?: Timestamp; date?: Date }) {
  const d = date ?? (ts ? timestampDate(ts) : undefined);
  if (!d) return <span class="muted">never</span>;
  const utc = `${d.toISOString().replace("T", " ").replace("Z", "")} UTC`;
  return (
    <time dateTime={d.toISOString()} title={utc}>
      {LOCAL.format(d)}
    </time>
  );
}

export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  const e = describeError(error);
  return (
    <div class="alert alert-error" role="alert">
      <strong>{title ?? e.title}</strong>
      <span>{e.detail}</span>
    </div>
  );
}

export function StatusBadge({ status }: { status: AgentStatus }) {
  return status === AgentStatus.REVOKED ? <span class="badge badge-revoked">Revoked</span> : <span class="badge badge-active">Active</span>;
}

export function Labels({ labels }: { labels: Record<string, string> }) {
  const entries = Object.entries(labels);
  if (entries.length === 0) return <span class="muted">none</span>;
  return (
    <span class="chips">
      {entries.map(([k, v]) => (
        <span class="chip" key={k}>
          {k}={v}
        </span>
      ))}
    </span>
  );
}

export function TrustValue({ score }: { score?: number }) {
  if (score === undefined) return <span class="muted">not yet scored</span>;
  const level = score >= 70 ? "good" : score >= 40 ? "fair" : "poor";
  return <span class={`trust trust-${level}`}>{Math.round(score)}</span>;
}

export interface Loaded<T> {
  data?: T;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs load on mount and when deps change; a newer run wins over a slower older one. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const run = useRef(0);
  const reload = useCallback(() => {
    const mine = ++run.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => mine === run.current && setState({ data, loading: false }),
      (error: unknown) => mine === run.current && setState((s) => ({ data: s.data, error, loading: false })),
    );
  }, deps);
  useEffect(reload, [reload]);
  return { ...state, reload };
}

export function Card({ title, children, actions, class: cls }: { title: string; children: ComponentChildren; actions?: ComponentChildren; class?: string }) {
  const id = `card-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return (
    <section class={`card ${cls ?? ""}`} aria-labelledby={id}>
      <header class="card-head">
        <h2 id={id}>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="btn btn-small"
      aria-label={label}
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        } catch {
          // No clipboard permission: the text stays selectable beside the button.
        }
      }}
    >
      {done ? "Copied" : "Copy"}
    </button>
  );
}

export const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
export const base64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));

/**
 * A destructive row action in two steps: the button, then "Confirm …" and Cancel. `confirming`
 * is the page's one open confirmation (by row id), so opening another closes this one.
 */
export function ConfirmAction(p: {
  id: string;
  confirming: string | undefined;
  setConfirming: (id: string | undefined) => void;
  label: string;
  confirmLabel: string;
  ariaLabel: string;
  disabled: boolean;
  run: () => Promise<void>;
  onError: (err: unknown) => void;
}) {
  if (p.confirming !== p.id) {
    return (
      <button type="button" class="btn btn-small" disabled={p.disabled} onClick={() => p.setConfirming(p.id)} aria-label={p.ariaLabel}>
        {p.label}
      </button>
    );
  }
  return (
    <>
      <button
        type="button"
        class="btn btn-small btn-danger"
        onClick={async () => {
          p.onError(undefined);
          try {
            await p.run();
            p.setConfirming(undefined);
          } catch (err) {
            p.onError(err);
          }
        }}
      >
        {p.confirmLabel}
      </button>
      <button type="button" class="btn btn-small" onClick={() => p.setConfirming(undefined)}>
        Cancel
      </button>
    </>
  );
}
