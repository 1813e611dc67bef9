"""Which program ``piston run`` runs: ``[LANGUAGE] FILE [ARGS...]``, and the language of a file.

With one word, or when the first word is an existing file, the language is left out and is
inferred from the file's extension through the installed runtimes: the runtime whose language
or one of whose aliases is the extension (``hello.py`` → ``py``, an alias of ``python``), as the
recipes' ``test.<ext>`` files are matched. A few common extensions that no alias spells are
first mapped to one that does (``.cc`` → ``cpp``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from pistond.cli.errors import CliError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pistond.models import RuntimeInfo

USAGE: Final = "piston run [LANGUAGE] FILE [ARGS...]"
EXTENSION_SYNONYMS: Final = {
    "cc": "cpp",
    "cxx": "cpp",
    "c++": "cpp",
    "hpp": "cpp",
    "hh": "cpp",
    "h": "c",
    "mjs": "js",
    "cjs": "js",
    "pyw": "py",
    "bash": "sh",
    "ex": "exs",
    "kts": "kt",
    "f": "f90",
    "f95": "f90",
    "f03": "f90",
    "cbl": "cob",
    "lsp": "lisp",
    "rakumod": "raku",
    "4th": "fth",
}
"""Extensions that no runtime alias spells, and the alias that names their language."""


@attrs.frozen
class RunTarget:
    """What ``piston run`` was asked to run."""

    language: str | None
    """The language as typed; None: infer it from ``file``."""
    file: Path
    args: tuple[str, ...]


@attrs.frozen
class Inferred:
    """The language chosen for a file, and the extension that chose it."""

    language: str
    extension: str


def split_run_words(
    words: Sequence[str], *, is_file: Callable[[Path], bool] = Path.is_file
) -> RunTarget:
    """Read ``[LANGUAGE] FILE [ARGS...]``.

    The first word is the file when it is the only word or names an existing file; otherwise it
    is the language and the second word is the file.

    Raises:
        CliError: no words at all.
    """
    if not words:
        raise CliError(f"run needs a file: {USAGE}")
    first = Path(words[0])
    if len(words) == 1 or is_file(first):
        return RunTarget(None, first, tuple(words[1:]))
    return RunTarget(words[0], Path(words[1]), tuple(words[2:]))


def infer_language(file: Path, runtimes: Sequence[RuntimeInfo]) -> Inferred:
    """The installed language ``file``'s extension names.

    A runtime whose language is the extension wins over runtimes that only have it as an
    alias; several different languages left is ambiguous.

    Raises:
        CliError: no extension, no runtime for it, or several; the message names the file.
    """
    extension = file.suffix.removeprefix(".").lower()
    if not extension:
        raise CliError(f"{file} has no extension to tell its language by: {USAGE}")
    wanted = EXTENSION_SYNONYMS.get(extension, extension)
    by_name = sorted({r.language for r in runtimes if r.language.lower() == wanted})
    by_alias = sorted({r.language for r in runtimes if wanted in (a.lower() for a in r.aliases)})
    languages = by_name or by_alias
    if not languages:
        raise CliError(
            f"no installed runtime runs .{extension} files like {file} "
            f"(piston runtimes lists them): {USAGE}"
        )
    if len(languages) > 1:
        raise CliError(
            f"{file}: .{extension} could be {' or '.join(languages)}; name one: "
            f"piston run {languages[0]} {file}"
        )
    return Inferred(languages[0], extension)
