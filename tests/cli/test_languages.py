"""pistond.cli.languages: `piston run [LANGUAGE] FILE [ARGS...]` and a file's language from its
extension through the installed runtimes' names and aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from pistond.cli.errors import CliError
from pistond.cli.languages import RunTarget, infer_language, split_run_words
from pistond.models import RuntimeInfo

RUNTIMES = [
    RuntimeInfo("python", "3.11.2", ("py", "py3", "python3"), None, compiled=False),
    RuntimeInfo("python", "3.13.5", ("py", "py3", "python3"), None, compiled=False),
    RuntimeInfo("c", "12.2.0", ("gcc",), "gcc", compiled=True),
    RuntimeInfo("c++", "12.2.0", ("cpp", "g++"), "gcc", compiled=True),
    RuntimeInfo("javascript", "20.0.0", ("node-js", "js"), "node", compiled=False),
    RuntimeInfo("perl", "5.36.0", ("pl",), None, compiled=False),
    RuntimeInfo("prolog", "9.0.4", ("pl", "swipl"), None, compiled=False),
]


def test_languages_split_file_first_or_language_first() -> None:
    """One word or an existing first file: no language; otherwise language, file, args."""
    existing = {Path("hello.py")}

    def split(*words: str) -> RunTarget:
        return split_run_words(words, is_file=existing.__contains__)

    assert split("hello.py") == RunTarget(None, Path("hello.py"), ())
    assert split("hello.py", "a", "-b") == RunTarget(None, Path("hello.py"), ("a", "-b"))
    assert split("python", "hello.py", "x") == RunTarget("python", Path("hello.py"), ("x",))
    assert split("missing.py") == RunTarget(None, Path("missing.py"), ())
    with pytest.raises(CliError, match=r"run needs a file: piston run \[LANGUAGE\] FILE"):
        split()


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("hello.py", "python"),
        ("HELLO.PY", "python"),
        ("prog.c", "c"),
        ("prog.cpp", "c++"),
        ("prog.cc", "c++"),
        ("main.mjs", "javascript"),
        ("dir.d/app.js", "javascript"),
    ],
)
def test_languages_extension_names_the_runtime(name: str, language: str) -> None:
    """A language name or alias equal to the extension (or its common synonym) is chosen."""
    assert infer_language(Path(name), RUNTIMES).language == language


def test_languages_name_beats_alias_and_ambiguity_is_refused() -> None:
    """`.c` is the language c although no alias says so; `.pl` is two languages: refused,
    naming the file and both."""
    assert infer_language(Path("x.c"), RUNTIMES).extension == "c"
    with pytest.raises(CliError) as raised:
        infer_language(Path("x.pl"), RUNTIMES)
    assert str(raised.value) == "x.pl: .pl could be perl or prolog; name one: piston run perl x.pl"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("noext", "noext has no extension to tell its language by: piston run [LANGUAGE] FILE"),
        ("x.zig", "no installed runtime runs .zig files like x.zig (piston runtimes lists them)"),
    ],
)
def test_languages_unknown_extension_names_the_file(name: str, message: str) -> None:
    """No extension, or none a runtime knows: the error names the file, never a pattern."""
    with pytest.raises(CliError) as raised:
        infer_language(Path(name), RUNTIMES)
    assert str(raised.value).startswith(message)
    assert "-*" not in str(raised.value)
