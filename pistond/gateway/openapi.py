"""The OpenAPI 3.0 document of the gateway's HTTP API, served at ``/api/v2/openapi.json``."""

from __future__ import annotations

from typing import Any, Final

from pistond.config import PISTON_REQUEST_LIMIT_KEYS

PISTON_VERSION: Final = "3.1.1"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MESSAGE: Final = _ref("Message")
_ERRORS: Final = {
    "400": _json(_MESSAGE, "Validation failure or malformed JSON"),
    "413": _json(_MESSAGE, "Request body too large"),
    "408": _json(_MESSAGE, "The request head or body did not arrive in time"),
    "415": _json(_MESSAGE, "Body is not JSON"),
    "401": _json(_MESSAGE, "API keys are on and the key is missing, invalid or revoked"),
    "403": _json(_MESSAGE, "The API key may not do this, or the browser's origin is not allowed"),
    "429": _json(
        _MESSAGE,
        "This client's rate limit or share of jobs is used up; see Retry-After and RateLimit-*",
    ),
    "503": _json(
        _MESSAGE, "Daemon unavailable or overloaded, or the gateway is full; see Retry-After"
    ),
}

_STAGE: Final = {
    "type": "object",
    "required": [
        "signal", "stdout", "stderr", "code", "output", "memory", "message", "status",
        "cpu_time", "wall_time",
    ],
    "properties": {
        "signal": {"type": "string", "nullable": True},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "code": {"type": "integer", "nullable": True},
        "output": {"type": "string"},
        "memory": {"type": "integer", "nullable": True, "description": "peak memory in bytes"},
        "message": {"type": "string", "nullable": True},
        "status": {
            "type": "string",
            "nullable": True,
            "enum": ["RE", "SG", "TO", "ML", "OL", "EL", "XX", None],
        },
        "cpu_time": {"type": "number", "nullable": True},
        "wall_time": {"type": "number", "nullable": True},
    },
}  # fmt: skip

_EXECUTE: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["language", "version", "files"],
    "properties": {
        "language": {"type": "string", "minLength": 1},
        "version": {"type": "string", "minLength": 1},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["content"],
                "properties": {
                    "name": {"type": "string"},
                    "content": {"type": "string"},
                    "encoding": {
                        "type": "string",
                        "description": "utf8 (default), base64 or hex; any other value means utf8",
                    },
                },
            },
        },
        "stdin": {"type": "string", "description": "a newline is appended unless already last"},
        "args": {"type": "array", "items": {"type": "string"}},
        **{
            name: {
                "type": "integer",
                "description": "0 or absent: the configured limit"
                + ("; -1: the configured limit" if "memory" in name else ""),
            }
            for name in PISTON_REQUEST_LIMIT_KEYS
        },
    },
}

_PACKAGE_REQUEST: Final = {
    "type": "object",
    "required": ["language", "version"],
    "properties": {
        "language": {"type": "string", "minLength": 1},
        "version": {"type": "string", "minLength": 1},
    },
}


_HEALTH: Final = {
    "type": "object",
    "required": ["status", "live", "ready", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unready"]},
        "live": {"type": "boolean"},
        "ready": {"type": "boolean"},
        "message": {"type": "string"},
        "checks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["ready"],
                "properties": {
                    "ready": {"type": "boolean"},
                    "runtimes": {"type": "integer"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
_INFO: Final = {
    "type": "object",
    "required": ["version", "gateway_version", "piston_version", "sandbox", "limits", "gateway"],
    "properties": {
        "version": {"type": "string"},
        "gateway_version": {"type": "string"},
        "piston_version": {"type": "string"},
        "sandbox": {
            "type": "object",
            "properties": {
                "cgroup": {"type": "string"},
                "seccomp": {"type": "boolean"},
                "network": {"type": "boolean"},
            },
        },
        "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
        "gateway": {"type": "object"},
        "key": {"type": "object", "description": "the presented API key's id and policy"},
    },
}


def health_paths() -> dict[str, Any]:
    """The health and information routes (open: no API key needed)."""
    ready = {
        "200": _json(_ref("Health"), "Ready: the daemon answers and has runtimes"),
        "503": _json(_ref("Health"), "Not ready; message and checks say why"),
    }
    return {
        "/api/v2/health": {"get": {"operationId": "health", "responses": ready}},
        "/api/v2/health/ready": {"get": {"operationId": "readiness", "responses": ready}},
        "/api/v2/health/live": {
            "get": {
                "operationId": "liveness",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"type": "string", "enum": ["live"]}},
                        },
                        "The gateway answers",
                    )
                },
            }
        },
        "/api/v2/info": {
            "get": {
                "operationId": "info",
                "responses": {
                    "200": _json(_ref("Info"), "Versions, sandbox features, limits, policy"),
                    "503": _ERRORS["503"],
                },
            }
        },
    }


