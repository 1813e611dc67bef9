"""The audit log: one structured line per HTTP request and per WebSocket session.

Each line is a JSON object on the logger ``pistond.gateway.audit`` (level INFO), written when
the answer is complete (for a WebSocket, when the session ends)::

    {"type": "http", "method": "POST", "route": "/api/v2/execute", "status": 200,
     "duration_ms": 41.2, "client": "203.0.113.9", "key": "3f9a1c2b7d4e",
     "language": "python", "version": "3.12.0", "jobs": 1,
     "run": {"status": "ok", "wall_ms": 23, "cpu_ms": 18, "memory": 9437184}}

``route`` is the route, never the path as sent (a submission's path holds its token: it shows
as ``/api/v2/submissions/{token}``); ``key`` is the API key's public id (null without one);
``client`` is the address behind trusted proxies. Stages carry their status (``ok`` for a clean
exit, else Piston's ``RE``, ``TO``, ...), wall and CPU milliseconds and peak memory; WebSocket
sessions add their ``close`` code. Never logged: sources, stdin, arguments, output, file names,
keys, tokens, query strings. ``PISTON_GATEWAY_AUDIT_LOG=false`` turns the lines off.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import attrs

from pistond.gateway.caller import CALLER, scope_caller
from pistond.gateway.metrics import route_label
from pistond.gateway.proxies import TrustedProxies
from pistond.models import Verdict

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from pistond.models import JobExit, JobResult, StageResult

audit_logger = logging.getLogger("pistond.gateway.audit")

AUDIT: Final = "pistond.audit"
"""The scope key of the request's :class:`AuditRecord`."""
MAX_NAME: Final = 64
"""Characters of a language or version name kept."""


@attrs.define(eq=False)
class AuditRecord:
    """What the handlers tell the audit line about a request's job."""

    language: str | None = None
    version: str | None = None
    jobs: int = 0
    """Jobs the request started (a batch of submissions: its size)."""
    stages: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """``compile`` / ``run``: status and measurements."""

    def describe(self, jobs: int = 1) -> None:
        """Count the jobs a request asks for (a batch of submissions: its size)."""
        self.jobs += jobs

    def runtime(self, language: str, version: str) -> None:
        """Note the runtime chosen for the request (the first, for a batch).

        Only a runtime the daemon resolved is logged, never the name a client sent: that is
        client text, and a refused request's would land in the log as it was typed.
        """
        if self.language is None:
            self.language, self.version = language[:MAX_NAME], version[:MAX_NAME]

    def result(self, result: JobResult) -> None:
        """Note an execute's outcome: the runtime that ran it and its stages."""
        self.language, self.version = result.language[:MAX_NAME], result.version[:MAX_NAME]
        for name, stage in (("compile", result.compile), ("run", result.run)):
            if stage is not None:
                self.stages[name] = _stage(stage)
        if result.tests is not None:
            self.stages["tests"] = {
                "count": len(result.tests),
                "accepted": sum(1 for test in result.tests if test.verdict is Verdict.ACCEPTED),
            }

    def exit(self, event: JobExit) -> None:
        """Note an interactive stage's end."""
        self.stages[event.stage.value] = {
            "status": "ok" if event.status is None else event.status.value,
            "wall_ms": event.wall_time,
            "cpu_ms": event.cpu_time,
            "memory": event.memory,
        }


def _stage(stage: StageResult) -> dict[str, Any]:
    return {
        "status": "ok" if stage.status is None else stage.status.value,
        "wall_ms": stage.wall_time,
        "cpu_ms": stage.cpu_time,
        "memory": stage.memory,
    }


def audit_record(connection: HTTPConnection) -> AuditRecord:
    """The audit record of a request (a detached one where no audit middleware runs)."""
    found = connection.scope.get(AUDIT)
    if isinstance(found, AuditRecord):
        return found
    record = AuditRecord()
    connection.scope[AUDIT] = record
    return record


@attrs.define(eq=False)
class AuditMiddleware:
    """ASGI middleware writing the audit line of every request and WebSocket session."""

    app: ASGIApp
    proxies: TrustedProxies = attrs.field(factory=TrustedProxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; log its line when it is done, whatever happened."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        record = AuditRecord()
        scope[AUDIT] = record
        outcome: dict[str, Any] = {"status": 500}

        async def sending(message: Message) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                outcome["status"] = message["status"]
            elif kind == "websocket.accept":
                outcome["status"] = 101
            elif kind == "websocket.close":
                outcome.setdefault("close", message.get("code", 1000))
                if outcome["status"] == 500:
                    outcome["status"] = 403  # closed before accepting: a refused handshake
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            audit_logger.info("%s", json.dumps(self._line(scope, record, outcome, started)))

    def _line(
        self, scope: Scope, record: AuditRecord, outcome: dict[str, Any], started: float
    ) -> dict[str, Any]:
        websocket = scope["type"] == "websocket"
        caller = scope_caller(scope) if CALLER in scope else None
        client = caller.client if caller is not None else self.proxies.client_of(scope)
        line: dict[str, Any] = {
            "type": "ws" if websocket else "http",
            "method": "GET" if websocket else scope.get("method", "GET")[:16],
            "route": route_label(scope["path"]),
            "status": outcome["status"],
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "client": client,
            "key": None if caller is None or caller.key is None else caller.key.id,
        }
        if record.language is not None:
            line["language"] = record.language
            line["version"] = record.version
        if record.jobs:
            line["jobs"] = record.jobs
        line.update(record.stages)
        if websocket and "close" in outcome:
            line["close"] = outcome["close"]
        return line
