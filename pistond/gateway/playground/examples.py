"""Example programs for the playground: each shipped recipe's ``test.*`` file, by runtime language.

A recipe's test file is matched to one of its runtimes the way the package checks match them:
the extension names the runtime's language or one of its aliases (``test.cpp`` is ``c++``
through the alias ``cpp``), else a package with a single runtime takes it.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING, Final

import attrs

from pistond.ppman.metadata import MetadataError, load_metadata

if TYPE_CHECKING:
    from pathlib import Path

    from pistond.ppman.metadata import PackageMetadata, ProvidedLanguage

logger = logging.getLogger(__name__)

MAX_EXAMPLE_SIZE: Final = 64 * 1024
"""Larger test files are left out: an example must load instantly in an editor."""
HOST_VERSION: Final = "host"
"""The directory name of host recipes, whose metadata carries no version."""


@attrs.frozen
class Example:
    """One example program."""

    package: str
    """The recipe's package (the ``runtime`` of ``/api/v2/runtimes`` for provides packages)."""
    version: str
    """The recipe's version directory (``host`` for host recipes)."""
    language: str
    """The runtime language the file is written in."""
    name: str
    """File name, e.g. ``test.py``."""
    content: str


def example_language(metadata: PackageMetadata, extension: str) -> ProvidedLanguage | None:
    """The runtime of ``metadata`` that a ``test.<extension>`` file is written for, if any."""
    languages = metadata.languages()
    for language in languages:
        if extension == language.language or extension in language.aliases:
            return language
    return languages[0] if len(languages) == 1 else None


def _read_text(path: Path) -> str | None:
    """A small regular file's UTF-8 text, never through a symbolic link; None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_EXAMPLE_SIZE:
            return None
        data = file.read(MAX_EXAMPLE_SIZE + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def recipe_examples(directory: Path) -> list[Example]:
    """The examples of one recipe directory (``<package>/<version>``); [] if it has none."""
    host = directory.name == HOST_VERSION
    try:
        metadata = load_metadata(directory / "metadata.json", version="0.0.0" if host else None)
    except MetadataError as exc:
        logger.warning("recipe skipped for the playground's examples: %s", exc)
        return []
    examples = []
    for test in sorted(directory.glob("test.*")):
        language = example_language(metadata, test.suffix.removeprefix("."))
        content = _read_text(test)
        if language is None or content is None:
            continue
        examples.append(
            Example(metadata.language, directory.name, language.language, test.name, content)
        )
    return examples


def load_examples(recipes: Path | None) -> list[Example]:
    """Every example under a recipes directory (``<package>/<version>/test.*``), sorted."""
    if recipes is None or not recipes.is_dir():
        return []
    examples: list[Example] = []
    for directory in sorted(recipes.glob("*/*")):
        if directory.is_dir() and not directory.is_symlink():
            examples.extend(recipe_examples(directory))
    return examples
