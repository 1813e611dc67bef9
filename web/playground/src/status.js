// The status view: the daemon's `status` (jobs, sandbox features, configured limits) and a few
// gateway metrics, refreshed while the view is shown and the page is visible.
import * as api from "./api.js";
import { el, formatBytes, formatMs } from "./dom.js";

const REFRESH_MS = 5000;

function table(caption, rows) {
  return el(
    "table",
    { class: "facts-table" },
    el("caption", { text: caption }),
    el("tbody", {}, ...rows.map(([name, value]) =>
      el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: value })))),
  );
}

function yesNo(value) {
  return value ? "yes" : "no";
}

function limitText(name, value) {
  if (value === null || value === undefined) return "–";
  if (value === -1) return "unlimited";
  if (name.endsWith("memory_limit") || name.endsWith("file_size") || name.endsWith("max_size")) {
    return formatBytes(value);
  }
  if (name.endsWith("timeout") || name.endsWith("cpu_time")) return formatMs(value);
  return String(value);
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"],
    [Math.floor(s / 60) % 60, "min"], [s % 60, "s"]];
  return parts.filter(([n], i) => n > 0 || i === 3).map(([n, unit]) => `${n} ${unit}`).join(" ");
}

/** Parse Prometheus text: [{name, labels, value}]. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function sum(samples, name, filter = () => true) {
  return samples.filter((s) => s.name === name && filter(s.labels)).reduce((a, s) => a + s.value, 0);
}

export class StatusView {
  constructor(nodes) {
    this.nodes = nodes;
    this.timer = null;
    document.addEventListener("visibilitychange", () => this.schedule());
  }

  /** Start refreshing (the view is shown). */
  start() {
    this.shown = true;
    this.refresh();
  }

  /** Stop refreshing (the view is hidden). */
  stop() {
    this.shown = false;
    clearTimeout(this.timer);
  }

  schedule() {
    clearTimeout(this.timer);
    if (this.shown && document.visibilityState === "visible") {
      this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
    }
  }

  async refresh() {
    const [status, metrics] = await Promise.allSettled([api.status(), api.metrics()]);
    if (status.status === "fulfilled") this.showStatus(status.value);
    else this.nodes.status.replaceChildren(el("p", { class: "error", text: status.reason.message }));
    if (metrics.status === "fulfilled") this.showMetrics(parseMetrics(metrics.value));
    else this.nodes.metrics.replaceChildren(el("p", { class: "error", text: metrics.reason.message }));
    this.nodes.updated.textContent = `Updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`;
    this.schedule();
  }

  showStatus(status) {
    const jobs = status.jobs || {};
    const sandbox = status.sandbox || {};
    const limits = status.limits || {};
    this.nodes.status.replaceChildren(
      table("Daemon", [["Version", status.version ?? "–"], ["Uptime", duration(status.uptime || 0)]]),
      table("Jobs", [
        ["Running", String(jobs.running ?? "–")],
        ["Queued", String(jobs.queued ?? "–")],
        ["Completed", String(jobs.completed ?? "–")],
        ["Failed", String(jobs.failed ?? "–")],
        ...Object.entries(status.slots || {}).map(([k, v]) => [`Slots ${k}`, String(v)]),
      ]),
      table("Sandbox", [
        ["Cgroups", sandbox.cgroup ?? "–"],
        ["Seccomp filter", yesNo(sandbox.seccomp)],
        ["Network in jobs", yesNo(sandbox.network)],
      ]),
      table("Configured limits", Object.entries(limits).map(([k, v]) => [k, limitText(k, v)])),
    );
  }

  showMetrics(samples) {
    const requests = "pistond_gateway_requests_total";
    const latency = "pistond_gateway_request_duration_seconds";
    const jobs = samples.filter((s) => s.name === "pistond_gateway_jobs_total");
    const executeCount = sum(samples, `${latency}_count`, (l) => l.route === "/api/v2/execute");
    const executeSum = sum(samples, `${latency}_sum`, (l) => l.route === "/api/v2/execute");
    this.nodes.metrics.replaceChildren(
      table("Requests", [
        ["All requests", String(sum(samples, requests))],
        ["Runs (/api/v2/execute)", String(sum(samples, requests, (l) => l.route === "/api/v2/execute"))],
        ["Interactive sessions", String(sum(samples, requests, (l) => l.route === "/api/v2/connect"))],
        ["Server errors (5xx)", String(sum(samples, requests, (l) => l.code.startsWith("5")))],
        ["Mean run answer time", executeCount ? formatMs((executeSum / executeCount) * 1000) : "–"],
      ]),
      table("Jobs by outcome", jobs.length
        ? jobs.map((s) => [s.labels.status, String(s.value)])
        : [["(none yet)", "0"]]),
    );
  }
}