def openapi_document(*, submissions: bool = False) -> dict[str, Any]:
    """The OpenAPI document, as a fresh JSON-ready dict; with the ``/api/v2/submissions``
    routes when the gateway serves them."""
    document = _piston_document()
    document["paths"].update(health_paths())
    document["components"]["schemas"].update({"Health": _HEALTH, "Info": _INFO})
    document["components"]["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "Needed by every route but /, health, info and this document when "
            "PISTON_GATEWAY_API_KEYS is on; also accepted as a bare Authorization header",
        }
    }
    if submissions:
        document["paths"].update(submission_paths())
        document["components"]["schemas"].update(submission_schemas())
    return document


def _piston_document() -> dict[str, Any]:
    package_body = {"required": True, "content": {"application/json": {"schema": _PACKAGE_REQUEST}}}
    package_answers = {
        "200": _json(_ref("PackageResult"), "Done"),
        "403": _json(_MESSAGE, "The gateway may not manage packages"),
        "404": _json(_MESSAGE, "No such package"),
        "500": _json(_MESSAGE, "The package operation failed"),
        **_ERRORS,
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pistond gateway: the Piston v2 API",
            "version": PISTON_VERSION,
            "description": "Piston-compatible code execution. Interactive jobs use the "
            "WebSocket /api/v2/connect (not described here).",
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "version",
                    "responses": {"200": _json(_MESSAGE, "The Piston version")},
                }
            },
            "/api/v2/runtimes": {
                "get": {
                    "operationId": "runtimes",
                    "responses": {
                        "200": _json({"type": "array", "items": _ref("Runtime")}, "Runtimes"),
                        "503": _ERRORS["503"],
                    },
                }
            },
            "/api/v2/execute": {
                "post": {
                    "operationId": "execute",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ExecuteRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("ExecuteResult"), "The job ran"),
                        "500": _json(_MESSAGE, "The job failed inside pistond"),
                        **_ERRORS,
                    },
                }
            },
            "/api/v2/packages": {
                "get": {
                    "operationId": "packages",
                    "responses": {
                        "200": _json({"type": "array", "items": _ref("Package")}, "Packages"),
                        "500": _json(_MESSAGE, "The package index could not be read"),
                        "503": _ERRORS["503"],
                    },
                },
                "post": {
                    "operationId": "installPackage",
                    "requestBody": package_body,
                    "responses": package_answers,
                },
                "delete": {
                    "operationId": "uninstallPackage",
                    "requestBody": package_body,
                    "responses": package_answers,
                },
            },
        },
        "components": {
            "schemas": {
                "Message": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string"}},
                },
                "Runtime": {
                    "type": "object",
                    "required": ["language", "version", "aliases"],
                    "properties": {
                        "language": {"type": "string"},
                        "version": {"type": "string"},
                        "aliases": {"type": "array", "items": {"type": "string"}},
                        "runtime": {"type": "string"},
                    },
                },
                "ExecuteRequest": _EXECUTE,
                "Stage": _STAGE,
                "ExecuteResult": {
                    "type": "object",
                    "required": ["run", "language", "version"],
                    "properties": {
                        "compile": _ref("Stage"),
                        "run": _ref("Stage"),
                        "language": {"type": "string"},
                        "version": {"type": "string"},
                    },
                },
                "Package": {
                    "type": "object",
                    "required": ["language", "language_version", "installed"],
                    "properties": {
                        "language": {"type": "string"},
                        "language_version": {"type": "string"},
                        "installed": {"type": "boolean"},
                    },
                },
                "PackageResult": {
                    "type": "object",
                    "required": ["language", "version"],
                    "properties": {
                        "language": {"type": "string"},
                        "version": {"type": "string"},
                    },
                },
            }
        },
    }


