"""Limit resolution: configuration, package overrides, PISTON_LIMIT_OVERRIDES; requests lower."""

from __future__ import annotations

from pistond.config import load_config
from pistond.limits import lowered, runtime_limits, stage_limits
from pistond.models import StageName


def test_limits_chain_overrides_win_in_order() -> None:
    """PISTON_LIMIT_OVERRIDES beats the package's overrides, which beat the global setting."""
    config = load_config(
        {
            "PISTON_RUN_TIMEOUT": "3000",
            "PISTON_LIMIT_OVERRIDES": '{"zig": {"compile_timeout": 20000}}',
        }
    )
    limits = runtime_limits(config, "zig", {"compile_timeout": 15000, "compile_cpu_time": 15000})
    assert limits.compile_timeout == 20000
    assert limits.compile_cpu_time == 15000
    assert limits.run_timeout == 3000


def test_limits_override_keys_are_runtime_languages() -> None:
    """Overrides for another language do not apply."""
    config = load_config({"PISTON_LIMIT_OVERRIDES": '{"c++": {"max_process_count": 128}}'})
    assert runtime_limits(config, "c", {}).max_process_count == 64
    assert runtime_limits(config, "c++", {}).max_process_count == 128


def test_limits_zero_package_override_falls_through() -> None:
    """A package override of 0 is not truthy and falls through to the global value."""
    config = load_config({})
    assert runtime_limits(config, "x", {"run_timeout": 0}).run_timeout == 3000


def test_limits_stage_limits_per_stage() -> None:
    """Stage limits take the stage's timeout, CPU and memory; -1 memory means none."""
    config = load_config({"PISTON_RUN_MEMORY_LIMIT": "1048576"})
    limits = lowered(runtime_limits(config, "python", {}), {"run_timeout": 1000})
    run = stage_limits(limits, StageName.RUN, output_max_size=limits.output_max_size)
    assert (run.wall_time_ms, run.cpu_time_ms, run.memory_bytes) == (1000, 3000, 1048576)
    compile_ = stage_limits(limits, StageName.COMPILE, output_max_size=10)
    assert (compile_.wall_time_ms, compile_.memory_bytes, compile_.output_max_size) == (
        10000,
        None,
        10,
    )
    assert run.max_processes == 64
    assert run.max_file_size == 10_000_000
