import { useState } from "preact/hooks";
import { Role } from "../../../gen/agentid/v1/key_pb.js";
import { can, roleName, whoMayDo, type Session } from "../api.js";
import { Card, ConfirmAction, CopyButton, ErrorBox, Time, useLoad } from "../ui.js";

const ROLES: Record<string, Role> = { issuer: Role.ISSUER, resource_server: Role.RESOURCE_SERVER, admin: Role.ADMIN };

export function KeysPage({ session }: { session: Session }) {
  const list = useLoad(async () => (await session.api.keys.listApiKeys({})).keys, [session]);
  const [form, setForm] = useState({ name: "", role: "issuer", audiences: "" });
  const [created, setCreated] = useState<{ name: string; keyId: string; secret: string }>();
  const [createError, setCreateError] = useState<unknown>();
  const [actionError, setActionError] = useState<unknown>();
  const [confirming, setConfirming] = useState<string>();
  const admin = can(session.role, "keys");

  return (
    <div class="page">
      <div class="page-head">
        <h1>API keys</h1>
      </div>
      {!admin && <p class="muted">Managing keys needs an {whoMayDo("keys")} key.</p>}
      {created && (
        <section class="secret-once" role="alert" aria-labelledby="secret-title">
          <h2 id="secret-title">Secret for “{created.name}”: copy it now</h2>
          <p>It is shown only this once; agentid stores only its hash.</p>
          <div class="secret-row">
            <label class="sr-only" for="new-secret">
              New API key secret
            </label>
            <input id="new-secret" class="mono" readOnly value={created.secret} onFocus={(e) => e.currentTarget.select()} />
            <CopyButton text={created.secret} label="Copy the new secret" />
          </div>
          <button type="button" class="btn btn-small" onClick={() => setCreated(undefined)}>
            I have stored it
          </button>
        </section>
      )}
      {list.error !== undefined && <ErrorBox error={list.error} />}
      {actionError !== undefined && <ErrorBox error={actionError} />}
      <div class="table-wrap">
        <table class="table responsive">
          <caption class="sr-only">API keys</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Audiences</th>
              <th scope="col">Created</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.data?.map((k) => (
              <tr key={k.keyId} data-key-id={k.keyId}>
                <td data-label="Name">
                  <div>
                    {k.name}
                    <div class="mono small muted">{k.keyId}</div>
                  </div>
                </td>
                <td data-label="Role">
                  <span class={`role role-${roleName(k.role)}`}>{roleName(k.role)?.replace("_", " ")}</span>
                </td>
                <td data-label="Audiences">{k.audiences.length ? k.audiences.join(", ") : <span class="muted">—</span>}</td>
                <td data-label="Created">
                  <div>
                    <Time ts={k.createdAt} />
                    <div class="mono small muted">{k.createdBy}</div>
                  </div>
                </td>
                <td data-label="Status">
                  {k.revokedAt ? (
                    <span class="badge badge-revoked" title="revoked">
                      Revoked <Time ts={k.revokedAt} />
                    </span>
                  ) : (
                    <span class="badge badge-active">Live</span>
                  )}
                </td>
                <td data-label="" class="actions">
                  {!k.revokedAt && (
                    <ConfirmAction
                      id={k.keyId}
                      confirming={confirming}
                      setConfirming={setConfirming}
                      label="Revoke"
                      confirmLabel={`Confirm revoke ${k.name}`}
                      ariaLabel={`Revoke key ${k.name}`}
                      disabled={!admin}
                      run={async () => {
                        await session.api.keys.revokeApiKey({ keyId: k.keyId });
                        list.reload();
                      }}
                      onError={setActionError}
                    />
                  )}
                  {k.keyId === session.principal.keyId && <span class="muted small"> (this session)</span>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {admin && (
        <Card title="New key">
          <form
            class="filters"
            onSubmit={async (e) => {
              e.preventDefault();
              setCreateError(undefined);
              try {
                const audiences = form.role === "resource_server" ? form.audiences.split(/[\s,]+/).filter(Boolean) : [];
                const res = await session.api.keys.createApiKey({ name: form.name.trim(), role: ROLES[form.role]!, audiences });
                setCreated({ name: res.key!.name, keyId: res.key!.keyId, secret: res.secret });
                setForm({ ...form, name: "", audiences: "" });
                list.reload();
              } catch (err) {
                setCreateError(err);
              }
            }}
          >
            <div class="field grow">
              <label for="key-name">Name</label>
              <input id="key-name" required maxLength={128} value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} />
            </div>
            <div class="field">
              <label for="key-role">Role</label>
              <select id="key-role" value={form.role} onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}>
                <option value="issuer">issuer</option>
                <option value="resource_server">resource server</option>
                <option value="admin">admin</option>
              </select>
            </div>
            {form.role === "resource_server" && (
              <div class="field grow">
                <label for="key-audiences">Audiences (comma-separated)</label>
                <input id="key-audiences" required value={form.audiences} placeholder="orders, billing" onInput={(e) => setForm({ ...form, audiences: e.currentTarget.value })} />
              </div>
            )}
            <div class="field field-button">
              <button type="submit" class="btn btn-primary">
                Create key
              </button>
            </div>
          </form>
          {createError !== undefined && <ErrorBox error={createError} />}
        </Card>
      )}
    </div>
  );
}
