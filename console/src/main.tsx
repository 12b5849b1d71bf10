import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { can, forgetKey, saveKey, savedKey, signIn, whoMayDo, type Capability, type Session } from "./api.js";
import { FeedFollower } from "./feed.js";
import { useRoute, href } from "./route.js";
import { ErrorBox } from "./ui.js";
import { AgentsPage } from "./pages/agents.js";
import { AgentPage } from "./pages/agent.js";
import { FeedPage } from "./pages/feed.js";
import { AuditPage } from "./pages/audit.js";
import { PoliciesPage } from "./pages/policies.js";
import { KeysPage } from "./pages/keys.js";
import "./app.css";

const NAV: { path: string; label: string; cap: Capability }[] = [
  { path: "agents", label: "Agents", cap: "agents" },
  { path: "feed", label: "Live feed", cap: "feed" },
  { path: "audit", label: "Audit log", cap: "audit" },
  { path: "policies", label: "Policies", cap: "policies" },
  { path: "keys", label: "API keys", cap: "keys" },
];

function SignIn({ onSession }: { onSession: (s: Session) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  return (
    <main class="signin">
      <form
        class="card signin-card"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          try {
            const s = await signIn(key.trim());
            saveKey(s.key);
            onSession(s);
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1 class="brand-large">
          agent<span>id</span> console
        </h1>
        <p class="muted">Sign in with an API key. It stays in this tab's session and is forgotten when you sign out or close the tab.</p>
        <label for="api-key">API key</label>
        <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck={false} placeholder="ak_…" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        {error !== undefined && <ErrorBox error={error} title="Sign-in failed" />}
        <button type="submit" class="btn btn-primary" disabled={busy || !key.trim()}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

function Shell({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const route = useRoute();
  const page = route.path[0] ?? (can(session.role, "agents") ? "agents" : "feed");
  // One feed per console, shared by the feed page and the pages that refresh on revocations.
  const feed = useMemo(() => (can(session.role, "feed") ? new FeedFollower(session.api) : undefined), [session]);
  useEffect(() => {
    feed?.start();
    return () => feed?.stop();
  }, [feed]);

  let body;
  switch (page) {
    case "agents":
      body = route.path[1] ? <AgentPage session={session} agentId={route.path[1]} feed={feed} /> : <AgentsPage session={session} route={route} feed={feed} />;
      break;
    case "feed":
      body = <FeedPage session={session} feed={feed} />;
      break;
    case "audit":
      body = <AuditPage session={session} route={route} />;
      break;
    case "policies":
      body = <PoliciesPage session={session} />;
      break;
    case "keys":
      body = <KeysPage session={session} />;
      break;
    default:
      body = <p>No such page.</p>;
  }
  const role = session.role;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a class="brand" href={href("agents")}>
          agent<span>id</span>
        </a>
        <nav aria-label="Console">
          <ul>
            {NAV.map((n) =>
              can(role, n.cap) ? (
                <li key={n.path}>
                  <a href={href(n.path)} aria-current={page === n.path ? "page" : undefined}>
                    {n.label}
                  </a>
                </li>
              ) : (
                <li key={n.path}>
                  <span class="nav-disabled" aria-disabled="true" title={`Needs an ${whoMayDo(n.cap)} key`}>
                    {n.label}
                  </span>
                </li>
              ),
            )}
          </ul>
        </nav>
        <div class="whoami">
          <span class="whoami-name" title={session.principal.keyId}>
            {session.principal.name}
          </span>
          <span class={`role role-${role}`}>{role.replace("_", " ")}</span>
          <button type="button" class="btn btn-small" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {body}
      </main>
    </>
  );
}

function App() {
  const [session, setSession] = useState<Session>();
  const [restoring, setRestoring] = useState(() => savedKey() !== undefined);
  const [restoreError, setRestoreError] = useState<unknown>();
  useEffect(() => {
    const key = savedKey();
    if (!key) return;
    signIn(key).then(
      (s) => {
        setSession(s);
        setRestoring(false);
      },
      (err: unknown) => {
        setRestoreError(err);
        setRestoring(false);
      },
    );
  }, []);
  if (restoring) return <p class="loading-page">Checking your key…</p>;
  if (!session) {
    return (
      <>
        {restoreError !== undefined && (
          <div class="signin-banner">
            <ErrorBox error={restoreError} title="Your saved session no longer works" />
          </div>
        )}
        <SignIn onSession={setSession} />
      </>
    );
  }
  return (
    <Shell
      session={session}
      onSignOut={() => {
        forgetKey();
        setSession(undefined);
        location.hash = "";
      }}
    />
  );
}

render(<App />, document.getElementById("app")!);
