"""Runtimes of an installed package: compile and run argv, environment and root view."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pistond.runtimes import Runtime
from pistond.sandbox.spec import Bind, RootView
from pistond_packages.layout import ENV_FILE, MARKER, METADATA, PKG_INFO, parse_env

if TYPE_CHECKING:
    from pistond_packages.layout import PackageLayout
    from pistond_packages.metadata import PackageMetadata

BASH = "/bin/bash"


def package_root(layout: PackageLayout) -> RootView:
    """The package's root filesystem (or the host view) with its directory at its Piston path.

    The directory is bound read-only at ``/piston/packages/<package>/<version>``; the builder
    creates that mount point inside built roots.
    """
    root = layout.root
    return RootView(
        path=str(root) if root.is_dir() else None,
        binds=(Bind(source=str(layout.directory), target=layout.piston_path),),
    )


def package_runtimes(layout: PackageLayout, metadata: PackageMetadata) -> list[Runtime]:
    """One runtime per ``provides`` entry, or one for the package itself.

    A runtime is compiled when the package directory has a ``compile`` script; jobs run
    ``/bin/bash <piston path>/compile <files>`` and ``/bin/bash <piston path>/run <main> <args>``.
    """
    compiled = (layout.directory / "compile").is_file()
    env = parse_env(layout.env_file.read_text(encoding="utf-8"))
    identity = build_identity(layout)
    root = package_root(layout)
    package = metadata.language if metadata.provides else None
    return [
        Runtime(
            language=entry.language,
            version=metadata.version,
            aliases=entry.aliases,
            package=package,
            compiled=compiled,
            root=root,
            compile_argv=(BASH, f"{layout.piston_path}/compile") if compiled else None,
            run_argv=(BASH, f"{layout.piston_path}/run"),
            env=env,
            limit_overrides=entry.limit_overrides,
            identity=identity,
            compile_scratch=metadata.compile_scratch,
        )
        for entry in metadata.languages()
    ]


IDENTITY_FILES = (MARKER, PKG_INFO, METADATA, "compile", ENV_FILE)
"""What makes an installed build itself: its install stamp (rewritten by every install), what
the build resolved, its metadata, compile script and environment."""


def build_identity(layout: PackageLayout) -> str:
    """A digest that changes whenever the package is reinstalled or rebuilt."""
    digest = hashlib.sha256(f"{layout.package}\0{layout.version}\0".encode())
    for name in IDENTITY_FILES:
        try:
            content = (layout.directory / name).read_bytes()
        except FileNotFoundError:
            content = b""
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()
