// SPDX-License-Identifier: Apache-2.0
// Blocklist: blocks in force, place one, lift one. A block that could lock out the administrators
// is refused with 409; the page asks before repeating it with "force".

import { api } from "./api.js";
import { button, byId, fillTable, formValues, problem, status, when } from "./dom.js";

function liftPath(block) {
  // Networks are lifted as .../<kind>/<address>/<prefix length>.
  const [address, prefix] = block.value.split("/");
  const tail = prefix === undefined ? encodeURIComponent(address) : `${encodeURIComponent(address)}/${encodeURIComponent(prefix)}`;
  return `/api/admin/blocklist/${encodeURIComponent(block.kind)}/${tail}`;
}

function row(block) {
  return [block.kind, block.value, block.reason, when(block.created_at), when(block.until), button("Lift", () => lift(block), { "aria-label": `Lift the block on ${block.value}` })];
}

async function lift(block) {
  try {
    await api("DELETE", liftPath(block));
    status(`Block on ${block.value} lifted.`);
    await load();
  } catch (error) {
    problem(error, "Could not lift the block");
  }
}

async function place(values, force = false) {
  const body = { kind: values.kind, value: values.value, reason: values.reason || "manual", force };
  body.seconds = values.seconds ? Number(values.seconds) : null;
  try {
    await api("POST", "/api/admin/blocklist", { body });
    status(`${values.value} blocked.`);
    await load();
  } catch (error) {
    if (error.status === 409 && !force && window.confirm(`${error.message}. Block anyway?`)) {
      await place(values, true);
      return;
    }
    problem(error, "Could not place the block");
  }
}

async function load() {
  try {
    const page = await api("GET", "/api/admin/blocklist");
    fillTable(byId("blocks-table"), page.items, row, "No blocks in force.");
  } catch (error) {
    problem(error, "Could not load the blocklist");
  }
}

export async function start() {
  const form = byId("block-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    place(formValues(form));
  });
  await load();
}
