// SPDX-License-Identifier: Apache-2.0
// Alerts: list (filtered by status, paged with `next`) and acknowledge.

import { api } from "./api.js";
import { appendRows, button, byId, fillTable, formValues, problem, status, when } from "./dom.js";

let filters = {};
let next = null;

function row(alert) {
  const action =
    alert.status === "open"
      ? button("Acknowledge", () => acknowledge(alert), { "aria-label": `Acknowledge alert ${alert.kind} for ${alert.subject}` })
      : `by ${alert.acknowledged_by || "?"}`;
  return [when(alert.last_seen), alert.kind, alert.severity, alert.subject, `${alert.count} / ${alert.threshold}`, alert.status, action];
}

async function acknowledge(alert) {
  try {
    await api("POST", `/api/admin/alerts/${encodeURIComponent(alert.id)}/acknowledge`);
    status(`Alert ${alert.kind} for ${alert.subject} acknowledged.`);
    await load(false);
  } catch (error) {
    problem(error, "Could not acknowledge the alert");
  }
}

async function load(more) {
  try {
    const page = await api("GET", "/api/admin/alerts", { query: { ...filters, after: more ? next : undefined, limit: 50 } });
    (more ? appendRows : fillTable)(byId("alerts-table"), page.items, row, "No alerts.");
    next = page.next;
    byId("alerts-more").hidden = !next;
  } catch (error) {
    problem(error, "Could not load the alerts");
  }
}

export async function start() {
  const form = byId("alerts-filter");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters = formValues(form);
    load(false);
  });
  byId("alerts-more").addEventListener("click", () => load(true));
  filters = formValues(form);
  await load(false);
}
