// SPDX-License-Identifier: Apache-2.0
// Users: GET /api/admin/users (keyset pages, ?email= exact search). A server without that listing
// answers 404: the page says so and still offers lookup by id and the per-account actions.

import { ApiError, api } from "./api.js";
import { appendRows, button, byId, fillTable, formValues, problem, status, when } from "./dom.js";

let filters = {};
let next = null;

function actions(user) {
  const who = user.email || user.id;
  const toggle = user.is_active
    ? button("Disable", () => act(user, "disable", `${who} disabled.`), { "aria-label": `Disable ${who}` })
    : button("Enable", () => act(user, "enable", `${who} enabled.`), { "aria-label": `Enable ${who}` });
  return [
    toggle,
    " ",
    button("End sessions", () => act(user, "logout-all", `Every session of ${who} ended.`), { "aria-label": `End every session of ${who}` }),
    " ",
    button("Unlock", () => act(user, "unlock", `${who} unlocked.`), { "aria-label": `Unlock ${who}` }),
  ];
}

function row(user) {
  const cell = document.createElement("td");
  cell.append(...actions(user).map((part) => (typeof part === "string" ? document.createTextNode(part) : part)));
  return [user.email, user.role, user.is_active ? "yes" : "no", when(user.created_at), user.id, cell];
}

async function act(user, action, done) {
  try {
    await api("POST", `/api/admin/users/${encodeURIComponent(user.id)}/${action}`);
    status(done);
    await load(false);
  } catch (error) {
    problem(error, `Could not ${action.replace("-", " ")} the account`);
  }
}

function unavailable(message) {
  const notice = byId("users-unavailable");
  notice.textContent = message;
  notice.hidden = false;
}

async function load(more) {
  try {
    const page = await api("GET", "/api/admin/users", { query: { ...filters, after: more ? next : undefined, limit: 50 } });
    (more ? appendRows : fillTable)(byId("users-table"), page.items, row, filters.email ? "No account has that e-mail." : "No accounts.");
    next = page.next || null;
    byId("users-more").hidden = !next;
  } catch (error) {
    if (error instanceof ApiError && error.routeMissing) {
      fillTable(byId("users-table"), [], row, "The account list is not available on this server.");
      unavailable(
        "This server does not offer the account list yet (GET /api/admin/users answered 404). " +
          "Look an account up by its id below; its actions still work.",
      );
      return;
    }
    problem(error, "Could not load the accounts");
  }
}

async function lookup(id) {
  try {
    const user = await api("GET", `/api/admin/users/${encodeURIComponent(id)}`);
    fillTable(byId("users-table"), [user], row);
    byId("users-more").hidden = true;
  } catch (error) {
    problem(error, "Could not find that account");
  }
}

export async function start() {
  const form = byId("users-filter");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters = formValues(form);
    load(false);
  });
  byId("users-lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = formValues(event.currentTarget).user_id;
    if (id) lookup(id);
  });
  byId("users-more").addEventListener("click", () => load(true));
  await load(false);
}
