"""The playground over HTTP: ``/`` negotiation, the page and its policy, assets, examples, status.

Rules: the real test gateway (conftest.py) on 127.0.0.1, port 0; API clients' Accept headers
must keep getting Piston's JSON at ``/``; the page must carry a strict Content-Security-Policy
and no inline script, style or event handler. An app built over an empty static directory
stands for an installation whose bundle could not be built.
"""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from pistond.gateway.app import GatewaySettings, create_app
from pistond.gateway.playground.examples import (
    MAX_EXAMPLE_SIZE,
    example_language,
    load_examples,
)
from pistond.gateway.playground.negotiation import prefers_html
from pistond.gateway.playground.page import STATIC, Playground, shipped_recipes
from pistond.ppman.metadata import load_metadata

if TYPE_CHECKING:
    from .conftest import GatewayStack
    from .fake_daemon import FakeDaemon

CHROMIUM_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
BANNER = {"message": "Piston v3.1.1"}


class _PageScan(HTMLParser):
    """Scripts, stylesheets and attributes of a page, to check it against the policy."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.styles: list[str] = []
        self.inline_script = False
        self.inline_style_elements = 0
        self.handlers: list[str] = []
        self.style_attributes = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.handlers += [name for name in attributes if name.startswith("on")]
        self.style_attributes += "style" in attributes
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        elif tag == "style":
            self.inline_style_elements += 1
        elif tag == "link" and attributes.get("rel") == "stylesheet":
            self.styles.append(attributes["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


def _vary(response: httpx.Response) -> set[str]:
    """The request headers an answer says it varies with (lower case)."""
    return {name.strip().lower() for name in response.headers.get("vary", "").split(",")}


def _directives(policy: str) -> dict[str, list[str]]:
    parts = [part.split() for part in policy.split(";") if part.strip()]
    return {part[0]: part[1:] for part in parts}


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "application/json, text/html", "text/html;q=0.5, */*"],
)
async def test_root_keeps_piston_json_for_api_clients(
    http: httpx.AsyncClient, accept: str | None
) -> None:
    """GET / with no Accept, */*, JSON or HTML ranked no higher than JSON: Piston's banner."""
    headers = {"Accept": accept} if accept is not None else {}
    request = http.build_request("GET", "/", headers=headers)
    if accept is None:
        del request.headers["Accept"]
    response = await http.send(request)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == BANNER
    assert "accept" in _vary(response)


@pytest.mark.parametrize("accept", [CHROMIUM_ACCEPT, FIREFOX_ACCEPT, "text/html"])
async def test_root_serves_the_page_to_browsers(http: httpx.AsyncClient, accept: str) -> None:
    """GET / from a browser (HTML ranked above JSON) is the playground page."""
    response = await http.get("/", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "accept" in _vary(response)
    assert "<title>pistond playground</title>" in response.text


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("text/html", True),
        ("text/*", True),
        ("text/html;q=0", False),
        ("text/html;q=0.9, application/json", False),
        ("application/json;q=0.5, text/html", True),
        ("text/html, application/json", False),
        ("text/html;q=bogus, application/json;q=0.1", False),
        ("*/*;q=0.8, text/html", True),
        ("image/png", False),
        ("", False),
        ("garbage", False),
    ],
)
def test_prefers_html_ranks_html_strictly_above_json(accept: str, html: bool) -> None:
    """Only an Accept header ranking text/html above application/json chooses the page."""
    assert prefers_html(accept) is html


@pytest.mark.parametrize("path", ["/playground", "/playground/", "/"])
async def test_page_has_strict_csp_and_no_inline_code(http: httpx.AsyncClient, path: str) -> None:
    """The page sends a strict policy and uses no inline script, style or handler."""
    response = await http.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 200
    policy = _directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    for directive in ("script-src", "style-src", "connect-src"):
        assert policy[directive] == ["'self'"], directive
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert "'unsafe-eval'" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    scan = _PageScan()
    scan.feed(response.text)
    assert scan.scripts == [{"type": "module", "src": "/playground/assets/playground.js"}]
    assert not scan.inline_script
    assert scan.inline_style_elements == 0
    assert scan.handlers == []
    assert scan.style_attributes == 0
    assert scan.styles == ["/playground/assets/playground.css"]


async def test_page_assets_are_served_with_the_policy(http: httpx.AsyncClient) -> None:
    """The bundle and its style sheet are served as JavaScript and CSS, not sniffable."""
    script = await http.get("/playground/assets/playground.js")
    assert script.status_code == 200
    assert script.headers["content-type"].split(";")[0] in {
        "text/javascript",
        "application/javascript",
    }
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in script.headers
    style = await http.get("/playground/assets/playground.css")
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    missing = await http.get("/playground/assets/nope.js")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found"}
    escape = await http.get("/playground/assets/%2e%2e/index.html")
    assert escape.status_code == 404


def test_bundle_is_built_by_the_install() -> None:
    """The install built the bundle (bootstrap requires it): entry, style sheet, mode chunks."""
    build = STATIC / "build"
    assert (build / "playground.js").stat().st_size > 10_000
    assert (build / "playground.css").is_file()
    assert len(list((build / "chunks").glob("*.js"))) > 10


