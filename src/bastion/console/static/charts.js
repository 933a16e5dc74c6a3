// SPDX-License-Identifier: Apache-2.0
// Line charts drawn by hand in SVG (no chart library, nothing from another origin). Colours and
// strokes come from classes in console.css: the page CSP refuses inline style attributes.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 960;
const HEIGHT = 200;
const PAD = { left: 44, right: 12, top: 12, bottom: 28 };

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// The axis top: 4, 10, 20, 40, 100, 200, 400, ... so the half-way tick is a whole number too.
function niceCeiling(value) {
  let step = 4;
  while (step < value) step = String(step).startsWith("4") ? step * 2.5 : step * 2;
  return step;
}

function clock(time) {
  return new Date(time).toISOString().slice(11, 19);
}

// series: [{name, points: [{t, v}]}]; each series gets class series-<index> for its colour.
export function lineChart(figure, title, series) {
  const points = series.flatMap((s) => s.points);
  if (points.length < 1) {
    figure.replaceChildren(Object.assign(document.createElement("p"), { textContent: figure.dataset.empty || "No data yet." }));
    return;
  }
  const t0 = Math.min(...points.map((p) => p.t));
  const t1 = Math.max(...points.map((p) => p.t), t0 + 1);
  const top = niceCeiling(Math.max(...points.map((p) => p.v)));
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart-svg" });
  const latest = series.map((s) => `${s.name} ${s.points.length ? s.points[s.points.length - 1].v : 0}`).join(", ");
  chart.append(svg("title", {}, `${title}: latest ${latest}`));
  chart.append(svg("line", { x1: PAD.left, y1: y(0), x2: WIDTH - PAD.right, y2: y(0), class: "axis" }));
  chart.append(svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: y(0), class: "axis" }));
  for (const v of [0, top / 2, top]) {
    chart.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, Math.round(v)));
  }
  chart.append(svg("text", { x: PAD.left, y: HEIGHT - 8, class: "tick" }, clock(t0)));
  chart.append(svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 8, class: "tick", "text-anchor": "end" }, clock(t1)));
  series.forEach((s, index) => {
    if (!s.points.length) return;
    const path = s.points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    chart.append(svg("path", { d: path, class: `line series-${index}` }));
    for (const p of s.points) chart.append(svg("circle", { cx: x(p.t), cy: y(p.v), r: 2.5, class: `dot series-${index}` }));
  });
  // The highest point drawn, for whoever checks the chart without looking at it (the tests).
  figure.dataset.peak = String(Math.max(...points.map((p) => p.v)));
  const legend = document.createElement("figcaption");
  series.forEach((s, index) => {
    const key = document.createElement("span");
    key.className = `key series-${index}`;
    key.textContent = `${s.name}: ${s.points.length ? s.points[s.points.length - 1].v : 0} in the last interval`;
    legend.append(key);
  });
  figure.replaceChildren(chart, legend);
}
