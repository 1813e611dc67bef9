// Syntax highlighting per runtime language: a CodeMirror language package where one exists,
// else a legacy stream mode. Each loader is a dynamic import, so the bundler splits every mode
// into its own chunk and the page only downloads the ones it shows.
import { StreamLanguage } from "@codemirror/language";

const legacy = (load, name) => async () => StreamLanguage.define((await load())[name]);

const LOADERS = {
  python: async () => (await import("@codemirror/lang-python")).python(),
  c: async () => (await import("@codemirror/lang-cpp")).cpp(),
  "c++": async () => (await import("@codemirror/lang-cpp")).cpp(),
  javascript: async () => (await import("@codemirror/lang-javascript")).javascript(),
  typescript: async () =>
    (await import("@codemirror/lang-javascript")).javascript({ typescript: true }),
  java: async () => (await import("@codemirror/lang-java")).java(),
  rust: async () => (await import("@codemirror/lang-rust")).rust(),
  go: async () => (await import("@codemirror/lang-go")).go(),
  php: async () => (await import("@codemirror/lang-php")).php({ plain: false }),
  sqlite3: async () => {
    const sql = await import("@codemirror/lang-sql");
    return sql.sql({ dialect: sql.SQLite });
  },
  bash: legacy(() => import("@codemirror/legacy-modes/mode/shell"), "shell"),
  kotlin: legacy(() => import("@codemirror/legacy-modes/mode/clike"), "kotlin"),
  scala: legacy(() => import("@codemirror/legacy-modes/mode/clike"), "scala"),
  csharp: legacy(() => import("@codemirror/legacy-modes/mode/clike"), "csharp"),
  "csharp.net": legacy(() => import("@codemirror/legacy-modes/mode/clike"), "csharp"),
  dart: legacy(() => import("@codemirror/legacy-modes/mode/clike"), "dart"),
  "objective-c": legacy(() => import("@codemirror/legacy-modes/mode/clike"), "objectiveC"),
  ocaml: legacy(() => import("@codemirror/legacy-modes/mode/mllike"), "oCaml"),
  fsharp: legacy(() => import("@codemirror/legacy-modes/mode/mllike"), "fSharp"),
  "fsharp.net": legacy(() => import("@codemirror/legacy-modes/mode/mllike"), "fSharp"),
  fsi: legacy(() => import("@codemirror/legacy-modes/mode/mllike"), "fSharp"),
  sml: legacy(() => import("@codemirror/legacy-modes/mode/mllike"), "sml"),
  ruby: legacy(() => import("@codemirror/legacy-modes/mode/ruby"), "ruby"),
  lua: legacy(() => import("@codemirror/legacy-modes/mode/lua"), "lua"),
  perl: legacy(() => import("@codemirror/legacy-modes/mode/perl"), "perl"),
  raku: legacy(() => import("@codemirror/legacy-modes/mode/perl"), "perl"),
  haskell: legacy(() => import("@codemirror/legacy-modes/mode/haskell"), "haskell"),
  erlang: legacy(() => import("@codemirror/legacy-modes/mode/erlang"), "erlang"),
  elixir: legacy(() => import("@codemirror/legacy-modes/mode/ruby"), "ruby"),
  clojure: legacy(() => import("@codemirror/legacy-modes/mode/clojure"), "clojure"),
  crystal: legacy(() => import("@codemirror/legacy-modes/mode/crystal"), "crystal"),
  cobol: legacy(() => import("@codemirror/legacy-modes/mode/cobol"), "cobol"),
  forth: legacy(() => import("@codemirror/legacy-modes/mode/forth"), "forth"),
  fortran: legacy(() => import("@codemirror/legacy-modes/mode/fortran"), "fortran"),
  d: legacy(() => import("@codemirror/legacy-modes/mode/d"), "d"),
  pascal: legacy(() => import("@codemirror/legacy-modes/mode/pascal"), "pascal"),
  racket: legacy(() => import("@codemirror/legacy-modes/mode/scheme"), "scheme"),
  scheme: legacy(() => import("@codemirror/legacy-modes/mode/scheme"), "scheme"),
  lisp: legacy(() => import("@codemirror/legacy-modes/mode/commonlisp"), "commonLisp"),
  commonlisp: legacy(() => import("@codemirror/legacy-modes/mode/commonlisp"), "commonLisp"),
  emacs: legacy(() => import("@codemirror/legacy-modes/mode/commonlisp"), "commonLisp"),
  swift: legacy(() => import("@codemirror/legacy-modes/mode/swift"), "swift"),
  tcl: legacy(() => import("@codemirror/legacy-modes/mode/tcl"), "tcl"),
  rscript: legacy(() => import("@codemirror/legacy-modes/mode/r"), "r"),
  julia: legacy(() => import("@codemirror/legacy-modes/mode/julia"), "julia"),
  octave: legacy(() => import("@codemirror/legacy-modes/mode/octave"), "octave"),
  powershell: legacy(() => import("@codemirror/legacy-modes/mode/powershell"), "powerShell"),
  groovy: legacy(() => import("@codemirror/legacy-modes/mode/groovy"), "groovy"),
  coffeescript: legacy(() => import("@codemirror/legacy-modes/mode/coffeescript"), "coffeeScript"),
  brainfuck: legacy(() => import("@codemirror/legacy-modes/mode/brainfuck"), "brainfuck"),
  smalltalk: legacy(() => import("@codemirror/legacy-modes/mode/smalltalk"), "smalltalk"),
  nasm: legacy(() => import("@codemirror/legacy-modes/mode/gas"), "gas"),
  nasm64: legacy(() => import("@codemirror/legacy-modes/mode/gas"), "gas"),
  basic: legacy(() => import("@codemirror/legacy-modes/mode/vb"), "vb"),
  "basic.net": legacy(() => import("@codemirror/legacy-modes/mode/vb"), "vb"),
  vb: legacy(() => import("@codemirror/legacy-modes/mode/vb"), "vb"),
  elm: legacy(() => import("@codemirror/legacy-modes/mode/elm"), "elm"),
  oz: legacy(() => import("@codemirror/legacy-modes/mode/oz"), "oz"),
};

/** The loader for a runtime (its language, else the first alias that has one), or null. */
export function languageLoader(runtime) {
  for (const name of [runtime.language, ...(runtime.aliases || [])]) {
    if (Object.hasOwn(LOADERS, name)) return LOADERS[name];
  }
  return null;
}

/** The usual file extension for a runtime's main file (for a new file's default name). */
export function defaultFileName(runtime) {
  const extensions = {
    python: "py", c: "c", "c++": "cpp", javascript: "js", typescript: "ts", java: "java",
    rust: "rs", go: "go", php: "php", bash: "sh", ruby: "rb", lua: "lua", perl: "pl",
    haskell: "hs", kotlin: "kt", scala: "scala", swift: "swift", csharp: "cs",
    "csharp.net": "cs", fsharp: "fs", "fsharp.net": "fs", ocaml: "ml", d: "d",
    fortran: "f90", pascal: "pas", racket: "rkt", clojure: "clj", elixir: "exs",
    erlang: "erl", crystal: "cr", nim: "nim", zig: "zig", rscript: "r", tcl: "tcl",
    sqlite3: "sql", cobol: "cob", forth: "fs", prolog: "pl", lisp: "lisp", nasm: "asm",
    nasm64: "asm", julia: "jl", dart: "dart", groovy: "groovy", powershell: "ps1",
  };
  const extension = extensions[runtime.language];
  return extension ? `main.${extension}` : "main.code";
}
