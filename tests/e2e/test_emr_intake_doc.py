"""docs/emr-intake.md's examples, as written: each `curl` to the front door is posted to the enrolment
process (`platform`) with the body and query the page shows, and answers what the page says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from pmtct_tools.devrunner import Platform
from pmtct_tools.testing import TestIssuer

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "emr-intake.md"
CURL = re.compile(r"""curl -s "?localhost:8001(?P<path>/v1/events[^"\s]*)"?.*?-d '(?P<body>.*?)'""", re.S)


def examples() -> list[tuple[str, dict]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    return [(m["path"], json.loads(m["body"])) for block in blocks for m in CURL.finditer(block)]


def outcomes(reply: dict) -> list[tuple[str, str | None]]:
    return [(r["status"], r["code"]) for r in reply["results"]]


async def test_the_pages_examples_answer_what_it_says(platform: Platform, issuer: TestIssuer) -> None:
    [(batch_path, batch), (dry_path, dry), (_, posted), (_, corrections)] = examples()
    assert (batch_path, dry_path) == ("/v1/events", "/v1/events?dry_run=true")
    headers = issuer.headers("events:write", ["FAC-ZA-001"], "emr-gugulethu")
    async with httpx.AsyncClient(base_url=platform.url("enrolment"), timeout=60) as http:

        async def post(path: str, body: dict) -> dict:
            response = await http.post(path, json=body, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()

        first = await post(batch_path, batch)
        # the infant the page names is not known yet: held, as the page says, not refused
        assert outcomes(first)[:2] == [("accepted", None), ("accepted", None)]
        assert (first["results"][2]["status"], first["results"][2]["code"]) == ("pending", "awaiting_infant")
        client_id = first["results"][0]["client_id"]
        assert first["results"][1]["client_id"] == client_id
        again = await post(batch_path, batch)
        assert outcomes(again)[:2] == [("duplicate", None), ("duplicate", None)]
        assert again["results"][0]["client_id"] == client_id

        refused = await post(dry_path, dry)
        assert refused["dry_run"] is True and outcomes(refused) == [("rejected", "gestation_out_of_range")]
        [event] = dry["events"]
        fixed = {"events": [{**event, "data": {**event["data"], "gestation_weeks": 16}}]}
        taken = await post(dry_path, fixed)
        assert outcomes(taken) == [("accepted", None)]
        assert taken["results"][0]["provisional_ids"] == [taken["results"][0]["client_id"]]

        # Corrections: her visit and a test entered as positive, then the test replaced and the visit voided
        recorded = await post(batch_path, posted)
        assert outcomes(recorded) == [("accepted", None)] * 3
        her = recorded["results"][0]["client_id"]
        fixed = await post(batch_path, corrections)
        assert outcomes(fixed) == [("accepted", None)] * 2
        assert {r["client_id"] for r in fixed["results"]} == {her}
        [wrong_test, replacement] = [posted["events"][2], corrections["events"][0]]
        told = await http.get(f"/v1/events/{wrong_test['event_id']}", headers=headers)
        assert told.status_code == 200, told.text
        assert (told.json()["status"], told.json()["voided_by"]) == ("voided", replacement["event_id"])
        assert outcomes(await post(batch_path, corrections)) == [("duplicate", None)] * 2
        visit_void = corrections["events"][1]
        again = {**visit_void, "event_id": "3d5e7f90-1a2b-4c3d-8e4f-5a6b7c8d9e06"}
        assert outcomes(await post(batch_path, {"events": [again]})) == [("rejected", "already_voided")]
