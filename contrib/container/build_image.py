"""Build the pistond container image without pulling anything: ``mmdebstrap | podman import``.

The root filesystem is Debian (minbase) from the host's own apt sources, with the interpreters
and compiler of pistond's host runtimes (python3, bash, gcc, g++), tini as PID 1, and pistond in
``/opt/pistond`` installed from its wheel and the wheels of its dependencies (built on this host
with its own pip configuration, installed in the image with ``--no-index``). The ``pistond``
group and the ``pistond-gateway`` user come from ``systemd/sysusers.d/pistond.conf``. The image
runs ``contrib/container/entrypoint``: pistond and the gateway on port 2000.

Usage (as root, from a checkout with ``scripts/bootstrap`` done)::

    .venv/bin/python contrib/container/build_image.py [--tag pistond:latest] [--wheel W.whl]

See docs/deploy.md for running it and the privileges it needs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from pistond.ppman.aptsources import mirror_lines

HERE: Final = Path(__file__).resolve().parent
CHECKOUT: Final = HERE.parent.parent
SUITE: Final = "bookworm"
"""The image's Debian suite: its python3 must match the interpreter the wheels are built for."""
PACKAGES: Final = (
    "python3",
    "python3-venv",
    "libseccomp2",
    "gcc",
    "g++",
    "libc6-dev",
    "ca-certificates",
    "tini",
)
"""Debian packages of the image: pistond's needs, and what its host runtimes run."""
ENTRYPOINT: Final = "/usr/local/bin/pistond-container"
PREFIX: Final = "/opt/pistond"
CHANGES: Final = (
    f'ENTRYPOINT ["/usr/bin/tini", "--", "{ENTRYPOINT}"]',
    "EXPOSE 2000",
    "ENV PISTON_BIND_ADDRESS=0.0.0.0:2000",
    # As in pistond.service: package changes for root only (podman exec), not for the gateway.
    "ENV PISTON_ADMIN_GROUP=root",
    f"ENV PATH={PREFIX}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "STOPSIGNAL SIGTERM",
    'LABEL org.opencontainers.image.title="pistond"',
)
"""Image configuration given to ``podman import --change``."""


def build_wheel(out: Path) -> Path:
    """The pistond wheel of this checkout."""
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(CHECKOUT)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (wheel,) = out.glob("pistond-*.whl")
    return wheel


def collect_wheels(wheel: Path, out: Path) -> None:
    """The wheel and a wheel of each dependency in ``out`` (pip's own configuration decides
    where they come from; sdists are built here)."""
    shutil.copy2(wheel, out)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(out), str(wheel)],
        check=True,
    )


def mmdebstrap_argv(wheels: Path, sysusers: Path) -> list[str]:
    """The mmdebstrap command writing the image's root filesystem as a tarball to stdout."""
    base, mirrors = mirror_lines(SUITE)
    hooks = [
        f'mkdir -p "$1/tmp/wheels" && cp -a {shlex.quote(str(wheels))}/. "$1/tmp/wheels/"',
        f'chroot "$1" python3 -m venv {PREFIX}',
        f'chroot "$1" {PREFIX}/bin/pip install --quiet --no-index --no-cache-dir '
        "--find-links /tmp/wheels pistond",
        f'systemd-sysusers --root "$1" {shlex.quote(str(sysusers))}',
        f'install -m 0755 {shlex.quote(str(HERE / "entrypoint"))} "$1{ENTRYPOINT}"',
        'rm -rf "$1/tmp/wheels" "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*',
    ]
    return [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        "--format=tar",
        "--include=" + ",".join(PACKAGES),
        *(f"--customize-hook={hook}" for hook in hooks),
        base,
        "-",
        *mirrors,
    ]


def build(tag: str, wheel: Path | None) -> None:
    """Build the image ``tag`` with ``podman import``."""
    for tool in ("mmdebstrap", "podman", "systemd-sysusers"):
        if shutil.which(tool) is None:
            raise SystemExit(f"build_image: {tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="pistond-image-") as scratch:
        work = Path(scratch)
        wheels = work / "wheels"
        wheels.mkdir()
        collect_wheels(wheel or build_wheel(work), wheels)
        argv = mmdebstrap_argv(wheels, CHECKOUT / "systemd" / "sysusers.d" / "pistond.conf")
        # mmdebstrap mounts /proc, /sys and /dev into the new root while it works: keep those
        # mounts in a mount namespace of their own.
        root = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", *argv],
            stdout=subprocess.PIPE,
        )
        assert root.stdout is not None
        changes = [f"--change={change}" for change in CHANGES]
        imported = subprocess.run(
            ["podman", "import", "--quiet", *changes, "-", tag],
            stdin=root.stdout,
            check=False,
            stdout=subprocess.PIPE,
            text=True,
        )
        root.stdout.close()
        if root.wait() != 0:
            raise SystemExit(f"build_image: mmdebstrap failed (status {root.returncode})")
        if imported.returncode != 0:
            raise SystemExit(f"build_image: podman import failed (status {imported.returncode})")
    print(f"built {tag} ({imported.stdout.strip().removeprefix('sha256:')[:12]})")


def main() -> None:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default="localhost/pistond:latest", help="image name")
    parser.add_argument("--wheel", type=Path, help="pistond wheel (default: build this checkout)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("build_image: run as root (mmdebstrap and rootful podman)")
    build(args.tag, args.wheel)


if __name__ == "__main__":
    main()
