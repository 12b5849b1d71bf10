import { useEffect, useState } from "preact/hooks";

// Hash routes (#/agents/agt_..., #/audit?agent=...): the server serves one index.html, and a
// link never leaves the page.
export interface Route {
  path: string[];
  params: URLSearchParams;
}

function parse(): Route {
  const raw = location.hash.replace(/^#\/?/, "");
  const [p, q] = raw.split("?", 2);
  return { path: (p ?? "").split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(q ?? "") };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(parse);
  useEffect(() => {
    const on = () => setRoute(parse());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function href(path: string, params?: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) if (v) q.set(k, v);
  const s = q.toString();
  return `#/${path}${s ? `?${s}` : ""}`;
}

export function go(path: string, params?: Record<string, string | undefined>): void {
  location.hash = href(path, params);
}
