"""DHIS2 submission of the MER cohort (`mer_cohort.py`) to a local stand-in of the DHIS2 Web API
(pmtct_tools.dhis2_standin, following `POST /api/dataValueSets`): dry run, push, the import
summary kept, a 409 with conflicts, a retry after 503s, the revision after a late fact, the monthly
schedule (and its revisions of periods accepted before), and `pmtct dhis2 push`.

Expected values are the hand counts of `test_mer_cohort.py`, by facility (A = FAC-LS-001, org unit
LsMsuFlt001) and in the mapping's codes (`reporting/data/dhis2_mer.json`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import mer_cohort as cohort
import pytest
from mer_support import serve_reporting

from reporting import submissions
from reporting.indicators import DataSet
from reporting.periods import parse_period

pytestmark = pytest.mark.e2e

A_UNIT = "LsMsuFlt001"
#: values per org unit in the MER mapping, and the registry's 4 facilities
MER_VALUES = 156 * 4
FY2026 = parse_period("FY2026")


@pytest.fixture(scope="module")
async def served(migrated, issuer, tmp_path_factory):
    async with serve_reporting(migrated, issuer, tmp_path_factory.mktemp("dhis2"), cohort.FACILITIES) as s:
        built = cohort.build()
        await s.applied(await s.publish(built.events))
        s.cohort = built  # type: ignore[attr-defined]
        yield s


async def push(served, query: str, headers=None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(f"{served.url}/v1/exports/dhis2/push?{query}", headers=headers or served.reader)


async def history(served, query: str = "") -> list[dict]:
    async with httpx.AsyncClient(timeout=60) as client:
        reply = await client.get(f"{served.url}/v1/exports/dhis2/submissions?{query}", headers=served.reader)
    assert reply.status_code == 200, reply.text
    return reply.json()["submissions"]


def sent_value(body: dict, element: str, combo: str, unit: str = A_UNIT) -> str:
    (value,) = [
        v["value"]
        for v in body["dataValues"]
        if (v["dataElement"], v["categoryOptionCombo"], v["orgUnit"]) == (element, combo, unit)
    ]
    return value


async def test_a_dry_run_is_checked_by_dhis2_and_saves_nothing(served) -> None:
    reply = await push(served, "period=FY2025&dry_run=true")
    assert reply.status_code == 201, reply.text
    summary = reply.json()
    assert (summary["outcome"], summary["dry_run"], summary["imported"], summary["revision"]) == (
        "SUCCESS",
        True,
        MER_VALUES,
        None,
    )
    last = served.dhis2.requests[-1]
    assert last.params["dryRun"] == "true" and last.params["dataElementIdScheme"] == "CODE"
    assert not [k for k in served.dhis2.values if k[1] == "2024Oct"]


async def test_a_push_sends_the_hand_counted_figures_and_keeps_the_import_summary(served) -> None:
    reply = await push(served, "period=FY2025")
    assert reply.status_code == 201, reply.text
    summary = reply.json()
    assert (summary["outcome"], summary["http_status"], summary["imported"], summary["updated"]) == (
        "SUCCESS",
        200,
        MER_VALUES,
        0,
    )
    assert (summary["period"], summary["dhis2_period"], summary["revision"], summary["values_sent"]) == (
        "FY2025",
        "2024Oct",
        1,
        MER_VALUES,
    )
    body = served.dhis2.requests[-1].body
    assert (body["dataSet"], body["period"]) == ("MER_PMTCT_FACILITY", "2024Oct")
    assert {v["attributeOptionCombo"] for v in body["dataValues"]} == {"MECH_PMTCT_M2M"}
    # FY2025 at A: M15's 5 new negatives aged 25; B: M16's 4 known positives aged 30, already on ART
    assert sent_value(body, "PMTCT_STAT_D", "AGE_25-29_F") == "5"
    assert sent_value(body, "PMTCT_STAT_N", "NEW_NEG_AGE_25-29_F") == "5"
    assert sent_value(body, "PMTCT_STAT_N", "KNOWN_POS_AGE_30-34_F", "LsMsuQol002") == "4"
    assert sent_value(body, "PMTCT_ART_N", "ALREADY_ON_ART_AGE_30-34_F", "LsMsuQol002") == "4"
    # F13's first NAT at 91 days, at A
    assert sent_value(body, "PMTCT_EID_N", "INFANT_AGE_2-12M") == "1"
    # C: M19's 2 known positives aged 23, already on ART
    assert sent_value(body, "PMTCT_STAT_N", "KNOWN_POS_AGE_20-24_F", "LsLrbHsp003") == "2"
    # and nothing else: A 5 + 5 + EID 1 + F13's HEI negative 2-12 months 1; B STAT_D 4 + STAT_N 4 + ART_N 4;
    # C STAT_D 2 + STAT_N 2 + ART_N 2
    assert sent_value(body, "PMTCT_HEI_N", "NEGATIVE_INFANT_AGE_2-12M") == "1"
    assert sum(int(v["value"]) for v in body["dataValues"]) == 30
    (kept,) = [s for s in await history(served, "period=FY2025&data_set=mer") if s["id"] == summary["id"]]
    assert kept["changed_since"] == [] and kept["conflicts"] == []


async def test_an_unknown_code_is_a_409_with_each_conflicts_object_and_reason(served) -> None:
    served.dhis2.metadata.data_elements.discard("PMTCT_HEI_N")
    try:
        reply = await push(served, "period=FY2026Q4")
    finally:
        served.dhis2.metadata.data_elements.add("PMTCT_HEI_N")
    assert reply.status_code == 201, reply.text
    summary = reply.json()
    # PMTCT_HEI_N has 4 combos (positive/negative x 0-2/2-12 months) at each of 4 org units
    assert (summary["outcome"], summary["http_status"], summary["ignored"], summary["imported"]) == (
        "WARNING",
        409,
        16,
        MER_VALUES - 16,
    )
    assert {(c["object"], c["value"], c["errorCode"]) for c in summary["conflicts"]} == {
        ("PMTCT_HEI_N", "Data element not found or not accessible", "E7610")
    }
    assert len(summary["conflicts"]) == 16


async def test_a_503_is_retried_with_backoff_and_a_dhis2_that_never_answers_is_recorded(served) -> None:
    served.dhis2.fail_next(2)
    reply = await push(served, "period=FY2026&data_set=programme")
    assert reply.status_code == 201, reply.text
    assert (reply.json()["outcome"], reply.json()["attempts"]) == ("SUCCESS", 3)
    sent = served.dhis2.requests[-1].body
    # the programme data set: its counts and the Mentor Mothers' figures, 17 values at each of 4 facilities
    assert sent["dataSet"] == "M2M_PROGRAMME" and len(sent["dataValues"]) == 17 * 4
    # FY2026 deliveries at A: M2 6 + M3 4 (one at home); no Mentor Mother contacts recorded
    assert sent_value(sent, "M2M_DELIVERIES", "default") == "10"
    assert sent_value(sent, "M2M_SKILLED_DELIVERIES", "default") == "9"
    assert sent_value(sent, "M2M_MM_CLIENT_INTERACTIONS", "default") == "0"
    assert [r.status for r in served.dhis2.requests[-3:]] == [503, 503, 200]
    served.dhis2.fail_next(3)
    down = await push(served, "period=FY2025&data_set=programme")
    assert (down.status_code, down.json()["code"]) == (502, "dhis2_unavailable")
    (failed,) = await history(served, "period=FY2025&data_set=programme")
    assert (failed["outcome"], failed["http_status"], failed["attempts"], failed["revision"]) == (
        "FAILED",
        503,
        3,
        None,
    )


async def test_a_late_fact_shows_in_the_history_and_the_next_push_and_the_schedule_send_the_revision(served) -> None:
    rt = served.runtime
    monthly = rt.settings.model_copy(update={"dhis2_push_day": 5})
    # the schedule on 2026-10-15: September 2026 is pushed once, and not again while nothing changed
    (first,) = await submissions.scheduled_push(rt.sessions, rt.registry, monthly)
    assert (first.period, first.trigger, first.outcome) == ("2026-09", "scheduled", "SUCCESS")
    assert await submissions.scheduled_push(rt.sessions, rt.registry, monthly) == []
    pushed = await push(served, "period=FY2026")
    assert pushed.json()["outcome"] == "SUCCESS"
    body = served.dhis2.requests[-1].body
    assert sent_value(body, "PMTCT_STAT_N", "NEW_NEG_AGE_15-19_F") == "0"
    assert sent_value(body, "PMTCT_FO_N", "OUTCOME_UNINFECTED") == "5"
    # the late facts: M14's two ANC1 results (September, aged 19, at A) and F11's final antibody test
    await served.applied(await served.publish(served.cohort.late))
    (latest, *_) = await history(served, "period=FY2026&data_set=mer")
    assert latest["id"] == pushed.json()["id"]
    assert [
        (c["dataElement"], c["categoryOptionCombo"], c["orgUnit"], c["sent"], c["now"]) for c in latest["changed_since"]
    ] == [
        ("PMTCT_FO_N", "OUTCOME_UNINFECTED", A_UNIT, "5", "6"),
        ("PMTCT_STAT_N", "NEW_NEG_AGE_15-19_F", A_UNIT, "0", "2"),
    ]
    revision = (await push(served, "period=FY2026")).json()
    assert (revision["revision"], revision["updated"], revision["imported"], revision["changed_since"]) == (
        2,
        MER_VALUES,
        0,
        [],
    )
    assert served.dhis2.values[("PMTCT_STAT_N", "2025Oct", A_UNIT, "NEW_NEG_AGE_15-19_F", "MECH_PMTCT_M2M")] == "2"
    # September changed too: the schedule sends its revision, and that of FY2026Q4 (Jul-Sep 2026, accepted
    # with its conflicts above), which M14's September results changed; FY2026 was revised by hand just now
    # and FY2025 did not change
    again, quarter = await submissions.scheduled_push(rt.sessions, rt.registry, monthly)
    assert (again.period, again.trigger) == ("2026-09", "scheduled")
    assert (quarter.period, quarter.trigger) == ("FY2026Q4", "scheduled")
    september = [s for s in await history(served, "period=2026-09") if s["outcome"] == "SUCCESS"]
    assert [s["revision"] for s in september] == [2, 1]


async def test_a_push_needs_the_submit_scope_a_national_token_and_a_configured_dhis2(served, issuer) -> None:
    reader_only = issuer.headers("reports:read", ["*"], client_id="viewer")
    clinic = issuer.headers("reports:read reports:submit", [cohort.A], client_id="clinic")
    denied = await push(served, "period=FY2026", reader_only)
    narrow = await push(served, "period=FY2026", clinic)
    assert (denied.status_code, denied.json()["code"]) == (403, "insufficient_scope")
    assert (narrow.status_code, narrow.json()["code"]) == (403, "scope_forbidden")
    rt = served.runtime
    with pytest.raises(submissions.NotConfigured):
        await submissions.push(
            rt.sessions, rt.registry, rt.settings.model_copy(update={"dhis2_url": None}), DataSet.mer, FY2026
        )


async def test_the_push_command_prints_the_import_summary(served) -> None:
    env = {
        **os.environ,
        "PMTCT_DATABASE_URL": served.database_url,
        "PMTCT_FACILITIES": str(served.settings.facilities_path),
        "PMTCT_DHIS2_URL": served.dhis2.url,
        "PMTCT_DHIS2_TOKEN": served.dhis2.token,
        "COLUMNS": "200",
    }
    pmtct = Path(sys.executable).with_name("pmtct")
    done = await asyncio.to_thread(
        subprocess.run,
        [str(pmtct), "dhis2", "push", "--period", "FY2026Q1", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"mer FY2026Q1 (2025Q4) dry run: SUCCESS (HTTP 200, 1 attempt(s)) - imported {MER_VALUES}" in done.stdout
    assert served.dhis2.requests[-1].params["dryRun"] == "true"
