// SPDX-License-Identifier: Apache-2.0
// Reading the Prometheus text exposition format that GET /metrics answers: just the samples
// (name, labels, value); comments, HELP and TYPE lines are skipped.

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const label of (match[3] || "").matchAll(LABEL)) {
      labels[label[1]] = label[2].replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const value = Number(match[4]);
    if (Number.isFinite(value)) samples.push({ name: match[1], labels, value });
  }
  return samples;
}

// The sum of one metric's samples, optionally only those whose labels pass `keep`.
export function total(samples, name, keep = () => true) {
  return samples.filter((s) => s.name === name && keep(s.labels)).reduce((sum, s) => sum + s.value, 0);
}

export const DENIED = new Set(["401", "403", "429"]);

// The figures the overview charts: one reading of the counters.
export function reading(samples) {
  const guard = {};
  for (const s of samples) {
    if (s.name !== "bastion_guard_verdicts_total") continue;
    guard[s.labels.action || "other"] = (guard[s.labels.action || "other"] || 0) + s.value;
  }
  return {
    requests: total(samples, "bastion_requests_total"),
    denials: total(samples, "bastion_requests_total", (labels) => DENIED.has(labels.status)),
    authFailures: total(samples, "bastion_auth_failures_total"),
    rateLimited: total(samples, "bastion_rate_limit_rejections_total"),
    guard,
  };
}
