"""RFC 9457 problem details for every error, and never a bare 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://pmtct.org/problems/"


class Problem(Exception):
    """Raise from anywhere in a request to answer with problem+json."""

    def __init__(self, status: int, code: str, detail: str, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ").capitalize()
        self.extra = extra
        self.headers: dict[str, str] = {}


def problem_response(
    status: int, code: str, detail: str, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + code,
        "title": title or code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    503: "unavailable",
}


#: the detail of the HTTPException FastAPI raises when a JSON body cannot be decoded (not UTF-8)
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")} for e in exc.errors()]


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.detail, exc.title, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        content_type = request.headers.get("content-type", "")
        body_not_json = any(e["loc"] == ["body"] and e["type"] == "model_attributes_type" for e in errors)
        if body_not_json and "json" not in content_type:
            return problem_response(
                415,
                "unsupported_media_type",
                f"Send the body as JSON with Content-Type: application/json (got {content_type or 'none'!r}).",
            )
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(400, "malformed_json", "The request body is not valid JSON.", errors=errors)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
        return problem_response(
            422, "validation_failed", f"{where}: {first['msg']}", "Request failed validation", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body it could not decode at all (bytes that are not UTF-8)
            return problem_response(400, "malformed_json", "The request body is not valid JSON in UTF-8.")
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem_response(exc.status_code, code, detail, headers=getattr(exc, "headers", None))

    # Anything else is answered by `servicekit.guard.Guard` (500, or 503 / 422 by what failed), the
    # outermost middleware, so it is logged once, as JSON, and counted.


# --- what every operation declares in /openapi.json ------------------------------------------------

#: the one schema of every error body (RFC 9457); services add their own fields beside `code`
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details: `code` is machine-readable, `detail` is for people.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
    "additionalProperties": True,
}

#: what each status means whenever the runtime answers it, for any operation it applies to
_GENERIC: dict[int, str] = {
    400: "`malformed_json`, `bad_request` and the operation's own codes: the body is not JSON (or not UTF-8),"
    " or a value is malformed in a way its schema cannot say (see `code`).",
    401: "`unauthorized`: no bearer token, or one that is invalid or expired.",
    403: "`insufficient_scope`, `facility_forbidden`: the token does not allow this.",
    404: "Nothing by that id, ref or facility that this client may see (see `code`).",
    409: "The request conflicts with what is recorded (see `code`).",
    413: "`payload_too_large`, `batch_too_large`: the body is larger than the service reads.",
    415: "`unsupported_media_type`: send the body as `Content-Type: application/json`.",
    422: "`validation_failed`, `invalid_value` and the operation's own codes: the request is not valid.",
    503: "`unavailable` (with `Retry-After`): the database or broker is not reachable; send it again later.",
}


def _applicable(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    if "operations" in operation.get("tags", ()):
        return [503] if path == "/readyz" else []
    # 400: a value the schema cannot express as wrong (a cursor, a missing purpose); 404: an id, a
    # ref or a facility that names nothing this client may see, in the path or in the query
    statuses = [400, 404, 422, 503]
    if "requestBody" in operation:
        statuses += [413, 415]
    if operation.get("security") or any(p.get("name") == "token" for p in operation.get("parameters", ())):
        statuses += [401, 403]
    if method in ("post", "put", "patch", "delete"):
        statuses.append(409)
    return sorted(statuses)


#: FHIR paths answer errors as FHIR R4 OperationOutcome resources, in FHIR's media type
FHIR_PREFIX = "/fhir"
FHIR_JSON = "application/fhir+json"
_OPERATION_OUTCOME: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome (https://hl7.org/fhir/R4/operationoutcome.html).",
    "required": ["resourceType", "issue"],
    "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}},
}


def declare(app: FastAPI) -> None:
    """Declare in /openapi.json every error an operation can answer, as problem+json: the generic
    ones the runtime answers for any operation (by what the operation takes: a body, a token, a
    path id), beside those the operation declares itself. FastAPI's own 422 (`HTTPValidationError`,
    `application/json`) is replaced: a validation error is a problem too."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("Problem", PROBLEM_SCHEMA)
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        outcome = {FHIR_JSON: {"schema": _OPERATION_OUTCOME}}
        for path, item in schema.get("paths", {}).items():
            fhir = path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                for status in _applicable(path, method, operation):
                    responses.setdefault(str(status), {"description": _GENERIC[status]})
                for key, declared in responses.items():
                    if not key.isdigit() or int(key) < 400:
                        continue
                    content = declared.get("content") or {}
                    media = FHIR_JSON if fhir else PROBLEM_JSON
                    if media not in content and set(content) <= {"application/json"}:
                        # FastAPI's own 422 (HTTPValidationError, application/json) or a bare description;
                        # an answer the operation declares in a media type of its own (the dashboard's
                        # sign-in page, text/html) stays as declared
                        declared["content"] = outcome if fhir else problem
                    if declared.get("description") in (None, "", "Validation Error"):
                        declared["description"] = _GENERIC.get(int(key), "See `code`.")
        for unused in ("HTTPValidationError", "ValidationError"):
            if unused in components and unused not in str(schema.get("paths")):
                del components[unused]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
