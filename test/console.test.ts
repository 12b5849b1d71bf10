import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { Role, KeyService } from "../gen/agentid/v1/key_pb.js";
import { ActivityKind, ActivityService } from "../gen/agentid/v1/activity_pb.js";
import { PolicyKind, PolicyService } from "../gen/agentid/v1/policy_pb.js";
import { publicKey, startHarness, type Harness } from "./support/harness.js";
import { chromiumPath, ensureConsoleBuilt, launchChromium } from "./support/browser.js";
import { startProxy } from "./support/proxy.js";

// The analyst's flow in a real Chromium against a real server: sign in, find the agent, kill it,
// watch it arrive on a second console's feed, verify its log entry in the browser, and see a
// resource_server key refused. Every page is photographed (see SHOTS).

const chromium = chromiumPath();
// Pictures go to test-results/console/ (not committed); `npm run screenshots` refreshes the
// committed ones in docs/screenshots/ that the README and docs show.
const SHOTS = `${fileURLToPath(new URL("../", import.meta.url))}${process.env.AGENTID_SCREENSHOTS ?? "test-results/console"}/`;

if (!chromium) {
  console.warn("console browser tests SKIPPED: no Chromium found (apt-get install chromium, or set AGENTID_CHROMIUM)");
}

// This machine's CI may be busy: generous limits, and no timing is asserted anywhere.
const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: 20_000, interval: 100 });

