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
    "429": _json(_MESSAGE, "This client runs its share of jobs already; see Retry-After"),
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

_EXECUTE: Final = {
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


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document, as a fresh JSON-ready dict."""
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
