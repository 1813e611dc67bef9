"""Published Piston clients, unchanged, against the running gateway: each lists runtimes and runs
a program. Python clients from PyPI (aiopyston, ultra-piston, pistonpy) and the npm
``piston-client`` run with node (installed by ``npm ci`` from tests/gateway/node/).

Rules: clients are pointed at the test gateway on 127.0.0.1 only (endpoints overridden where a
client hard-codes its own), each call is bounded, node tests skip with the reason without node.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .conftest import GatewayStack

NODE_DIR = Path(__file__).parent / "node"
HELLO = 'print("hi")'


@pytest.mark.filterwarnings("ignore:verify_ssl is deprecated:DeprecationWarning")
def test_client_aiopyston_lists_and_executes(gateway: GatewayStack) -> None:
    """aiopyston (aiohttp, trailing-slash routes) lists runtimes and runs a program."""
    pyston = pytest.importorskip("pyston")

    async def use() -> tuple[Any, Any]:
        client = pyston.PystonClient(base_url=f"{gateway.url}/api/v2/")
        try:
            runtimes = await asyncio.wait_for(client.runtimes(), 10)
            output = await asyncio.wait_for(
                client.execute("python", [pyston.File(HELLO)], version="*"), 10
            )
        finally:
            await client.close_session()
        return runtimes, output

    runtimes, output = asyncio.run(use())
    assert any(r.language == "python" and "py" in r.aliases for r in runtimes)
    assert output.success
    assert output.run_stage.output == "hi\n"
    assert output.raw_json["language"] == "python"


def test_client_ultra_piston_lists_and_executes(gateway: GatewayStack) -> None:
    """ultra-piston (httpx, name null, -1 memory limits) lists runtimes and runs a program."""
    ultra_piston = pytest.importorskip("ultra_piston")
    client = ultra_piston.PistonClient(base_url=f"{gateway.url}/api/v2/", rate_limit=0)
    runtimes = client.get_runtimes()
    assert any(r.language == "python" for r in runtimes)
    output = client.post_execute("python", "3.x", ultra_piston.File(content=HELLO), stdin="in")
    assert output.run.stdout == "hi\n"
    assert output.run.code == 0
    packages = client.get_packages()
    assert all(isinstance(p.installed, bool) for p in packages)


def test_client_pistonpy_lists_and_executes(
    gateway: GatewayStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pistonpy (requests, no Content-Type, empty name) lists runtimes and runs a program."""
    pistonpy = pytest.importorskip("pistonpy")
    models = pytest.importorskip("pistonpy.models")
    original = models.GetOutput.__init__

    def to_gateway(self: Any, payload: dict[str, Any]) -> None:
        original(self, payload)
        self._endpoint = f"{gateway.url}/api/v2/execute"

    monkeypatch.setattr(models.GetOutput, "__init__", to_gateway)
    app = pistonpy.PistonApp()
    app._endpoint = f"{gateway.url}/api/v2"
    version = app.languages["python"]
    output = app.run(language="python", version=version, code=HELLO)
    assert output["run"]["stdout"] == "hi\n"


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The npm client installed with ``npm ci`` from the committed lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the npm piston-client test")
    if not (NODE_DIR / "node_modules" / "piston-client").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return Path(node)


def test_client_npm_piston_client_lists_and_executes(
    gateway: GatewayStack, node_client: Path
) -> None:
    """npm piston-client (text/plain JSON bodies) lists runtimes, runs a program, reads 400s."""
    completed = subprocess.run(
        [str(node_client), "run_client.mjs", gateway.url],
        cwd=NODE_DIR,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    answer = json.loads(completed.stdout)
    assert any(r["language"] == "python" for r in answer["runtimes"])
    assert answer["result"]["run"]["stdout"] == "hi\n"
    assert answer["result"]["language"] == "python"
    assert answer["failed"] == {"message": "python-latest runtime is unknown"}
