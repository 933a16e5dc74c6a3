// SPDX-License-Identifier: Apache-2.0
// Overview: requests, denials and guard verdicts over time, from successive readings of /metrics
// (counters since the server started; each point is the increase since the previous reading).

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { byId, el, fillTable, problem } from "./dom.js";
import { parseMetrics, reading } from "./metrics.js";

const KEEP = 60; // points per chart
const DEFAULT_SECONDS = 5;

function interval() {
  // ?every=N (1..60 seconds) for a faster or slower reading than the default.
  const every = Number(new URLSearchParams(window.location.search).get("every"));
  return Number.isInteger(every) && every >= 1 && every <= 60 ? every : DEFAULT_SECONDS;
}

const history = [];

function deltas(pick) {
  const points = [];
  for (let i = 1; i < history.length; i += 1) {
    points.push({ t: history[i].t, v: Math.max(0, pick(history[i].r) - pick(history[i - 1].r)) });
  }
  return points;
}

function draw() {
  const latest = history[history.length - 1].r;
  const actions = [...new Set(history.flatMap((h) => Object.keys(h.r.guard)))].sort();
  const guardSeries = actions.length
    ? actions.map((action) => ({ name: action, points: deltas((r) => r.guard[action] || 0) }))
    : [{ name: "verdicts", points: deltas(() => 0) }];
  if (history.length > 1) {
    lineChart(byId("chart-requests"), "Requests", [{ name: "requests", points: deltas((r) => r.requests) }]);
    lineChart(byId("chart-denials"), "Denials", [
      { name: "401/403/429 answers", points: deltas((r) => r.denials) },
      { name: "rate limited", points: deltas((r) => r.rateLimited) },
    ]);
    lineChart(byId("chart-guard"), "Guardrail verdicts", guardSeries);
  }
  const rows = [
    ["Requests answered", latest.requests],
    ["Denials (401, 403, 429)", latest.denials],
    ["Credentials refused", latest.authFailures],
    ["Rate-limit rejections", latest.rateLimited],
    ...Object.entries(latest.guard).map(([action, value]) => [`Guard verdicts: ${action}`, value]),
  ];
  fillTable(byId("totals"), rows, ([name, value]) => [el("th", { scope: "row" }, name), el("td", {}, String(value))]);
}

async function read() {
  try {
    const text = await api("GET", "/metrics", { accept: "text/plain", text: true });
    history.push({ t: Date.now(), r: reading(parseMetrics(text)) });
    if (history.length > KEEP + 1) history.shift();
    draw();
    byId("main").dataset.readings = String(history.length);
  } catch (error) {
    problem(error, "Could not read the metrics");
  }
}

export async function start() {
  await read();
  window.setInterval(read, interval() * 1000);
}
