"""Fuzzing of the untrusted entry points (targets.py): property-based, then coverage-guided.

Rules: hypothesis runs every target on arbitrary bytes (bounded examples); atheris runs each
target for a fixed time budget (``PISTOND_FUZZ_SECONDS``, default 8 s per target) from the
seeds in targets.py, in a subprocess, and must end without a finding. A finding is printed
with the input that caused it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from targets import SEEDS, TARGETS

HERE = Path(__file__).parent
BUDGET = int(os.environ.get("PISTOND_FUZZ_SECONDS", "8"))


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096))
def test_fuzz_property_based(name: str, data: bytes) -> None:
    """Arbitrary bytes never make a target find a bug."""
    TARGETS[name](data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_seeds_run_clean(name: str) -> None:
    """Every seed input runs through its target."""
    for seed in SEEDS[name]:
        TARGETS[name](seed)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris is not installed here"
)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_coverage_guided(name: str, tmp_path: Path) -> None:
    """libFuzzer, for the time budget, from the seeds: no crash, no broken invariant."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(SEEDS[name]):
        (corpus / f"seed-{index}").write_bytes(seed)
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            name,
            f"-max_total_time={BUDGET}",
            "-max_len=4096",
            "-print_final_stats=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=BUDGET + 60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    executed = re.search(r"stat::number_of_executed_units: (\d+)", run.stderr)
    assert executed is not None, run.stderr[-2000:]
    assert int(executed[1]) > 100
