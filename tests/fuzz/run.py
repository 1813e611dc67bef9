"""Coverage-guided fuzzing of one target with atheris (libFuzzer), as a command::

    .venv/bin/python tests/fuzz/run.py framing -max_total_time=60

Targets are the names in ``targets.TARGETS``; the remaining arguments go to libFuzzer. Exits 0
when the time or run budget ends without a finding, non-zero (with the input) when a target
failed.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["pistond", "h11", "wsproto", "msgpack"]):
    from targets import TARGETS


def main() -> None:
    """Fuzz ``sys.argv[1]`` with libFuzzer's options from the rest of the command line."""
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
