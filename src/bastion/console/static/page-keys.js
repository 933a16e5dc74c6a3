// SPDX-License-Identifier: Apache-2.0
// API keys: every managed key (GET /api/admin/keys, optionally one owner's), revoke one.

import { api } from "./api.js";
import { button, byId, fillTable, formValues, problem, status, when } from "./dom.js";

let filters = {};

function state(key) {
  if (key.revoked_at) return `revoked ${when(key.revoked_at)}`;
  if (key.expires_at && new Date(key.expires_at) <= new Date()) return "expired";
  return "active";
}

function row(key) {
  const action = key.revoked_at ? "—" : button("Revoke", () => revoke(key), { "aria-label": `Revoke key ${key.name}` });
  return [key.name, key.id, key.user_id, key.role, key.scopes.join(", ") || "—", when(key.created_at), when(key.last_used_at), state(key), action];
}

async function revoke(key) {
  if (!window.confirm(`Revoke the key "${key.name}"? Clients using it stop working at once.`)) return;
  try {
    await api("DELETE", `/api/keys/${encodeURIComponent(key.id)}`);
    status(`Key ${key.name} revoked.`);
    await load();
  } catch (error) {
    problem(error, "Could not revoke the key");
  }
}

async function load() {
  try {
    const page = await api("GET", "/api/admin/keys", { query: filters });
    fillTable(byId("keys-table"), page.items, row, "No keys.");
  } catch (error) {
    problem(error, "Could not load the keys");
  }
}

export async function start() {
  const form = byId("keys-filter");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters = formValues(form);
    load();
  });
  await load();
}
