"""Compile-stage attacks (reference/attacks.md further case): the compile stage runs in the same
sandbox as the run stage, so endless input, host files and compiler bombs end TO, ML or EL
with no host content in the output."""

from __future__ import annotations

import trio

from pistond.models import JobResult, StageResult, StageStatus

from .conftest import Attack, program_files

COMPILE_TIMEOUT = 3000
"""compile_timeout of these attacks (milliseconds), below the configured 5000."""
BOUNDED = (StageStatus.TIMEOUT, StageStatus.MEMORY_LIMIT, StageStatus.STDERR_LIMIT)


async def _compile(attack: Attack, name: str) -> StageResult:
    """Compile attack program ``name``; its compile stage (there must be no run stage)."""
    result: JobResult = await attack.execute(
        attack.language_of(name), program_files(name), compile_timeout=COMPILE_TIMEOUT
    )
    assert result.compile is not None, result
    assert result.run is None, result
    return result.compile


async def test_compile_stage_bombs_are_bounded(attack: Attack) -> None:
    """Compile stage: an endless #include of /dev/urandom, a template bomb and a preprocessor
    bomb end TO, ML or EL within the compile limits."""
    results: dict[str, StageResult] = {}

    async def one(name: str) -> None:
        results[name] = await _compile(attack, name)

    async with trio.open_nursery() as nursery:
        for name in ("include_urandom.c", "template_bomb.cpp", "preprocessor_bomb.c"):
            nursery.start_soon(one, name)
    for name, stage in results.items():
        assert stage.status in BOUNDED, (name, stage)
        assert stage.wall_time <= COMPILE_TIMEOUT + 200, (name, stage.wall_time)
        assert len(stage.stderr.encode()) <= 1024 * 3


async def test_compile_stage_sees_no_host_files(attack: Attack) -> None:
    """Compile stage: #include "/etc/shadow" finds no such file, so no host data reaches the
    error text."""
    stage = await _compile(attack, "include_shadow.c")
    assert stage.status == StageStatus.RUNTIME_ERROR, stage
    assert "No such file or directory" in stage.stderr
    with open("/etc/shadow") as shadow:  # noqa: ASYNC230 - a small host file
        secrets = [line.split(":")[1] for line in shadow if line.count(":") > 2]
    for secret in secrets:
        if len(secret) > 2:
            assert secret not in stage.stderr
    assert "root:" not in stage.stderr
