"""``pistond --check-config``: validate a configuration without starting anything.

Beyond parsing every setting (what a start does first), it resolves what a start would look up:
the socket and admin groups, the recipes directory, the data directory, and the user the gateway
drops to. Problems that would stop ``pistond`` are errors (exit status 2); unknown ``PISTON_*``
variables (probably typos) and a gateway user that does not exist are warnings. The effective
settings are printed as ``PISTON_*=value`` lines, fit for an ``EnvironmentFile=``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

import attrs

from pistond.config import (
    DaemonConfig,
    as_variables,
    resolve_admin_group,
    resolve_socket_group,
    unknown_variables,
)
from pistond.errors import ConfigError
from pistond.resources import RECIPES, shipped

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

EXIT_INVALID: Final = 2


@attrs.frozen
class Finding:
    """One problem found in a configuration."""

    level: Literal["error", "warning"]
    text: str


def check(config: DaemonConfig, environ: Mapping[str, str]) -> list[Finding]:
    """What would go wrong when pistond (or the gateway) starts with ``config``."""
    findings = [
        Finding("warning", f"unknown setting {name} (ignored)")
        for name in unknown_variables(environ)
    ]
    for resolve in (resolve_socket_group, resolve_admin_group):
        try:
            resolve(config)
        except ConfigError as exc:
            findings.append(Finding("error", str(exc)))
    findings += _directories(config)
    try:
        from pistond.gateway.privileges import resolve_identity  # noqa: PLC0415  (hypercorn, starlette: only when checking)

        resolve_identity(config.gateway_user, None)
    except ConfigError as exc:
        findings.append(Finding("warning", f"{exc} (the gateway started as root will refuse)"))
    return list(dict.fromkeys(findings))  # the admin group defaults to the socket group


def _directories(config: DaemonConfig) -> list[Finding]:
    findings = []
    if config.recipes_directory is not None and not config.recipes_directory.is_dir():
        findings.append(
            Finding(
                "error",
                f"PISTON_RECIPES_DIRECTORY: {config.recipes_directory} is not a directory",
            )
        )
    if config.recipes_directory is None and shipped(RECIPES) is None:
        findings.append(
            Finding("warning", "this installation ships no recipes; set PISTON_RECIPES_DIRECTORY")
        )
    if config.data_directory.exists() and not config.data_directory.is_dir():
        findings.append(
            Finding("error", f"PISTON_DATA_DIRECTORY: {config.data_directory} is not a directory")
        )
    return findings


def report(
    config: DaemonConfig,
    environ: Mapping[str, str],
    *,
    out: Callable[[str], None],
    err: Callable[[str], None],
) -> int:
    """Print the settings and the findings; return the exit status (0, or 2 on an error)."""
    for variable, value in as_variables(config).items():
        out(f"{variable}={value}")
    findings = check(config, environ)
    for finding in findings:
        err(f"pistond: {finding.level}: {finding.text}")
    errors = sum(finding.level == "error" for finding in findings)
    if errors:
        err(f"pistond: configuration invalid ({errors} error{'s' if errors > 1 else ''})")
        return EXIT_INVALID
    err("pistond: configuration OK")
    return 0
