"""The HTTP routes of submissions, under ``/api/v2/submissions``.

- ``POST /api/v2/submissions`` (``?wait=true`` to wait, bounded by
  ``PISTON_SUBMISSION_MAX_WAIT``): a Piston execute body, plus an optional ``callback_url``;
  201 with the submission (its ``token``) and ``Location``;
- ``POST /api/v2/submissions/batch``: ``{"submissions": [body, ...]}``, all accepted or none;
  201 with the submissions, in order;
- ``GET /api/v2/submissions/{token}``: the submission; 404 for any token that is not one;
- ``GET /api/v2/submissions/batch?tokens=a,b,...``: those submissions, null where unknown.

Where API keys are on, a submission belongs to the key that made it: to every other key its
token reads as unknown (the same 404, null in a batch), so a leaked token alone reveals nothing.

A submission is checked as it is accepted, as far as the gateway can: the body's shape with the
daemon's own validation and Piston's messages (a batch's messages start with
``submissions[i]:``), the runtime against the daemon's list (when the daemon answers), and the
callback URL against ``PISTON_CALLBACK_ALLOW``. Limits above the configured ones (and more
``tests`` than ``PISTON_MAX_TESTS``) are refused when the job runs, by the daemon that runs it:
its refusal becomes the submission's ``error``. ``tests`` and ``compare`` pass through
(:mod:`~pistond.submissions.judging`). Each submission takes a token of its client's rate limit
and gets its API key's limits (:mod:`pistond.gateway.admission`), as an execute does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import attrs
import msgpack
import sqlalchemy.exc
import trio
from starlette.responses import JSONResponse
from starlette.routing import Route

from pistond.client import PistonClient
from pistond.config import Limits
from pistond.errors import InvalidParams, PistondError, RuntimeUnknown
from pistond.gateway import v2
from pistond.gateway.admission import Admission, with_headers
from pistond.gateway.audit import audit_record
from pistond.gateway.caller import caller_of
from pistond.gateway.errors import DaemonUnavailable, HttpError, bad_request, unavailable
from pistond.semver import max_satisfying
from pistond.submissions.addresses import CallbackRefused
from pistond.submissions.judging import add_test_params
from pistond.submissions.records import NewSubmission, State
from pistond.submissions.service import database_unavailable
from pistond.submissions.store import QueueFull
from pistond.submissions.tokens import is_token
from pistond.submissions.views import submission_json
from pistond.validation import validate_execute

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from pistond.gateway.daemon_socket import DaemonSocket
    from pistond.models import RuntimeInfo
    from pistond.submissions.records import Submission
    from pistond.submissions.service import SubmissionService

logger = logging.getLogger(__name__)

BASE: Final = "/api/v2/submissions"
NOT_FOUND: Final = "submission not found"
QUEUE_FULL: Final = "the submission queue is full, try again later"
RUNTIMES_TTL: Final = 5.0
"""Seconds the daemon's runtime list is reused to check submissions."""
_UNCAPPED: Final = Limits(
    **{name: -1 if name.endswith("memory_limit") else 2**62 for name in attrs.fields_dict(Limits)}
)
"""Limits that let every request limit through (the daemon applies the real ones)."""
UNBOUNDED_TESTS: Final = 2**31
"""Tests let through (the body size bounds them; the daemon applies PISTON_MAX_TESTS)."""
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no", ""})


@attrs.frozen
class _AnyRuntime:
    """The runtime a submission names, when the daemon cannot be asked which exist."""

    language: str


