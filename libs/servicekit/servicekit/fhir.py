"""FHIR R4 errors, the same way in every service that has a FHIR door (referrals' FHIR view,
enrolment's `POST /fhir`): every error under `/fhir` is an OperationOutcome in
`application/fhir+json`, said in FHIR from what the service's problem+json handlers decided (one
place decides status and code: `servicekit.problems`, the guard's 413 and 503 included).

`operation_outcome` builds one from a status, a code and a detail; `issue` builds one issue, with
the FHIRPath `expression` of what it is about (`Bundle.entry[3]`), for outcomes of several issues.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response

from .problems import FHIR_JSON, FHIR_PREFIX

#: HTTP status -> R4 issue-type (http://hl7.org/fhir/R4/valueset-issue-type.html)
ISSUE_TYPE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    428: "required",
    503: "transient",
}
#: the code system of our own codes (`servicekit.problems`, `servicekit.intake.Code`) in an issue's details
PROBLEM_SYSTEM = "https://pmtct.org/problems"


def issue(
    code: str,
    detail: str,
    *,
    issue_type: str = "processing",
    severity: str = "error",
    expression: Sequence[str] = (),
) -> dict[str, Any]:
    """One OperationOutcome issue: its R4 issue-type, our `code` as its details, the detail for people."""
    out: dict[str, Any] = {
        "severity": severity,
        "code": issue_type,
        "details": {"coding": [{"system": PROBLEM_SYSTEM, "code": code}], "text": detail},
        "diagnostics": detail,
    }
    if expression:
        out["expression"] = list(expression)
    return out


def outcome(issues: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome resource (as JSON) of these issues."""
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def operation_outcome(status: int, code: str, detail: str) -> dict[str, Any]:
    """A problem as FHIR says it: one issue, its type from the HTTP status, our `code` as details."""
    return outcome(
        [
            issue(
                code,
                detail,
                issue_type=ISSUE_TYPE.get(status, "exception"),
                severity="error" if status < 500 else "fatal",
            )
        ]
    )


def fhir_response(resource: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(resource), status_code=status_code, media_type=FHIR_JSON, headers=headers)


def is_fhir_path(path: str) -> bool:
    return path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")


def install_operation_outcomes(app: FastAPI) -> None:
    """Every error under /fhir as an OperationOutcome: the service's problem+json handlers answer
    first (one place decides status and code), then this says the same in FHIR."""
    for key, original in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _outcome_of(original)


def _outcome_of(original: Callable[..., Any]) -> Callable[..., Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        response = await original(request, exc)
        if not is_fhir_path(request.url.path):
            return response
        try:
            problem = json.loads(bytes(response.body))
        except ValueError:
            problem = {}
        found = operation_outcome(
            response.status_code, problem.get("code", "error"), problem.get("detail", "The request failed.")
        )
        extra = problem.get("outcome")
        if isinstance(extra, dict) and extra.get("resourceType") == "OperationOutcome":
            found = extra  # a problem that carries its own outcome (several issues, each naming an entry)
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return fhir_response(found, response.status_code, headers)

    return handler
