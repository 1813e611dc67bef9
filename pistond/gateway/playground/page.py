"""The playground's routes: the page at ``/`` (for browsers) and ``/playground``, its bundled
assets under ``/playground/assets/``, and the example programs.

The JavaScript bundle is built from npm packages when pistond is installed (``build_hooks``)
into ``static/build/``. Without it (npm was missing then) the API works as usual and the page
answers 503 with a sentence saying why. Every answer carries a strict Content-Security-Policy:
scripts, styles and connections from this origin only, no inline script or style, no framing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pistond.gateway.playground.examples import Example, load_examples
from pistond.gateway.playground.negotiation import prefers_html
from pistond.resources import RECIPES, shipped

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

STATIC: Final = Path(__file__).parent / "static"
"""The page (``index.html``, committed) and the bundle (``build/``, built at install time)."""
BUNDLE_ENTRY: Final = "playground.js"
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
NOT_BUILT: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pistond playground unavailable</title></head>
<body><h1>The playground is not built in this installation</h1>
<p>Its JavaScript bundle is built from npm packages when pistond is installed, and npm was not
available then. Install Node.js and npm, then reinstall pistond.</p>
<p>The Piston API works as usual under <code>/api/v2/</code>.</p></body></html>
"""


@attrs.define(eq=False)
class _SecurityHeaders:
    """ASGI wrapper adding :data:`SECURITY_HEADERS` to every answer of the wrapped app."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() != "cache-control"
                ]
                headers.extend(
                    (name.lower().encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                )
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def shipped_recipes() -> Path | None:
    """The recipes shipped with pistond (see :mod:`pistond.resources`), if any."""
    recipes = shipped(RECIPES)
    return recipes if recipes is not None and recipes.is_dir() else None


@attrs.define(eq=False)
class Playground:
    """The page, its assets and its examples, read once from the installed files."""

    static: Path = STATIC
    recipes: Path | None = attrs.field(factory=shipped_recipes)
    _examples: list[Example] | None = attrs.field(default=None, init=False)

    @property
    def built(self) -> bool:
        """Whether the JavaScript bundle exists."""
        return (self.static / "build" / BUNDLE_ENTRY).is_file()

    async def page(self, request: Request) -> Response:
        """``GET /playground``: the page, or 503 with the reason when it was not built."""
        if not self.built:
            return HTMLResponse(NOT_BUILT, status_code=503, headers=SECURITY_HEADERS)
        html = (self.static / "index.html").read_bytes()
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    async def examples(self, request: Request) -> Response:
        """``GET /playground/examples.json``: ``{"examples": [...]}``, one per recipe test file."""
        if self._examples is None:
            self._examples = load_examples(self.recipes)
            logger.info("playground: %d example programs", len(self._examples))
        return JSONResponse(
            {"examples": [attrs.asdict(example) for example in self._examples]},
            headers=SECURITY_HEADERS,
        )

    def negotiate(
        self, api: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """``GET /``: the page for a client preferring HTML, else ``api``'s answer."""

        async def root(request: Request) -> Response:
            if prefers_html(request.headers.get("accept")):
                response = await self.page(request)
            else:
                response = await api(request)
            response.headers["Vary"] = "Accept"
            return response

        return root

    def routes(self) -> list[BaseRoute]:
        """``/playground``, ``/playground/`` , the examples and, when built, the assets."""
        routes: list[BaseRoute] = [
            Route("/playground", self.page, methods=["GET"]),
            Route("/playground/", self.page, methods=["GET"]),
            Route("/playground/examples.json", self.examples, methods=["GET"]),
        ]
        if self.built:
            assets = StaticFiles(directory=self.static / "build", follow_symlink=False)
            routes.append(Mount("/playground/assets", app=_SecurityHeaders(assets)))
        return routes
