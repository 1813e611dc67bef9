"""The compile cache through the gateway: Piston's answer unchanged, a header, metrics.

Against real pistond only (the fake daemon has no compiler and no cache).
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

import pytest
import trio

if TYPE_CHECKING:
    import httpx

    from .conftest import GatewayStack


@pytest.fixture
def real(gateway: GatewayStack) -> GatewayStack:
    """The stack over real pistond; skips the fake-daemon pass."""
    if gateway.fake is not None:
        pytest.skip("the fake daemon has no compile cache; this runs against real pistond")
    return gateway


def c_body(marker: str) -> dict[str, object]:
    source = f'#include <stdio.h>\nint main(void) {{ puts("{marker}"); return 0; }}\n'
    return {"language": "c", "version": "*", "files": [{"name": "main.c", "content": source}]}


async def post(http: httpx.AsyncClient, body: object) -> httpx.Response:
    with trio.fail_after(60):
        return await http.post("/api/v2/execute", json=body)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match[1])


async def test_gateway_cached_compile_has_pistons_shape_and_a_header(
    real: GatewayStack, http: httpx.AsyncClient
) -> None:
    """A repeated C program answers the same Piston JSON keys and output; the header says
    miss, then hit; /metrics counts the hit from the daemon's status."""
    marker = uuid.uuid4().hex
    before = metric((await http.get("/metrics")).text, "pistond_compile_cache_hits_total")
    cold = await post(http, c_body(marker))
    warm = await post(http, c_body(marker))
    assert (cold.status_code, warm.status_code) == (200, 200)
    assert cold.headers["pistond-compile-cache"] == "miss"
    assert warm.headers["pistond-compile-cache"] == "hit"
    assert list(warm.json()) == list(cold.json()) == ["compile", "run", "language", "version"]
    assert list(warm.json()["compile"]) == list(cold.json()["compile"])
    assert "cached" not in warm.json()["compile"]
    assert warm.json()["run"]["stdout"] == cold.json()["run"]["stdout"] == f"{marker}\n"
    text = (await http.get("/metrics")).text
    assert metric(text, "pistond_compile_cache_hits_total") >= before + 1
    assert metric(text, "pistond_compile_cache_enabled") == 1
    assert metric(text, "pistond_compile_cache_entries") >= 1


async def test_gateway_interpreted_answer_has_no_cache_header(
    real: GatewayStack, http: httpx.AsyncClient
) -> None:
    """An answer without a compile stage carries no compile cache header."""
    response = await post(
        http, {"language": "python", "version": "*", "files": [{"content": "print(1)"}]}
    )
    assert response.status_code == 200
    assert "pistond-compile-cache" not in response.headers
