import { useState } from "preact/hooks";
import { PolicyKind, type Policy } from "../../../gen/agentid/v1/policy_pb.js";
import { can, whoMayDo, type Session } from "../api.js";
import { Card, ConfirmAction, ErrorBox, Time, useLoad } from "../ui.js";

function span(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function describe(p: Policy): string {
  switch (p.kind) {
    case PolicyKind.SCOPE_VIOLATIONS:
      return `more than ${p.threshold} scope violations within ${span(Number(p.window?.seconds ?? 0n))}`;
    case PolicyKind.TRUST_BELOW:
      return `trust score below ${p.threshold}`;
    default:
      return "unknown rule";
  }
}

export function PoliciesPage({ session }: { session: Session }) {
  const list = useLoad(async () => (await session.api.policies.listPolicies({})).policies, [session]);
  const [form, setForm] = useState({ name: "", kind: "scope", threshold: "5", windowMinutes: "60" });
  const [createError, setCreateError] = useState<unknown>();
  const [actionError, setActionError] = useState<unknown>();
  const [confirming, setConfirming] = useState<string>();
  const admin = can(session.role, "policies");

  return (
    <div class="page">
      <div class="page-head">
        <h1>Policies</h1>
      </div>
      {!admin && <p class="muted">Managing policies needs an {whoMayDo("policies")} key.</p>}
      <p class="muted">Policies revoke agents automatically the moment the activity that crosses their threshold arrives.</p>
      {list.error !== undefined && <ErrorBox error={list.error} />}
      {actionError !== undefined && <ErrorBox error={actionError} />}
      <div class="table-wrap">
        <table class="table responsive">
          <caption class="sr-only">Policies</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Revokes when</th>
              <th scope="col">Created</th>
              <th scope="col">By</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.data?.map((p) => (
              <tr key={p.name} data-policy={p.name}>
                <td data-label="Name" class="mono">
                  {p.name}
                </td>
                <td data-label="Revokes when">{describe(p)}</td>
                <td data-label="Created">
                  <Time ts={p.createdAt} />
                </td>
                <td data-label="By" class="mono">
                  {p.createdBy}
                </td>
                <td data-label="" class="actions">
                  <ConfirmAction
                    id={p.name}
                    confirming={confirming}
                    setConfirming={setConfirming}
                    label="Delete"
                    confirmLabel={`Confirm delete ${p.name}`}
                    ariaLabel={`Delete policy ${p.name}`}
                    disabled={!admin}
                    run={async () => {
                      await session.api.policies.deletePolicy({ name: p.name });
                      list.reload();
                    }}
                    onError={setActionError}
                  />
                </td>
              </tr>
            ))}
            {list.data?.length === 0 && (
              <tr>
                <td colSpan={5} class="empty">
                  No policies.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {admin && (
        <Card title="New policy">
          <form
            class="filters"
            onSubmit={async (e) => {
              e.preventDefault();
              setCreateError(undefined);
              try {
                const scope = form.kind === "scope";
                await session.api.policies.createPolicy({
                  policy: {
                    name: form.name.trim(),
                    kind: scope ? PolicyKind.SCOPE_VIOLATIONS : PolicyKind.TRUST_BELOW,
                    threshold: Number(form.threshold),
                    window: scope ? { seconds: BigInt(Math.round(Number(form.windowMinutes) * 60)) } : undefined,
                  },
                });
                setForm({ ...form, name: "" });
                list.reload();
              } catch (err) {
                setCreateError(err);
              }
            }}
          >
            <div class="field grow">
              <label for="policy-name">Name</label>
              <input id="policy-name" required pattern="[a-z0-9-]{1,64}" title="1 to 64 of a-z, 0-9 and -" value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} />
            </div>
            <div class="field">
              <label for="policy-kind">Rule</label>
              <select id="policy-kind" value={form.kind} onChange={(e) => setForm({ ...form, kind: e.currentTarget.value })}>
                <option value="scope">Scope violations in a window</option>
                <option value="trust">Trust score below</option>
              </select>
            </div>
            <div class="field">
              <label for="policy-threshold">{form.kind === "scope" ? "More than (violations)" : "Score below (1–100)"}</label>
              <input id="policy-threshold" type="number" min={1} max={form.kind === "scope" ? undefined : 100} required value={form.threshold} onInput={(e) => setForm({ ...form, threshold: e.currentTarget.value })} />
            </div>
            {form.kind === "scope" && (
              <div class="field">
                <label for="policy-window">Window (minutes)</label>
                <input id="policy-window" type="number" min={1} max={43200} required value={form.windowMinutes} onInput={(e) => setForm({ ...form, windowMinutes: e.currentTarget.value })} />
              </div>
            )}
            <div class="field field-button">
              <button type="submit" class="btn btn-primary">
                Create policy
              </button>
            </div>
          </form>
          {createError !== undefined && <ErrorBox error={createError} />}
        </Card>
      )}
    </div>
  );
}
