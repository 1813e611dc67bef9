// The playground page: language and version from `/api/v2/runtimes`, the files, stdin,
// arguments and limits, a run to completion (`/api/v2/execute`) or an interactive session
// (`/api/v2/connect`), share links, examples, and the status view.
import "./playground.css";
import * as api from "./api.js";
import { byId, el } from "./dom.js";
import { InteractiveSession, closeText } from "./interactive.js";
import { defaultFileName, languageLoader } from "./languages.js";
import { showError, showResult, showRunning } from "./results.js";
import { decodeProgram, encodeProgram, isShared } from "./share.js";
import { StatusView } from "./status.js";
import { Workspace } from "./workspace.js";

const MIB = 1024 * 1024;

class Playground {
  constructor() {
    this.runtimes = [];
    this.examples = [];
    this.example = null;
    this.session = null;
    this.running = null;
    this.workspace = new Workspace(
      {
        editor: byId("editor"), tabs: byId("file-tabs"), name: byId("file-name"),
        main: byId("file-main"), add: byId("file-add"), remove: byId("file-remove"),
      },
      () => this.run(),
    );
    this.status = new StatusView({
      status: byId("status-body"), metrics: byId("metrics-body"), updated: byId("status-updated"),
    });
    this.workspace.setFiles([{ name: "main.txt", content: "" }]);
    this.wire();
  }

