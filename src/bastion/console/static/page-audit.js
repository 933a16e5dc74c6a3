// SPDX-License-Identifier: Apache-2.0
// Audit search: the filters of GET /api/admin/audit, newest first, older pages through `next`.

import { api } from "./api.js";
import { appendRows, byId, fillTable, formValues, problem, utc, when } from "./dom.js";

let filters = {};
let next = null;

function row(record) {
  return [
    when(record.timestamp),
    record.event_type,
    record.result,
    record.actor_id ? `${record.actor_type || ""} ${record.actor_id}`.trim() : "—",
    record.ip_address || "—",
    record.route ? `${record.method || ""} ${record.route}`.trim() : "—",
    record.status_code ?? "—",
  ];
}

async function load(more) {
  try {
    const page = await api("GET", "/api/admin/audit", { query: { ...filters, after: more ? next : undefined, limit: 50 } });
    (more ? appendRows : fillTable)(byId("audit-table"), page.items, row, "No records match.");
    next = page.next;
    byId("audit-more").hidden = !next;
  } catch (error) {
    problem(error, "Could not search the audit log");
  }
}

function read(form) {
  const values = formValues(form);
  values.since = utc(values.since);
  values.until = utc(values.until);
  return values;
}

export async function start() {
  const form = byId("audit-filter");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters = read(form);
    load(false);
  });
  byId("audit-more").addEventListener("click", () => load(true));
  await load(false);
}