describe.skipIf(!chromium)("the console in Chromium", { timeout: 120_000 }, () => {
  let h: Harness;
  let browser: Browser;
  let base: string;
  let sql: pg.Client;
  let analyst2Key: string;
  let rsKey: string;
  let agentId: string;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    ensureConsoleBuilt();
    await mkdir(SHOTS, { recursive: true });
    h = await startHarness();
    base = `http://127.0.0.1:${h.server.httpPort}`;
    sql = new pg.Client({ connectionString: h.databaseUrl });
    await sql.connect();
    const keys = createClient(KeyService, h.connectTransport);
    analyst2Key = (await keys.createApiKey({ name: "night-shift analyst", role: Role.ADMIN })).secret;
    rsKey = (await keys.createApiKey({ name: "orders-api", role: Role.RESOURCE_SERVER, audiences: ["orders"] })).secret;
    await createClient(PolicyService, h.connectTransport).createPolicy({
      policy: { name: "scope-abuse", kind: PolicyKind.SCOPE_VIOLATIONS, threshold: 5, window: { seconds: 3600n } },
    });

    // A fleet large enough to need paging, and the agent whose behaviour changed.
    const teams = ["payments", "search", "support", "ops"];
    for (let i = 0; i < 120; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, (_, j) =>
          h.connect.agents.registerAgent({ name: `worker-${String(i + j).padStart(3, "0")}`, publicKey: publicKey(), labels: { team: teams[(i + j) % 4]!, env: "prod" } }),
        ),
      );
    }
    const { agent } = await h.connect.agents.registerAgent({
      name: "billing-bot",
      publicKey: publicKey(),
      labels: { team: "payments", env: "prod" },
      allowedScopes: ["orders:read", "invoices:write"],
      allowedAudiences: ["orders"],
    });
    agentId = agent!.agentId;
    for (let i = 0; i < 3; i++) await h.connect.tokens.issue({ agentId, scopes: ["orders:read"], audiences: ["orders"] });
    const activity = createClient(ActivityService, h.connectTransport);
    for (const detail of ["read invoices of another tenant", "bulk export at 3x usual rate"]) {
      await activity.reportActivity({ agentId, kind: ActivityKind.ANOMALOUS_REQUEST, detail });
      await activity.getTrustScore({ agentId });
    }
    browser = await launchChromium(chromium!);
  }, 180_000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await sql?.end();
    await h?.close();
  });

  async function open(width = 1280, height = 860): Promise<Page> {
    const ctx = await browser.newContext({ viewport: { width, height }, timezoneId: "Europe/Berlin", locale: "en-GB" });
    contexts.push(ctx);
    const page = await ctx.newPage();
    page.on("pageerror", (err) => console.error("page error:", err));
    return page;
  }

  async function signIn(page: Page, key: string): Promise<void> {
    await page.goto(`${base}/console/`);
    await page.getByLabel("API key").fill(key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
  }

  /** Photographs a page for the reviewer, and checks every control on it has a label. */
  async function shot(page: Page, name: string, fullPage = true): Promise<void> {
    // (Browser-side code is passed as text: this file is type-checked without the DOM library.)
    const unlabelled = await page.evaluate<string[]>(
      `[...document.querySelectorAll("input, select, textarea")].filter((el) => !el.labels?.length && !el.getAttribute("aria-label")).map((el) => el.outerHTML)`,
    );
    expect(unlabelled, name).toEqual([]);
    await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage });
  }

  it("serves the console at / on the HTTP port", async () => {
    const res = await fetch(`${base}/`, { redirect: "manual" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("/console/");
    const index = await fetch(`${base}/console/`);
    expect(index.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(await index.text()).toContain("agentid console");
  });

  let analyst: Page;
  let second: Page;

  it("signs in with the keyboard alone and keeps the key out of localStorage", async () => {
    analyst = await open();
    await analyst.goto(`${base}/console/`);
    await shot(analyst, "sign-in");
    await analyst.keyboard.press("Tab"); // skip nothing: the key field is the first control
    await analyst.keyboard.type(h.adminKey);
    await analyst.keyboard.press("Enter");
    await analyst.getByRole("heading", { name: "Agents" }).waitFor();
    expect(await analyst.evaluate<string>("JSON.stringify(localStorage)")).not.toContain("ak_");
  });

  it("lists agents with status, trust, labels and last activity, pages through them and filters by label", async () => {
    const rows = analyst.locator("tbody tr[data-agent-id]");
    await poll(() => rows.count()).toBe(50);
    await shot(analyst, "agents", false);
    await analyst.getByRole("button", { name: "Next page" }).click();
    await poll(() => analyst.locator("text=Page 2").count()).toBe(1);
    await poll(() => rows.count()).toBe(50);
    await analyst.getByLabel("Label").fill("team=payments");
    await analyst.getByRole("button", { name: "Search" }).click();
    await poll(() => rows.count()).toBe(31); // 30 workers and billing-bot
  });

  it("finds the agent and shows its identity, tokens, trust factors and timeline", async () => {
    await analyst.getByLabel("Search name or id").fill("billing");
    await analyst.getByRole("button", { name: "Search" }).click();
    await poll(() => analyst.locator("tbody tr[data-agent-id]").count()).toBe(1);
    const row = analyst.locator(`tr[data-agent-id="${agentId}"]`);
    await poll(() => row.textContent()).toContain("team=payments");
    await row.getByRole("link", { name: "billing-bot" }).click();
    await analyst.getByRole("heading", { name: /billing-bot/ }).waitFor();
    await poll(() => analyst.getByTestId("live-tokens").textContent()).toBe("3");
    await poll(() => analyst.locator(".factors tbody tr").count()).toBeGreaterThan(0);
    await poll(() => analyst.locator(".timeline li").count()).toBe(6); // registered, 3 issued, 2 reports
    await poll(() => analyst.locator("text=orders:read").count()).toBeGreaterThan(0);
    // Times read in the analyst's zone and locale (the context runs in Europe/Berlin, en-GB), UTC on hover.
    const time = analyst.locator("time").first();
    const at = new Date((await time.getAttribute("datetime"))!);
    const berlin = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "medium", timeZone: "Europe/Berlin" });
    expect(await time.textContent()).toBe(berlin.format(at));
    expect(await time.getAttribute("title")).toBe(`${at.toISOString().replace("T", " ").replace("Z", "")} UTC`);
    await shot(analyst, "agent");
  });

  it("kills the agent with a reason; the page shows it at once and a second console's feed receives it", async () => {
    second = await open();
    await signIn(second, analyst2Key);
    await second.goto(`${base}/console/#/feed`);
    await second.locator('[data-state="connected"]').waitFor();
    // Chromium reports every layout shift; the feed must cause none.
    await second.evaluate(`
      window.shifts = 0;
      new PerformanceObserver((l) => { for (const e of l.getEntries()) window.shifts += e.value; }).observe({ type: "layout-shift" });
    `);
    const statusBox = await second.locator(".feed-status").boundingBox();
    const listBox = await second.locator(".feed-list").boundingBox();

    await analyst.getByRole("button", { name: /Kill switch/ }).click();
    const confirm = analyst.getByRole("button", { name: "Revoke permanently" });
    await analyst.getByLabel(/Reason/).fill("exfiltrating invoices at 02:47");
    expect(await confirm.isDisabled()).toBe(true); // not before the name is typed
    await analyst.getByLabel(/Type the agent's name/).fill("billing-bo");
    expect(await confirm.isDisabled()).toBe(true);
    await analyst.getByLabel(/Type the agent's name/).fill("billing-bot");
    await shot(analyst, "kill-switch", false);
    const clickedAt = Date.now();
    await confirm.click();

    const banner = analyst.getByRole("status", { name: "Revoked" });
    await banner.waitFor();
    const text = await banner.textContent();
    expect(text).toContain("exfiltrating invoices at 02:47");
    expect(text).toMatch(/revision \d+/);
    expect(text).toContain("permanent");
    await poll(() => analyst.getByTestId("live-tokens").textContent()).toBe("0");
    expect(await analyst.getByRole("button", { name: /Kill switch/ }).count()).toBe(0);

    const row = second.locator(`.feed-table tr.live[data-agent-id="${agentId}"]`);
    await row.waitFor();
    const receivedAt = Number(await row.getAttribute("data-received-at"));
    const committedAt = Date.parse((await row.locator("time").getAttribute("datetime"))!);
    console.log(
      `console: confirm click to event shown on the second console: ${receivedAt - clickedAt} ms ` +
        `(click to revoked_at ${committedAt - clickedAt} ms, revoked_at to shown ${receivedAt - committedAt} ms)`,
    );
    expect(await row.textContent()).toContain("exfiltrating invoices at 02:47");
    // The feed's frame did not move when the event arrived.
    expect(await second.locator(".feed-status").boundingBox()).toEqual(statusBox);
    expect(await second.locator(".feed-list").boundingBox()).toEqual(listBox);
    await shot(analyst, "agent-revoked", false);
    expect(await second.evaluate<number>("window.shifts")).toBe(0);
    await shot(second, "feed");
  });

  it("verifies the revocation's log entry in the browser, and catches a changed entry", async () => {
    await analyst.goto(`${base}/console/#/audit?agent=${agentId}&kind=agent.revoked`);
    const link = analyst.getByRole("link", { name: /agent\.revoked/ });
    await link.click();
    await analyst.getByRole("button", { name: "Verify in this browser" }).click();
    const result = analyst.locator("[data-verified]");
    await result.waitFor();
    expect(await result.getAttribute("data-verified")).toBe("yes");
    expect(await result.textContent()).toContain("Inclusion proof");
    await shot(analyst, "audit");

    // Someone with the database rewrites the reason of an earlier entry: the browser notices.
    const { rows } = await sql.query<{ seq: string }>("select seq from audit_entries where agent_id = $1 and kind = 'activity.reported' order by seq limit 1", [agentId]);
    await sql.query("update audit_entries set reason = 'nothing to see' where seq = $1", [rows[0]!.seq]);
    await analyst.goto(`${base}/console/#/audit?agent=${agentId}&seq=${rows[0]!.seq}`);
    await analyst.getByRole("button", { name: "Verify in this browser" }).click();
    await result.waitFor();
    expect(await result.getAttribute("data-verified")).toBe("no");
    expect(await result.textContent()).toContain("Leaf hash");
  });

  it("shows a silent stream as stale, reconnects after a cut, and resumes without missing an event", async () => {
    const proxy = await startProxy(h.server.httpPort);
    try {
      const page = await open();
      await page.goto(`${proxy.url}/console/`);
      await page.getByLabel("API key").fill(analyst2Key);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("button", { name: "Sign out" }).waitFor();
      await page.goto(`${proxy.url}/console/#/feed`);
      await page.locator('[data-state="connected"]').waitFor();
      await page.locator(`.feed-table tr[data-agent-id="${agentId}"]`).waitFor(); // replayed

      proxy.freeze();
      await page.locator('[data-state="stale"]').waitFor();
      const { agent } = await h.connect.agents.registerAgent({ name: "during-outage", publicKey: publicKey() });
      await h.connect.tokens.revoke({ target: { case: "agentId", value: agent!.agentId }, reason: "revoked while the console was cut off" });
      await shot(page, "feed-stale");
      proxy.cut();
      await page.locator('[data-state="reconnecting"], [data-state="connecting"]').first().waitFor();
      await page.locator(`.feed-table tr[data-agent-id="${agent!.agentId}"]`).waitFor({ timeout: 20_000 });
      await page.locator('[data-state="connected"]').waitFor();
      // Each revision once, in order: the resumed stream started after the last one seen.
      const revisions = await page.locator(".feed-table tr[data-revision]").evaluateAll((rows) => rows.map((r) => Number(r.getAttribute("data-revision"))));
      expect(revisions).toEqual([...new Set(revisions)].sort((a, b) => b - a));
      expect(revisions.length).toBe(2);

      // The server goes away: the page says so plainly, and the feed keeps trying.
      await proxy.close();
      await page.evaluate('location.hash = "#/agents"');
      const alert = page.getByRole("alert");
      await alert.waitFor();
      expect(await alert.textContent()).toContain("Server unreachable");
      await page.evaluate('location.hash = "#/feed"');
      await page.locator('[data-state="reconnecting"]').waitFor();
    } finally {
      await proxy.close();
    }
  });

  it("tells an issuer plainly when another console revoked the agent first, and hides what it may not do", async () => {
    const keys = createClient(KeyService, h.connectTransport);
    const issuerKey = (await keys.createApiKey({ name: "day-shift issuer", role: Role.ISSUER })).secret;
    const { agent } = await h.connect.agents.registerAgent({ name: "crawler-7", publicKey: publicKey() });
    const page = await open();
    await signIn(page, issuerKey);
    for (const name of ["Live feed", "Policies", "API keys"]) {
      expect(await page.locator(".nav-disabled", { hasText: name }).getAttribute("aria-disabled")).toBe("true");
    }
    await page.goto(`${base}/console/#/agents/${agent!.agentId}`);
    await page.getByRole("button", { name: /Kill switch/ }).click();
    await page.getByLabel(/Reason/).fill("runaway crawler");
    await page.getByLabel(/Type the agent's name/).fill("crawler-7");
    await h.connect.tokens.revoke({ target: { case: "agentId", value: agent!.agentId }, reason: "stopped by the night shift" });
    const confirm = page.getByRole("button", { name: "Revoke permanently" });
    if (await confirm.isEnabled()) await confirm.click(); // unless the page's refresh saw it first
    const alert = page.getByRole("alert").filter({ hasText: "Already revoked" });
    await alert.waitFor();
    expect(await alert.textContent()).toContain("stopped by the night shift");
    expect(await confirm.isDisabled()).toBe(true);
    await shot(page, "already-revoked", false);
  });

  it("refuses a resource_server key what it may not do, and shows it only the feed", async () => {
    const rs = await open();
    await signIn(rs, rsKey);
    expect(await rs.locator(".nav-disabled", { hasText: "Agents" }).getAttribute("aria-disabled")).toBe("true");
    await rs.locator('[data-state="connected"]').waitFor(); // its landing page is the feed
    await rs.goto(`${base}/console/#/agents`);
    const alert = rs.getByRole("alert");
    await alert.waitFor();
    expect(await alert.textContent()).toMatch(/Permission denied.*role resource_server may not call AgentService\.ListAgents/);
    await shot(rs, "refused");
  });

  it("lets an admin manage policies and create a key whose secret is shown once", async () => {
    await analyst.goto(`${base}/console/#/policies`);
    await analyst.locator('tr[data-policy="scope-abuse"]').waitFor();
    await analyst.getByLabel("Name").fill("low-trust");
    await analyst.getByLabel("Rule").selectOption("trust");
    await analyst.getByLabel(/Score below/).fill("40");
    await analyst.getByRole("button", { name: "Create policy" }).click();
    await analyst.locator('tr[data-policy="low-trust"]').waitFor();
    await shot(analyst, "policies");
    await analyst.getByRole("button", { name: "Delete policy scope-abuse" }).click();
    await analyst.getByRole("button", { name: "Confirm delete scope-abuse" }).click();
    await poll(() => analyst.locator('tr[data-policy="scope-abuse"]').count()).toBe(0);

    await analyst.goto(`${base}/console/#/keys`);
    await analyst.getByLabel("Name").fill("ci-issuer");
    await analyst.getByRole("button", { name: "Create key" }).click();
    const secret = await analyst.getByLabel("New API key secret").inputValue();
    expect(secret).toMatch(/^ak_/);
    await shot(analyst, "keys");
    await analyst.getByRole("button", { name: "I have stored it" }).click();
    expect(await analyst.content()).not.toContain(secret);
    const issuer = createClient(KeyService, h.as(undefined).connect.agents ? h.connectTransport : h.connectTransport);
    const created = (await issuer.listApiKeys({})).keys.find((k) => k.name === "ci-issuer")!;
    await analyst.getByRole("button", { name: "Revoke key ci-issuer" }).click();
    await analyst.getByRole("button", { name: "Confirm revoke ci-issuer" }).click();
    await analyst.locator(`tr[data-key-id="${created.keyId}"] .badge-revoked`).waitFor();
  });

  it("is readable on a 390 px phone", async () => {
    const phone = await open(390, 844);
    await signIn(phone, h.adminKey);
    await phone.locator("tbody tr[data-agent-id]").first().waitFor();
    // Nothing overflows sideways.
    expect(await phone.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(390);
    await shot(phone, "agents-390", false);
    await phone.goto(`${base}/console/#/agents/${agentId}`);
    await phone.getByRole("heading", { name: /billing-bot/ }).waitFor();
    await phone.locator(".timeline li").first().waitFor();
    expect(await phone.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(390);
    await shot(phone, "agent-390");
  });

  it("signs out and forgets the key", async () => {
    await analyst.getByRole("button", { name: "Sign out" }).click();
    await analyst.getByLabel("API key").waitFor();
    expect(await analyst.evaluate<string>("JSON.stringify(sessionStorage)")).not.toContain("ak_");
  });
});