  wire() {
    byId("program-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
    byId("language").addEventListener("change", () => this.languageChanged());
    byId("version").addEventListener("change", () => this.applyMode());
    byId("mode").addEventListener("change", () => this.modeChanged());
    byId("example").addEventListener("click", () => this.loadExample());
    byId("share").addEventListener("click", () => this.share());
    document.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && !event.defaultPrevented) {
        event.preventDefault();
        this.run();
      }
    });
    window.addEventListener("hashchange", () => this.openShared());
    for (const tab of document.querySelectorAll(".views [role=tab]")) {
      tab.addEventListener("click", () => this.showView(tab.id));
      tab.addEventListener("keydown", (event) => {
        if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
        const other = [...document.querySelectorAll(".views [role=tab]")].find((t) => t !== tab);
        this.showView(other.id);
        other.focus();
      });
    }
    byId("console-input").addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendLine();
    });
    byId("console-eof").addEventListener("click", () => {
      this.session?.eof();
      this.consoleEvent("stdin closed (EOF sent)");
      this.setConsoleInput(false);
    });
    byId("console-signal-send").addEventListener("click", () => {
      const name = byId("console-signal").value;
      this.session?.signal(name);
      this.consoleEvent(`${name} sent`);
    });
    byId("console-kill").addEventListener("click", () => {
      this.session?.kill();
      this.consoleEvent("SIGKILL sent");
    });
    byId("console-close").addEventListener("click", () => this.session?.close());
  }

  async start() {
    try {
      this.runtimes = await api.runtimes();
    } catch (error) {
      this.pageError(`Runtimes could not be listed: ${error.message}`);
      byId("language").replaceChildren(el("option", { value: "", text: "unavailable" }));
      return;
    }
    try {
      this.examples = (await api.examples()).examples;
    } catch {
      this.examples = [];
    }
    this.fillLanguages();
    if (isShared(location.hash)) {
      await this.openShared();
    } else {
      const preferred = ["python", "javascript", "bash"].find((l) => this.hasLanguage(l));
      if (preferred) byId("language").value = preferred;
      await this.languageChanged();
    }
    document.body.dataset.ready = "true";
  }

  hasLanguage(language) {
    return this.runtimes.some((runtime) => runtime.language === language);
  }

  fillLanguages() {
    const languages = [...new Set(this.runtimes.map((runtime) => runtime.language))].sort();
    byId("language").replaceChildren(
      ...languages.map((language) => {
        const aliases = this.runtimes.find((r) => r.language === language).aliases;
        const label = aliases.length ? `${language} (${aliases.join(", ")})` : language;
        return el("option", { value: language, text: label });
      }),
    );
    if (!languages.length) this.pageError("No runtime is installed on this server.");
  }

  fillVersions(language, wanted) {
    const versions = this.runtimes.filter((r) => r.language === language).map((r) => r.version);
    const select = byId("version");
    select.replaceChildren(...versions.map((v) => el("option", { value: v, text: v })));
    if (wanted && !versions.includes(wanted)) {
      select.append(el("option", { value: wanted, text: `${wanted} (from the link)` }));
    }
    select.value = wanted || this.newest(versions);
  }

  newest(versions) {
    const parts = (v) => v.split(/[.+-]/).map((p) => Number.parseInt(p, 10) || 0);
    return [...versions].sort((a, b) => {
      const [x, y] = [parts(a), parts(b)];
      for (let i = 0; i < Math.max(x.length, y.length); i += 1) {
        if ((x[i] || 0) !== (y[i] || 0)) return (y[i] || 0) - (x[i] || 0);
      }
      return 0;
    })[0];
  }

  runtime() {
    const language = byId("language").value;
    const version = byId("version").value;
    return this.runtimes.find((r) => r.language === language && r.version === version)
      || this.runtimes.find((r) => r.language === language) || null;
  }

  async languageChanged() {
    const pristine = this.isPristine();
    this.fillVersions(byId("language").value);
    await this.applyMode();
    if (pristine) this.loadExample();
  }

  async applyMode() {
    const runtime = this.runtime();
    const load = runtime && languageLoader(runtime);
    const language = runtime?.language;
    let mode = [];
    if (load) {
      try {
        mode = await load();
      } catch (error) {
        console.warn("syntax mode not loaded:", error);
      }
    }
    if (byId("language").value === language) this.workspace.setMode(mode);
  }

  exampleFor(runtime) {
    const pkg = runtime.runtime || runtime.language;
    const mine = this.examples.filter((e) => e.language === runtime.language);
    return mine.find((e) => e.package === pkg && e.version === runtime.version)
      || mine.find((e) => e.package === pkg) || mine[0] || null;
  }

  isPristine() {
    const files = this.workspace.files();
    if (files.length !== 1) return false;
    const text = files[0].content;
    return !text.trim() || (this.example !== null && text === this.example);
  }

  loadExample() {
    const runtime = this.runtime();
    if (!runtime) return;
    const example = this.exampleFor(runtime);
    const name = example ? example.name : defaultFileName(runtime);
    const content = example ? example.content : "";
    this.example = content;
    this.workspace.setFiles([{ name, content }]);
  }

  program() {
    const args = byId("args").value.split("\n");
    if (args.length && args[args.length - 1] === "") args.pop();
    return {
      language: byId("language").value,
      version: byId("version").value,
      files: this.workspace.files(),
      stdin: byId("stdin").value,
      args,
    };
  }

  limits() {
    const limits = {};
    const number = (id) => {
      const input = byId(id);
      const value = input.valueAsNumber;
      return input.value !== "" && Number.isFinite(value) && value > 0 ? value : null;
    };
    const timeout = number("run-timeout");
    const cpu = number("run-cpu-time");
    const memory = number("run-memory");
    const compile = number("compile-timeout");
    if (timeout) limits.run_timeout = Math.round(timeout);
    if (cpu) limits.run_cpu_time = Math.round(cpu);
    if (memory) limits.run_memory_limit = Math.round(memory * MIB);
    if (compile) limits.compile_timeout = Math.round(compile);
    return limits;
  }

  run() {
    if (!byId("language").value) return;
    if (byId("mode").value === "interactive") this.startInteractive();
    else this.runBatch();
  }

  async runBatch() {
    this.running?.abort();
    const controller = new AbortController();
    this.running = controller;
    const program = this.program();
    const results = byId("results");
    showRunning(results, `${program.language} ${program.version}`);
    byId("run").setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      const result = await api.execute({ ...program, ...this.limits() }, controller.signal);
      showResult(results, result, performance.now() - started);
    } catch (error) {
      if (error.name !== "AbortError") showError(results, error.message);
    } finally {
      if (this.running === controller) {
        this.running = null;
        byId("run").removeAttribute("aria-busy");
      }
    }
  }

  modeChanged() {
    const interactive = byId("mode").value === "interactive";
    byId("results").hidden = interactive;
    byId("console").hidden = !interactive;
    byId("run").textContent = interactive ? "Start" : "Run";
  }

  startInteractive() {
    this.session?.close();
    const program = this.program();
    const output = byId("console-output");
    output.replaceChildren();
    byId("console-state").textContent = "Connecting…";
    const session = new InteractiveSession(api.connectUrl(), { ...program, ...this.limits() }, {
      runtime: (frame) => {
        byId("console-state").textContent = `Running ${frame.language} ${frame.version}`;
        this.consoleEvent(`runtime ${frame.language} ${frame.version}`);
      },
      stage: (frame) => this.consoleEvent(`${frame.stage} stage started`),
      data: (stream, text) => this.consoleText(stream, text),
      exit: (frame) => {
        const how = frame.signal ? `signal ${frame.signal}` : `exit code ${frame.code}`;
        this.consoleEvent(`${frame.stage} stage ended: ${how}`, "exit");
      },
      error: (message) => this.consoleEvent(`error: ${message}`, "error"),
      close: (code, reason) => {
        if (this.session !== session) return;
        this.session = null;
        const text = closeText(code, reason);
        byId("console-state").textContent = text;
        this.consoleEvent(text, code === 4999 ? "closed" : "closed error");
        this.setConsoleControls(false);
      },
    });
    this.session = session;
    this.setConsoleControls(true);
    byId("console-line").focus();
  }

  setConsoleControls(enabled) {
    for (const id of ["console-signal", "console-signal-send", "console-kill", "console-close"]) {
      byId(id).disabled = !enabled;
    }
    this.setConsoleInput(enabled);
  }

  setConsoleInput(enabled) {
    for (const id of ["console-line", "console-send", "console-eof"]) byId(id).disabled = !enabled;
  }

  sendLine() {
    const input = byId("console-line");
    if (!this.session) return;
    this.session.write(`${input.value}\n`);
    this.consoleText("stdin", `${input.value}\n`);
    input.value = "";
  }

  consoleText(stream, text) {
    const output = byId("console-output");
    output.append(el("span", { class: stream, "data-stream": stream, text }));
    output.scrollTop = output.scrollHeight;
  }

  consoleEvent(text, kind = "") {
    this.consoleText("event", `— ${text}\n`);
    if (kind) byId("console-output").lastChild.classList.add(...kind.split(" "));
  }

  share() {
    const url = new URL(location.href);
    url.hash = encodeProgram(this.program());
    history.replaceState(null, "", url);
    const box = byId("share-box");
    const field = byId("share-url");
    box.hidden = false;
    field.value = url.href;
    field.select();
    const note = byId("share-note");
    note.textContent = "";
    navigator.clipboard?.writeText(url.href).then(
      () => { note.textContent = "Copied to the clipboard."; },
      () => { note.textContent = "Select and copy the link."; },
    );
  }

  async openShared() {
    if (!isShared(location.hash)) return;
    let program;
    try {
      program = decodeProgram(location.hash);
    } catch (error) {
      this.pageError(error.message);
      return;
    }
    this.pageError("");
    if (!this.hasLanguage(program.language)) {
      this.pageError(`The link's language ${program.language} is not installed here.`);
      byId("language").append(el("option", { value: program.language, text: program.language }));
    }
    byId("language").value = program.language;
    this.fillVersions(program.language, program.version);
    this.workspace.setFiles(program.files);
    this.example = null;
    byId("stdin").value = program.stdin;
    byId("args").value = program.args.join("\n");
    await this.applyMode();
  }

  pageError(text) {
    const node = byId("page-error");
    node.textContent = text;
    node.hidden = !text;
  }

  showView(tabId) {
    for (const tab of document.querySelectorAll(".views [role=tab]")) {
      const selected = tab.id === tabId;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      byId(tab.getAttribute("aria-controls")).hidden = !selected;
    }
    if (tabId === "view-tab-status") this.status.start();
    else this.status.stop();
  }
}

new Playground().start();
