// The result of `/execute`, one card per stage: status and message, exit code or signal, wall
// and CPU time, memory, stdout and stderr.
import { el, formatBytes, formatMs } from "./dom.js";

const STATUS_NAMES = {
  RE: "runtime error",
  SG: "killed by a signal",
  TO: "time limit",
  ML: "memory limit",
  OL: "stdout too long",
  EL: "stderr too long",
  XX: "sandbox error",
};

function stream(title, text, kind) {
  return el(
    "div",
    { class: `stream ${kind}` },
    el("h4", { text: title }),
    text ? el("pre", { "data-stream": kind, tabindex: "0", text }) : el("p", { class: "empty", text: "(empty)" }),
  );
}

function fact(name, value) {
  return [el("dt", { text: name }), el("dd", { text: value })];
}

function stageCard(name, stage) {
  const ok = stage.status === null || stage.status === undefined;
  const badge = ok ? "OK" : `${stage.status}`;
  const summary = ok ? "exited normally" : STATUS_NAMES[stage.status] || stage.status;
  const outcome = stage.signal ? `signal ${stage.signal}` : `exit code ${stage.code}`;
  return el(
    "article",
    { class: `stage ${ok ? "ok" : "failed"}`, "data-stage": name, "aria-label": `${name} stage` },
    el(
      "h3",
      {},
      `${name[0].toUpperCase()}${name.slice(1)} `,
      el("span", { class: `badge ${ok ? "ok" : "failed"}`, "data-status": badge, text: badge }),
      el("span", { class: "summary", text: ` ${summary}` }),
    ),
    stage.message ? el("p", { class: "message", "data-message": "", text: stage.message }) : null,
    el(
      "dl",
      { class: "facts" },
      ...fact("Outcome", outcome),
      ...fact("Wall time", formatMs(stage.wall_time)),
      ...fact("CPU time", formatMs(stage.cpu_time)),
      ...fact("Memory", formatBytes(stage.memory)),
    ),
    stream("stdout", stage.stdout, "stdout"),
    stream("stderr", stage.stderr, "stderr"),
  );
}

/** Show an `/execute` answer. */
export function showResult(container, result, elapsedMs) {
  const cards = [];
  const compileFailed = result.compile && result.compile.code !== 0;
  if (result.compile) cards.push(stageCard("compile", result.compile));
  if (compileFailed) {
    cards.push(el("p", { class: "note", text: "Run skipped: compilation failed." }));
  } else if (result.run) {
    cards.push(stageCard("run", result.run));
  }
  container.replaceChildren(
    el("h2", { id: "results-title", text: "Result" }),
    el("p", {
      class: "state",
      text: `${result.language} ${result.version} · answered in ${formatMs(elapsedMs)}`,
    }),
    ...cards,
  );
}

/** Show a refusal or failure instead of a result. */
export function showError(container, message) {
  container.replaceChildren(
    el("h2", { id: "results-title", text: "Result" }),
    el("p", { class: "error", role: "alert", "data-error": "", text: message }),
  );
}

/** Show that a run is under way. */
export function showRunning(container, label) {
  container.replaceChildren(
    el("h2", { id: "results-title", text: "Result" }),
    el("p", { class: "state busy", text: `Running ${label}…` }),
  );
}
