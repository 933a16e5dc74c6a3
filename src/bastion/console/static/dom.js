// SPDX-License-Identifier: Apache-2.0
// Building the page from data without innerHTML: every value becomes a text node, so nothing the
// API returns (an e-mail, a user agent in an audit record) can ever be read as markup.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

export function status(message, kind = "info") {
  const node = byId("status");
  node.textContent = message;
  node.dataset.kind = kind;
}

export function problem(error, what) {
  const reference = error.requestId ? ` (request ${error.requestId})` : "";
  status(`${what}: ${error.message}${reference}`, "error");
}

// Replace a table's body with one row per item; an empty list says so in a full-width cell.
export function fillTable(table, items, row, empty = "Nothing to show.") {
  const body = table.tBodies[0];
  body.replaceChildren();
  appendRows(table, items, row, empty);
}

export function appendRows(table, items, row, empty = "Nothing to show.") {
  const body = table.tBodies[0];
  if (!items.length && !body.rows.length) {
    const columns = table.tHead.rows[0].cells.length;
    body.append(el("tr", {}, el("td", { colspan: columns, class: "empty" }, empty)));
    return;
  }
  const isCell = (cell) => cell instanceof Node && (cell.tagName === "TD" || cell.tagName === "TH");
  for (const item of items) body.append(el("tr", {}, row(item).map((cell) => (isCell(cell) ? cell : el("td", {}, cell)))));
}

export function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().replace("T", " ").slice(0, 19);
}

export function formValues(form) {
  const values = {};
  for (const [name, value] of new FormData(form).entries()) {
    const text = String(value).trim();
    if (text) values[name] = text;
  }
  return values;
}

// A datetime-local value read as UTC, in the ISO form the API takes.
export function utc(value) {
  return value ? `${value.length === 16 ? `${value}:00` : value}Z` : undefined;
}

export function button(label, onclick, attributes = {}) {
  return el("button", { type: "button", onclick, ...attributes }, label);
}
