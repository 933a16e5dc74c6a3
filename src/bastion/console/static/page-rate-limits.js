// SPDX-License-Identifier: Apache-2.0
// Rate-limit state of one identity: GET /api/admin/rate-limits/{identity}, reset with DELETE.
// The state is shown as the server describes it (a list of its fields), whatever their names.

import { ApiError, api } from "./api.js";
import { byId, el, problem, status } from "./dom.js";

let current = null;

function path(identity) {
  return `/api/admin/rate-limits/${encodeURIComponent(identity)}`;
}

function describe(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function show(identity, state) {
  const list = byId("limits-state");
  list.replaceChildren(el("dt", {}, "identity"), el("dd", {}, identity));
  for (const [name, value] of Object.entries(state || {})) list.append(el("dt", {}, name), el("dd", {}, describe(value)));
  byId("limits-result").hidden = false;
}

async function inspect(identity) {
  byId("limits-unavailable").hidden = true;
  try {
    show(identity, await api("GET", path(identity)));
    current = identity;
  } catch (error) {
    byId("limits-result").hidden = true;
    if (error instanceof ApiError && error.routeMissing) {
      const notice = byId("limits-unavailable");
      notice.textContent = "This server does not offer rate-limit state (GET /api/admin/rate-limits/… answered 404).";
      notice.hidden = false;
      return;
    }
    problem(error, "Could not read the rate-limit state");
  }
}

async function reset() {
  if (current === null) return;
  try {
    await api("DELETE", path(current));
    status(`Rate limits of ${current} reset.`);
    await inspect(current);
  } catch (error) {
    problem(error, "Could not reset the rate limits");
  }
}

export async function start() {
  byId("limits-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const identity = event.currentTarget.identity.value.trim();
    if (identity) inspect(identity);
  });
  byId("limits-reset").addEventListener("click", reset);
}