async def test_examples_are_the_recipes_test_files(gateway: GatewayStack) -> None:
    """/playground/examples.json has each host recipe's test file, matched to its language."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        response = await client.get("/playground/examples.json")
    assert response.status_code == 200
    examples = response.json()["examples"]
    recipes = shipped_recipes()
    assert recipes is not None
    found = {(e["package"], e["version"], e["language"], e["name"]): e for e in examples}
    for package, language, name in [
        ("python", "python", "test.py"),
        ("bash", "bash", "test.sh"),
        ("gcc", "c", "test.c"),
        ("gcc", "c++", "test.cpp"),
    ]:
        example = found[(package, "host", language, name)]
        assert example["content"] == (recipes / package / "host" / name).read_text()
    assert all(set(e) == {"package", "version", "language", "name", "content"} for e in examples)


def _recipe(root: Path, package: str, version: str, metadata: dict[str, Any], **files: str) -> Path:
    directory = root / package / version
    directory.mkdir(parents=True)
    (directory / "metadata.json").write_text(json.dumps(metadata))
    for name, content in files.items():
        (directory / name.replace("_", ".")).write_text(content)
    return directory


def test_example_language_by_extension_alias_or_single_runtime(tmp_path: Path) -> None:
    """test.<ext> names a runtime language or alias; a one-runtime package takes any test."""
    gcc = _recipe(
        tmp_path,
        "gcc",
        "1.0.0",
        {
            "language": "gcc",
            "version": "1.0.0",
            "provides": [
                {"language": "c", "aliases": ["gcc"]},
                {"language": "c++", "aliases": ["cpp"]},
            ],
        },
    )
    metadata = load_metadata(gcc / "metadata.json")

    def language(extension: str, source: Any = metadata) -> str | None:
        found = example_language(source, extension)
        return None if found is None else found.language

    assert language("c") == "c"
    assert language("cpp") == "c++"
    assert language("f90") is None
    ruby = _recipe(tmp_path, "ruby", "3.0.0", {"language": "ruby", "version": "3.0.0"})
    assert language("anything", load_metadata(ruby / "metadata.json")) == "ruby"


def test_examples_skip_links_large_binary_and_broken_recipes(tmp_path: Path) -> None:
    """Symbolic links, oversized or non-UTF-8 files and broken metadata give no example."""
    good = _recipe(
        tmp_path, "lua", "5.4.0", {"language": "lua", "version": "5.4.0"}, test_lua="print('OK')"
    )
    (good / "test.big").write_text("x" * (MAX_EXAMPLE_SIZE + 1))
    (good / "test.bin").write_bytes(b"\xff\xfe\x00")
    secret = tmp_path / "secret.txt"
    secret.write_text("not an example")
    os.symlink(secret, good / "test.link")
    broken = tmp_path / "broken" / "1.0.0"
    broken.mkdir(parents=True)
    (broken / "metadata.json").write_text("{not json")
    (broken / "test.sh").write_text("echo OK")
    host = _recipe(tmp_path, "bash", "host", {"language": "bash"}, test_sh="echo OK")
    examples = load_examples(tmp_path)
    assert [(e.package, e.version, e.name, e.content) for e in examples] == [
        ("bash", "host", "test.sh", "echo OK"),
        ("lua", "5.4.0", "test.lua", "print('OK')"),
    ]
    assert host.is_dir()
    assert load_examples(None) == []
    assert load_examples(tmp_path / "missing") == []


async def test_unbuilt_page_explains_and_api_still_works(
    gateway: GatewayStack, fake: FakeDaemon, tmp_path: Path
) -> None:
    """Without the bundle: /playground and a browser's / answer 503 saying why; the API works."""
    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>")
    settings = GatewaySettings(socket=Path(gateway.directory) / "fake.sock")
    app: Any = create_app(settings, playground=Playground(static=tmp_path, recipes=None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        page = await client.get("/playground")
        assert page.status_code == 503
        assert "not built" in page.text
        assert "npm" in page.text
        assert "/api/v2/" in page.text
        assert "<script" not in page.text
        assert "content-security-policy" in page.headers
        browser = await client.get("/", headers={"Accept": CHROMIUM_ACCEPT})
        assert browser.status_code == 503
        assert (await client.get("/")).json() == BANNER
        assert (await client.get("/playground/assets/playground.js")).status_code == 404
        runtimes = await client.get("/api/v2/runtimes")
        assert runtimes.status_code == 200
        assert any(r["language"] == "python" for r in runtimes.json())
        assert (await client.get("/playground/examples.json")).json() == {"examples": []}


async def test_status_is_the_daemons_status(gateway: GatewayStack) -> None:
    """GET /status (and /status/) passes the daemon's status through, read-only."""
    if gateway.fake is not None:
        pytest.skip("the fake daemon has no status method; this runs against real pistond")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        response = await client.get("/status")
        again = await client.get("/status/")
        refused = await client.post("/status", json={})
    assert response.status_code == 200
    status = response.json()
    assert set(status) >= {"version", "uptime", "jobs", "sandbox", "limits"}
    assert set(status["jobs"]) >= {"running", "queued", "completed", "failed"}
    assert status["sandbox"]["cgroup"] in {"v2", "hybrid", "v1", "none"}
    assert status["limits"]["run_timeout"] > 0
    assert again.status_code == 200
    assert refused.status_code == 405


async def test_status_without_daemon_is_503(gateway: GatewayStack) -> None:
    """GET /status when the daemon cannot be reached: 503 with the usual message."""
    async with httpx.AsyncClient(base_url=gateway.down_url, timeout=10) as client:
        response = await client.get("/status")
    assert response.status_code == 503
    assert response.json() == {"message": "the execution daemon is unavailable, try again later"}
