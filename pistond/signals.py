"""Piston's signal table: names 1 to 31, then SIGRTMIN, SIGRTMIN+n, SIGRTMAX-n, SIGRTMAX."""

from __future__ import annotations

from typing import Final

_NAMES: Final = (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU",
    "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",
    "SIGPWR", "SIGSYS",
)  # fmt: skip
SIGRTMIN: Final = 34
SIGRTMAX: Final = 64
_MIDDLE: Final = (SIGRTMIN + SIGRTMAX) // 2


def signal_name(signum: int) -> str | None:
    """Piston's name of signal ``signum`` (``SIGSEGV``, ``SIGRTMIN+3``), or None."""
    if 1 <= signum <= len(_NAMES):
        return _NAMES[signum - 1]
    if signum == SIGRTMIN:
        return "SIGRTMIN"
    if signum == SIGRTMAX:
        return "SIGRTMAX"
    if SIGRTMIN < signum <= _MIDDLE:
        return f"SIGRTMIN+{signum - SIGRTMIN}"
    if _MIDDLE < signum < SIGRTMAX:
        return f"SIGRTMAX-{SIGRTMAX - signum}"
    return None


SIGNALS: Final = {
    name: signum for signum in range(1, SIGRTMAX + 1) if (name := signal_name(signum)) is not None
}
"""Every name of Piston's table to its number."""
