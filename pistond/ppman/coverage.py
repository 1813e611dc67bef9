"""Piston's languages, and why those this machine's registries cannot supply are missing.

:data:`PISTON_LANGUAGES` are the runtime languages of Piston's package repository (its
``packages/*/*/metadata.json``: package names, or the languages of ``provides``). The matrix
(:mod:`pistond.ppman.matrix`) lists every one of them that its table lacks, with the reason from
:data:`UNAVAILABLE` (looked up with ``apt-cache policy`` over every suite the Debian mirror
serves, ``pip index versions`` and ``npm view``).
"""

from __future__ import annotations

from typing import Final

PISTON_LANGUAGES: Final = (
    "awk", "bash", "basic", "basic.net", "befunge93", "bqn", "brachylog", "brainfuck", "c",
    "c++", "cjam", "clojure", "cobol", "coffeescript", "cow", "crystal", "csharp", "csharp.net",
    "d", "dart", "dash", "dragon", "elixir", "emacs", "emojicode", "erlang", "file", "forte",
    "forth", "fortran", "freebasic", "fsharp.net", "fsi", "go", "golfscript", "groovy",
    "haskell", "husk", "iverilog", "japt", "java", "javascript", "jelly", "julia", "kotlin",
    "lisp", "llvm_ir", "lolcode", "lua", "matl", "nasm", "nasm64", "nim", "ocaml", "octave",
    "osabie", "paradoc", "pascal", "perl", "php", "ponylang", "powershell", "prolog", "pure",
    "pyth", "python", "python2", "racket", "raku", "retina", "rockstar", "rscript", "ruby",
    "rust", "samarium", "scala", "smalltalk", "sqlite3", "swift", "typescript", "vlang",
    "vyxal", "yeethon", "zig",
)  # fmt: skip

_GITHUB_ONLY: Final = (
    "published only as source on GitHub (Piston builds it from there); no Debian, PyPI or npm "
    "package exists"
)
_DOTNET: Final = (
    "needs the .NET SDK, which comes only from Microsoft's own feed (not reachable here); "
    "Debian packages no .NET SDK"
)

UNAVAILABLE: Final = {
    "basic": "Piston's basic is VB.NET on Mono; mono-vbnc is in no suite of the Debian mirror",
    "basic.net": _DOTNET,
    "csharp.net": _DOTNET + "; C# is served by mono (language csharp)",
    "fsharp.net": _DOTNET,
    "fsi": _DOTNET,
    "dart": "no package in any Debian suite, on PyPI or on npm",
    "freebasic": "distributed from SourceForge only; no Debian, PyPI or npm package",
    "powershell": "distributed from GitHub releases and Microsoft's feed only",
    "nasm": (
        "32-bit: the sandbox's seccomp filter rejects the i386 system-call ABI, so 32-bit "
        "programs cannot run (nasm64 is provided)"
    ),
    "matl": _GITHUB_ONLY + " (it runs on Octave, which is provided)",
    "befunge93": _GITHUB_ONLY,
    "bqn": _GITHUB_ONLY,
    "brachylog": _GITHUB_ONLY + " (it runs on SWI-Prolog, which is provided)",
    "cjam": "distributed from SourceForge only (a Java jar); no Debian, PyPI or npm package",
    "cow": _GITHUB_ONLY,
    "dragon": _GITHUB_ONLY,
    "emojicode": _GITHUB_ONLY,
    "forte": _GITHUB_ONLY,
    "golfscript": _GITHUB_ONLY,
    "husk": _GITHUB_ONLY,
    "japt": _GITHUB_ONLY,
    "jelly": _GITHUB_ONLY,
    "lolcode": _GITHUB_ONLY,
    "osabie": _GITHUB_ONLY,
    "paradoc": _GITHUB_ONLY,
    "ponylang": _GITHUB_ONLY,
    "pure": _GITHUB_ONLY,
    "pyth": _GITHUB_ONLY,
    "retina": _GITHUB_ONLY + " (it needs .NET)",
    "rockstar": _GITHUB_ONLY + " (Piston runs the Satriani reference interpreter)",
    "vlang": _GITHUB_ONLY,
    "yeethon": _GITHUB_ONLY,
}
"""Why a Piston language cannot be had from this machine's registries."""
