"""A local stand-in of the DHIS2 Web API's aggregate data import, for tests and local runs.

It follows the DHIS2 documentation of `POST /api/dataValueSets` (Developer guide, "Data" >
"Sending data values": a JSON `dataValueSet`, import parameters `dryRun`, `importStrategy`,
`idScheme` / `dataElementIdScheme` / `orgUnitIdScheme` / `categoryOptionComboIdScheme`, basic
authentication or a personal access token `Authorization: ApiToken d2pat_...`) and its answer, a
web message wrapping an `ImportSummary`: `status` SUCCESS / WARNING / ERROR, `importCount`
(imported, updated, ignored, deleted) and `conflicts`, each naming the `object` and the reason
(`value`) with its `errorCode`. As DHIS2 (2.38 and later) does, an import with conflicts answers
409 Conflict, imports what it could and ignores the rest; a body that is not a data value set
answers 400 (or 409 with an ERROR summary, as DHIS2 does, when the data set is unknown).

It knows the metadata it is given (data elements, category option combos, attribute option
combos, org units and data sets, by code or id) and keeps what it imported in memory, so a second
import of the same value counts as `updated`. `fail_next(n)` makes the next n requests answer
503, as a DHIS2 behind a proxy does while it restarts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .localinfra import free_port

#: DHIS2 period ids: daily..yearly, quarterly, FinancialOct (`2026Oct`)
PERIOD = re.compile(r"^(\d{4}(\d{2}(\d{2})?)?|\d{4}Q[1-4]|\d{4}(Apr|July|Oct|Nov)|\d{4}W\d{1,2})$")


@dataclass
class Metadata:
    data_sets: set[str] = field(default_factory=set)
    data_elements: set[str] = field(default_factory=set)
    category_option_combos: set[str] = field(default_factory=set)
    attribute_option_combos: set[str] = field(default_factory=set)
    org_units: set[str] = field(default_factory=set)


@dataclass
class Received:
    """One request as the stand-in saw it."""

    params: dict[str, str]
    body: Any
    status: int


class Dhis2Standin:
    username = "admin"
    password = "district"
    token = "d2pat_standin0000000000000000000000000000"

    def __init__(self, metadata: Metadata | None = None) -> None:
        self.metadata = metadata or Metadata()
        #: (dataElement, period, orgUnit, categoryOptionCombo, attributeOptionCombo) -> value
        self.values: dict[tuple[str, str, str, str, str], str] = {}
        self.requests: list[Received] = []
        self.failures: list[int] = []
        self.url = ""
        self.app = self._build()

    def fail_next(self, count: int, status: int = 503) -> None:
        self.failures.extend([status] * count)

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header == f"ApiToken {self.token}":
            return True
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (self.username, self.password)
        return False

    def _build(self) -> FastAPI:
        app = FastAPI(title="DHIS2 stand-in")

        @app.post("/api/dataValueSets")
        @app.post("/api/{version}/dataValueSets")
        async def data_value_sets(request: Request) -> JSONResponse:
            params = dict(request.query_params)
            if self.failures:
                status = self.failures.pop(0)
                self.requests.append(Received(params, None, status))
                return JSONResponse({"httpStatus": "Service Unavailable", "httpStatusCode": status}, status)
            if not self._authorised(request):
                self.requests.append(Received(params, None, 401))
                return JSONResponse(
                    {"httpStatus": "Unauthorized", "httpStatusCode": 401, "status": "ERROR", "message": "Unauthorized"},
                    401,
                )
            try:
                body = await request.json()
            except ValueError:
                body = None
            status, answer = self.import_(body, params)
            self.requests.append(Received(params, body, status))
            return JSONResponse(answer, status)

        return app

    def import_(self, body: Any, params: dict[str, str]) -> tuple[int, dict]:
        if not isinstance(body, dict) or not isinstance(body.get("dataValues"), list):
            return 400, _message(400, "Bad Request", "ERROR", "Body is not a dataValueSet with a dataValues list.")
        dry_run = params.get("dryRun", "false").lower() == "true"
        m = self.metadata
        conflicts: list[dict] = []
        data_set = body.get("dataSet")
        if m.data_sets and data_set not in m.data_sets:
            summary = _summary(
                "ERROR",
                0,
                0,
                len(body["dataValues"]),
                [_conflict(data_set, "Data set not found or not accessible", "E7600", "dataSet")],
                dry_run,
            )
            return 409, _message(409, "Conflict", "ERROR", "An error occurred, please check import summary.", summary)
        imported = updated = ignored = 0
        staged: dict[tuple[str, str, str, str, str], str] = {}
        for index, dv in enumerate(body["dataValues"]):
            if not isinstance(dv, dict):
                conflicts.append(_conflict(str(dv), "Data value is not an object", "E7619", "dataValue", index))
                ignored += 1
                continue
            de = dv.get("dataElement")
            ou = dv.get("orgUnit", body.get("orgUnit"))
            pe = dv.get("period", body.get("period"))
            coc = dv.get("categoryOptionCombo", "default")
            aoc = dv.get("attributeOptionCombo", body.get("attributeOptionCombo", "default"))
            value = dv.get("value")
            problem = None
            if not de or (m.data_elements and de not in m.data_elements):
                problem = (de, "Data element not found or not accessible", "E7610", "dataElement")
            elif not ou or (m.org_units and ou not in m.org_units):
                problem = (ou, "Organisation unit not found or not accessible", "E7612", "orgUnit")
            elif not pe or not PERIOD.match(str(pe)):
                problem = (pe, "Period not valid", "E7611", "period")
            elif m.category_option_combos and coc not in m.category_option_combos and coc != "default":
                problem = (coc, "Category option combo not found or not accessible", "E7613", "categoryOptionCombo")
            elif m.attribute_option_combos and aoc not in m.attribute_option_combos and aoc != "default":
                problem = (aoc, "Attribute option combo not found or not accessible", "E7615", "attributeOptionCombo")
            elif not re.fullmatch(r"-?\d+(\.\d+)?", str(value)):
                problem = (str(value), "Value must be a number", "E7619", "value")
            if problem:
                conflicts.append(_conflict(*problem, index))
                ignored += 1
                continue
            key = (str(de), str(pe), str(ou), str(coc), str(aoc))
            if key in self.values or key in staged:
                updated += 1
            else:
                imported += 1
            staged[key] = str(value)
        if not dry_run:
            self.values.update(staged)
        status = "WARNING" if conflicts else "SUCCESS"
        summary = _summary(status, imported, updated, ignored, conflicts, dry_run)
        if conflicts:
            return 409, _message(
                409, "Conflict", "WARNING", "One or more conflicts encountered, please check import summary.", summary
            )
        return 200, _message(200, "OK", "OK", "Import was successful.", summary)

    @classmethod
    @contextlib.asynccontextmanager
    async def serving(cls, metadata: Metadata | None = None) -> AsyncIterator[Dhis2Standin]:
        """Serve a stand-in on a free loopback port in this event loop."""
        standin = cls(metadata)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(standin.app, host="127.0.0.1", port=port, log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        standin.url = f"http://127.0.0.1:{port}"
        try:
            yield standin
        finally:
            server.should_exit = True
            await task


def _conflict(obj: Any, reason: str, code: str, prop: str, index: int | None = None) -> dict:
    found = {"object": obj, "objects": {prop: obj}, "value": reason, "errorCode": code, "property": prop}
    if index is not None:
        found["indexes"] = [index]
    return found


def _summary(status: str, imported: int, updated: int, ignored: int, conflicts: list[dict], dry_run: bool) -> dict:
    return {
        "responseType": "ImportSummary",
        "status": status,
        "importOptions": {"dryRun": dry_run, "importStrategy": "CREATE_AND_UPDATE"},
        "description": "Import process completed successfully" if status != "ERROR" else "Import failed",
        "importCount": {"imported": imported, "updated": updated, "ignored": ignored, "deleted": 0},
        "conflicts": conflicts,
        "dataSetComplete": "false",
    }


def _message(code: int, http: str, status: str, message: str, response: dict | None = None) -> dict:
    body: dict[str, Any] = {"httpStatus": http, "httpStatusCode": code, "status": status, "message": message}
    if response is not None:
        body["response"] = response
    return body
