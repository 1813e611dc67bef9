// The files of the program: one CodeMirror editor, one EditorState per file, a tab per file, a
// main file (sent first, so the runtime runs it), and the language mode shared by all files.
//
// The editor lives in a shadow root: there CodeMirror's styles go into constructed style sheets
// (adoptedStyleSheets) instead of <style> elements, so the page's Content-Security-Policy needs
// no 'unsafe-inline' and no nonce for styles.
import { basicSetup } from "codemirror";
import { Compartment, EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { indentWithTab } from "@codemirror/commands";
import { el } from "./dom.js";

const THEME = EditorView.theme({
  "&": { minHeight: "16rem", maxHeight: "70vh", backgroundColor: "#ffffff", color: "#1b1d23" },
  "&.cm-focused": { outline: "3px solid #1f5fbf" },
  ".cm-scroller": { fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace', fontSize: "0.9rem" },
  ".cm-content": { minHeight: "16rem" },
});

export class Workspace {
  /**
   * @param {object} nodes  `editor`, `tabs`, `name`, `main`, `add`, `remove` elements.
   * @param {() => void} onRun  called for Ctrl/Cmd+Enter inside the editor.
   */
  constructor(nodes, onRun) {
    this.nodes = nodes;
    this.language = new Compartment();
    this.mode = [];
    this.extensions = [
      Prec.highest(keymap.of([{ key: "Mod-Enter", run: () => { onRun(); return true; } }])),
      basicSetup,
      keymap.of([indentWithTab]),
      EditorView.contentAttributes.of({ "aria-label": "Code editor" }),
      // The help text lives outside the shadow root, so it is named in words, not by id.
      EditorView.contentAttributes.of({ "aria-description": "Tab indents; Esc then Tab leaves" }),
      EditorView.lineWrapping,
      THEME,
    ];
    this.entries = [];
    this.active = 0;
    const shadow = nodes.editor.attachShadow({ mode: "open" });
    const mount = document.createElement("div");
    shadow.append(mount);
    this.view = new EditorView({ parent: mount, root: shadow, state: this.newState("") });
    nodes.name.addEventListener("change", () => this.rename(nodes.name.value));
    nodes.main.addEventListener("click", () => this.makeMain(this.active));
    nodes.add.addEventListener("click", () => this.addFile());
    nodes.remove.addEventListener("click", () => this.removeFile(this.active));
    nodes.tabs.addEventListener("keydown", (event) => this.tabKey(event));
  }

  newState(content) {
    return EditorState.create({
      doc: content,
      extensions: [...this.extensions, this.language.of(this.mode)],
    });
  }

  /** Replace every file; the first one is the main file. */
  setFiles(files) {
    this.entries = files.map((file) => ({ name: file.name, state: this.newState(file.content) }));
    this.main = 0;
    this.active = 0;
    this.view.setState(this.entries[0].state);
    this.render();
  }

  /** The files, main file first, as the API takes them. */
  files() {
    this.save();
    const ordered = [this.entries[this.main], ...this.entries.filter((_, i) => i !== this.main)];
    return ordered.map((entry) => ({ name: entry.name, content: entry.state.doc.toString() }));
  }

  /** The main file's text. */
  mainContent() {
    this.save();
    return this.entries[this.main].state.doc.toString();
  }

  /** Set the syntax highlighting of every file. */
  setMode(extension) {
    this.mode = extension || [];
    this.save();
    const effects = this.language.reconfigure(this.mode);
    for (const entry of this.entries) entry.state = entry.state.update({ effects }).state;
    this.view.setState(this.entries[this.active].state);
  }

  save() {
    if (this.entries.length) this.entries[this.active].state = this.view.state;
  }

  select(index, focus = false) {
    this.save();
    this.active = index;
    this.view.setState(this.entries[index].state);
    this.render();
    if (focus) this.nodes.tabs.children[index]?.focus();
  }

  rename(name) {
    const trimmed = name.trim();
    const taken = this.entries.some((entry, i) => i !== this.active && entry.name === trimmed);
    if (!trimmed || taken) {
      this.nodes.name.setCustomValidity(trimmed ? "another file has this name" : "a name is needed");
      this.nodes.name.reportValidity();
      return;
    }
    this.nodes.name.setCustomValidity("");
    this.entries[this.active].name = trimmed;
    this.render();
  }

  makeMain(index) {
    this.main = index;
    this.render();
  }

  addFile() {
    this.save();
    let number = this.entries.length + 1;
    while (this.entries.some((entry) => entry.name === `file${number}.txt`)) number += 1;
    this.entries.push({ name: `file${number}.txt`, state: this.newState("") });
    this.select(this.entries.length - 1);
    this.nodes.name.focus();
    this.nodes.name.select();
  }

  removeFile(index) {
    if (this.entries.length === 1) return;
    this.save();
    this.entries.splice(index, 1);
    if (this.main === index) this.main = 0;
    else if (this.main > index) this.main -= 1;
    this.active = Math.min(index, this.entries.length - 1);
    this.view.setState(this.entries[this.active].state);
    this.render();
  }

  tabKey(event) {
    const moves = { ArrowRight: 1, ArrowLeft: -1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const count = this.entries.length;
    this.select((this.active + moves[event.key] + count) % count, true);
  }

  render() {
    const tabs = this.entries.map((entry, index) => {
      const selected = index === this.active;
      const tab = el(
        "button",
        {
          type: "button",
          role: "tab",
          id: `file-tab-${index}`,
          "data-name": entry.name,
          "aria-selected": String(selected),
          "aria-controls": "editor",
          tabindex: selected ? "0" : "-1",
          class: index === this.main ? "main-file" : null,
          title: index === this.main ? "main file" : null,
        },
        entry.name,
        index === this.main ? el("span", { class: "badge", text: "main" }) : null,
      );
      tab.addEventListener("click", () => this.select(index));
      return tab;
    });
    this.nodes.tabs.replaceChildren(...tabs);
    this.nodes.editor.setAttribute("aria-labelledby", `file-tab-${this.active}`);
    this.nodes.name.value = this.entries[this.active].name;
    this.nodes.name.setCustomValidity("");
    this.nodes.main.disabled = this.active === this.main;
    this.nodes.remove.disabled = this.entries.length === 1;
  }
}