@attrs.define(eq=False)
class SubmissionRoutes:
    """The route handlers.

    Args:
        service: the submission service (its store may be unavailable: 503).
        daemon: the daemon's socket, asked for its runtimes.
        json_body: reads a request's JSON body as the gateway does (limits, 413, 415).
        admission: rate limits and API key limits.
    """

    service: SubmissionService
    daemon: DaemonSocket
    json_body: Callable[[Request], Awaitable[object]]
    admission: Admission = attrs.field(factory=Admission)
    _runtimes: tuple[float, list[RuntimeInfo]] | None = attrs.field(init=False, default=None)

    def routes(
        self, handled: Callable[[Callable[[Request], Awaitable[Response]]], Any]
    ) -> list[Route]:
        """The Starlette routes, each also with a trailing slash; ``handled`` wraps endpoints
        so that :class:`HttpError` becomes the gateway's JSON answer."""
        table = [
            (BASE, self.submit, ["POST"]),
            (f"{BASE}/batch", self.batch, ["GET", "POST"]),
            (BASE + "/{token}", self.read, ["GET"]),
        ]
        return [
            Route(path, handled(endpoint), methods=methods)
            for base, endpoint, methods in table
            for path in (base, base + "/")
        ]

    # -- endpoints ---------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        """``POST /api/v2/submissions``."""
        await self.service.writable_store()
        wait = _flag(request, "wait")
        rate = self.admission.charge(caller_of(request))
        try:
            new = await self._accept(request, await self.json_body(request), "")
            (submission,) = await self._create([new])
        except HttpError as exc:
            raise with_headers(exc, rate) from None
        if wait:
            with trio.move_on_after(self.service.settings.max_wait):
                submission = await self.service.wait_done(submission)
            if submission.state is not State.DONE:
                submission = await self.service.read(submission.token) or submission
        return JSONResponse(
            submission_json(submission),
            status_code=201,
            headers={**rate, "Location": f"{BASE}/{submission.token}"},
        )

    async def batch(self, request: Request) -> Response:
        """``POST`` and ``GET /api/v2/submissions/batch``."""
        if request.method == "GET":
            return await self._read_batch(request)
        await self.service.writable_store()
        body = await self.json_body(request)
        items = body.get("submissions") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise bad_request("submissions is required as a non-empty array")
        limit = self.service.settings.max_batch
        if len(items) > limit:
            raise bad_request(f"submissions cannot hold more than {limit} submissions")
        rate = self.admission.charge(caller_of(request), len(items))
        try:
            accepted = [
                await self._accept(request, item, f"submissions[{i}]: ")
                for i, item in enumerate(items)
            ]
            created = await self._create(accepted)
        except HttpError as exc:
            raise with_headers(exc, rate) from None
        return JSONResponse(
            [submission_json(item) for item in created], status_code=201, headers=rate
        )

    async def read(self, request: Request) -> Response:
        """``GET /api/v2/submissions/{token}``."""
        token = request.path_params["token"]
        found = await self.service.read(token) if is_token(token) else None
        if found is None or not found.readable_by(_key_id(request)):
            raise HttpError(404, NOT_FOUND)
        return JSONResponse(submission_json(found))

    async def _read_batch(self, request: Request) -> Response:
        tokens = [token for token in request.query_params.get("tokens", "").split(",") if token]
        if not tokens:
            raise bad_request("tokens is required: a comma-separated list of tokens")
        limit = self.service.settings.max_batch
        if len(tokens) > limit:
            raise bad_request(f"tokens cannot hold more than {limit} tokens")
        valid = [token for token in tokens if is_token(token)]
        found = dict(zip(valid, await self.service.read_many(valid), strict=True))
        key = _key_id(request)
        answer: list[dict[str, Any] | None] = []
        for token in tokens:
            submission = found.get(token)
            if submission is not None and submission.readable_by(key):
                answer.append(submission_json(submission))
            else:
                answer.append(None)
        return JSONResponse(answer)

    # -- accepting ---------------------------------------------------------------------------

    async def _accept(self, request: Request, body: object, prefix: str) -> NewSubmission:
        """Check one submission body; the record to store.

        Raises:
            HttpError: 400 with the first failed rule (after ``prefix``); 403 for a limit
                above the API key's.
        """
        fields: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
        callback_url = fields.pop("callback_url", None)
        params = v2.execute_params(fields)
        add_test_params(params, fields)
        audit = audit_record(request)
        audit.describe()
        try:
            await self.admission.cap(caller_of(request), params)
        except HttpError as exc:
            raise HttpError(exc.status, prefix + exc.message, exc.headers) from None
        runtimes = await self._known_runtimes()

        def resolve(language: str, version: str) -> RuntimeInfo | _AnyRuntime:
            runtime = _resolve(runtimes, language, version)
            if not isinstance(runtime, _AnyRuntime):
                audit.runtime(runtime.language, runtime.version)
            return runtime

        try:
            validate_execute(
                params,
                resolve=resolve,
                runtime_limits=lambda _runtime: _UNCAPPED,
                max_tests=UNBOUNDED_TESTS,
            )
        except (InvalidParams, RuntimeUnknown) as exc:
            raise bad_request(prefix + exc.message) from None
        if callback_url is not None and callback_url != "":
            try:
                await self.service.policy.check(callback_url)
            except CallbackRefused as exc:
                raise bad_request(prefix + str(exc)) from None
        else:
            callback_url = None
        return NewSubmission(
            params=msgpack.packb(params, use_bin_type=True),
            callback_url=callback_url,
            owner=_key_id(request),
        )

    async def _create(self, new: list[NewSubmission]) -> list[Submission]:
        try:
            store = await self.service.writable_store()
            created = await store.create(new, max_pending=self.service.settings.max_pending)
        except QueueFull:
            raise unavailable(QUEUE_FULL) from None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise database_unavailable(exc) from None
        logger.debug("accepted %d submissions: %s", len(created), [item.id for item in created])
        self.service.submitted()
        return created

    async def _known_runtimes(self) -> list[RuntimeInfo] | None:
        """The daemon's runtimes (reused for :data:`RUNTIMES_TTL`), or None if it is down."""
        now = trio.current_time()
        if self._runtimes is not None and now - self._runtimes[0] < RUNTIMES_TTL:
            return self._runtimes[1]
        try:
            listed = await self.daemon.run(PistonClient.runtimes)
        except (DaemonUnavailable, PistondError):
            return None
        self._runtimes = (now, listed)
        return listed


def _resolve(
    runtimes: list[RuntimeInfo] | None, language: str, version: str
) -> RuntimeInfo | _AnyRuntime:
    """The runtime the daemon would pick (piston-v2.md §1.5), or a stand-in without a list.

    Raises:
        RuntimeUnknown: no listed runtime matches.
    """
    if runtimes is None:
        return _AnyRuntime(language)
    candidates = [r for r in runtimes if r.language == language or language in r.aliases]
    best = max_satisfying([runtime.version for runtime in candidates], version)
    for runtime in candidates:
        if runtime.version == best:
            return runtime
    raise RuntimeUnknown(f"{language}-{version} runtime is unknown")


def _key_id(request: Request) -> str | None:
    """The id of the API key the request presented, None without one."""
    key = caller_of(request).key
    return None if key is None else key.id


def _flag(request: Request, name: str) -> bool:
    """A true/false query parameter (absent: false).

    Raises:
        HttpError: 400 for another value.
    """
    value = request.query_params.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request(f"{name} must be true or false")