_SUBMISSION_ERRORS: Final = {
    key: value
    for key, value in _ERRORS.items()
    if key in ("400", "401", "403", "408", "413", "415", "429", "503")
}
_NULLABLE_SUBMISSION: Final = {"allOf": [_ref("Submission")], "nullable": True}


def submission_paths() -> dict[str, Any]:
    """The paths of asynchronous submissions (pistond's addition)."""
    created = {"Location": {"description": "the submission's URL", "schema": {"type": "string"}}}
    return {
        "/api/v2/submissions": {
            "post": {
                "operationId": "submit",
                "description": "Store a submission and answer with its token at once (or, with "
                "wait=true, once it is done or after the server's longest wait).",
                "parameters": [
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SubmissionRequest")}},
                },
                "responses": {
                    "201": {
                        **_json(_ref("Submission"), "Stored (and, with wait, maybe done)"),
                        "headers": created,
                    },
                    **_SUBMISSION_ERRORS,
                },
            }
        },
        "/api/v2/submissions/batch": {
            "post": {
                "operationId": "submitBatch",
                "description": "Store many submissions, all or none; their tokens in order.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SubmissionBatch")}},
                },
                "responses": {
                    "201": _json({"type": "array", "items": _ref("Submission")}, "Stored"),
                    **_SUBMISSION_ERRORS,
                },
            },
            "get": {
                "operationId": "readBatch",
                "parameters": [
                    {
                        "name": "tokens",
                        "in": "query",
                        "required": True,
                        "description": "comma-separated tokens",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": _NULLABLE_SUBMISSION},
                        "The submissions, null for unknown tokens",
                    ),
                    "400": _ERRORS["400"],
                    "503": _ERRORS["503"],
                },
            },
        },
        "/api/v2/submissions/{token}": {
            "get": {
                "operationId": "readSubmission",
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(_ref("Submission"), "The submission"),
                    "404": _json(_MESSAGE, "No submission has this token"),
                    "503": _ERRORS["503"],
                },
            }
        },
    }


def submission_schemas() -> dict[str, Any]:
    """The component schemas of the submission paths."""
    request = {
        **_EXECUTE,
        "properties": {
            **_EXECUTE["properties"],
            "callback_url": {
                "type": "string",
                "description": "http(s) URL that receives the submission by POST when done; "
                "only addresses the server allows (PISTON_CALLBACK_ALLOW)",
            },
        },
    }
    time = {"type": "string", "format": "date-time", "nullable": True}
    return {
        "SubmissionRequest": request,
        "SubmissionBatch": {
            "type": "object",
            "required": ["submissions"],
            "properties": {
                "submissions": {
                    "type": "array",
                    "minItems": 1,
                    "items": _ref("SubmissionRequest"),
                }
            },
        },
        "Submission": {
            "type": "object",
            "required": [
                "token", "state", "created_at", "started_at", "finished_at", "result", "error",
                "truncated", "callback",
            ],
            "properties": {
                "token": {"type": "string", "description": "128 random bits, 32 hex digits"},
                "state": {"type": "string", "enum": ["queued", "running", "done"]},
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": time,
                "finished_at": time,
                "result": {
                    "allOf": [_ref("ExecuteResult")],
                    "nullable": True,
                    "description": "what /api/v2/execute would have answered, once done",
                },
                "error": {
                    "type": "object",
                    "nullable": True,
                    "description": "why a done submission has no result",
                    "required": ["status", "message"],
                    "properties": {
                        "status": {"type": "integer"},
                        "message": {"type": "string"},
                    },
                },
                "truncated": {
                    "type": "boolean",
                    "description": "output was cut to the stored result size",
                },
                "callback": {
                    "type": "object",
                    "nullable": True,
                    "required": ["url", "state", "attempts", "error"],
                    "properties": {
                        "url": {"type": "string"},
                        "state": {
                            "type": "string",
                            "enum": ["pending", "delivered", "failed", "refused"],
                        },
                        "attempts": {"type": "integer"},
                        "error": {"type": "string", "nullable": True},
                    },
                },
            },
        },
    }  # fmt: skip
