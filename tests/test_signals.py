"""Piston's signal table, shared by results, the interactive API and the gateway."""

from __future__ import annotations

from pistond.signals import SIGNALS, signal_name


def test_signal_name_follows_piston_table() -> None:
    """Names: 1-31 by name, 34 SIGRTMIN, then SIGRTMIN+n up to 49, SIGRTMAX-n, 64 SIGRTMAX."""
    assert [signal_name(n) for n in (1, 9, 11, 31)] == ["SIGHUP", "SIGKILL", "SIGSEGV", "SIGSYS"]
    assert [signal_name(n) for n in (34, 35, 49, 50, 63, 64)] == [
        "SIGRTMIN",
        "SIGRTMIN+1",
        "SIGRTMIN+15",
        "SIGRTMAX-14",
        "SIGRTMAX-1",
        "SIGRTMAX",
    ]
    assert signal_name(32) is None
    assert signal_name(65) is None


def test_signals_table_maps_every_name_back() -> None:
    """SIGNALS holds the 62 names of the table, each to its number."""
    assert len(SIGNALS) == 62
    assert SIGNALS["SIGINT"] == 2
    assert SIGNALS["SIGRTMIN+15"] == 49
    assert SIGNALS["SIGRTMAX-14"] == 50
    assert all(signal_name(number) == name for name, number in SIGNALS.items())
