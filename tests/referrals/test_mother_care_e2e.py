"""The mother's care through the real services (enrolment, follow-up and referrals as processes,
the real broker): a negative woman who is not retested, and a woman whose viral load is
unsuppressed in pregnancy. The EMR posts what happened; the worklist and the referrals follow."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
from test_platform_e2e import FACILITY, ago, emr_event, of, post_events, referrals_until

from followup.schedule import add_months
from pmtct_tools import testing
from pmtct_tools.testing import unique

TODAY = datetime.now(UTC).date()


async def worklist(platform, issuer: testing.TestIssuer, as_of: date | None = None) -> list[dict]:
    params = {"facility_id": FACILITY, "limit": 1000, **({"as_of": as_of.isoformat()} if as_of else {})}
    async with httpx.AsyncClient(base_url=platform.url("followup"), timeout=10) as http:
        response = await http.get("/v1/worklist", params=params, headers=issuer.headers("worklist:read", [FACILITY]))
    assert response.status_code == 200, response.text
    return response.json()["items"]


def actions(items: list[dict], client_id: str) -> dict[str, str]:
    return {i["action"]: i["urgency"] for i in items if i["subject_id"] == client_id}


async def negative_at_anc1_not_retested(
    platform, issuer: testing.TestIssuer, age: int
) -> tuple[dict[str, str], str, dict]:
    """A woman negative at ANC1, 200 days ago at 10 weeks: her third-trimester retest (weeks 28-36)
    was due from 74 days ago and is overdue since 4 days ago (14 days' grace); nobody retested her,
    and the overdue opened an HIV-testing referral. Returns how the EMR names her, her client id
    and that referral."""
    mother = {"client_ref": unique("ANC")}
    [enrolled] = await post_events(
        platform,
        issuer,
        "enrolment",
        emr_event(
            "ClientEnrolled",
            ago(200),
            {
                "age_years": age,
                "status_at_enrolment": "pregnant",
                "hiv_status": "negative",
                "on_art": False,
                "gestation_weeks": 10,
            },
            **mother,
        ),
    )
    client_id = enrolled["client_id"]
    referred = await referrals_until(platform, issuer, client_id, lambda f: len(of(f, "hiv_testing")) == 1)
    [testing_referral] = of(referred, "hiv_testing")
    return mother, client_id, testing_referral


async def test_a_negative_woman_not_retested_is_referred_for_testing_then_for_art_and_her_baby_is_high_risk(
    platform, issuer: testing.TestIssuer
) -> None:
    mother, client_id, testing_referral = await negative_at_anc1_not_retested(platform, issuer, age=24)
    assert (testing_referral["reason_code"], testing_referral["status"]) == (
        "mother_hiv_retest_third_trimester_overdue",
        "requested",
    )

    # The retest is positive; the result reaches the platform a week after the sample, which was taken
    # 8 days ago, before the retest was overdue (4 days ago): she had been retested in time, so the
    # overdue is withdrawn and with it the testing referral (cancelled, not_needed: issue 19).
    await post_events(
        platform,
        issuer,
        "enrolment",
        emr_event("HivTestRecorded", ago(8), {"result": "positive", "setting": "anc"}, **mother),
    )
    after = await referrals_until(
        platform,
        issuer,
        client_id,
        lambda f: of(f, "hiv_testing")[0]["status"] == "cancelled" and len(of(f, "art_initiation")) == 1,
    )
    assert of(after, "hiv_testing")[0]["outcome_code"] == "not_needed"
    assert (of(after, "art_initiation")[0]["reason_code"], of(after, "art_initiation")[0]["status"]) == (
        "new_hiv_diagnosis",
        "requested",
    )
    assert actions(await worklist(platform, issuer), client_id).get("mother_art_start") == "overdue"

    [delivered] = await post_events(
        platform,
        issuer,
        "enrolment",
        emr_event(
            "DeliveryRecorded",
            ago(0.05),
            {
                "place": "facility",
                "skilled_attendant": True,
                "maternal_outcome": "alive",
                "infants": [{"infant_ref": unique("HEI"), "sex": "female", "outcome": "live_birth"}],
            },
            **mother,
        ),
    )
    infant_id = delivered["infants"][0]["infant_id"]
    async with httpx.AsyncClient(base_url=platform.url("followup"), timeout=10) as http:
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while True:
            response = await http.get(f"/v1/infants/{infant_id}", headers=issuer.headers("worklist:read", [FACILITY]))
            if response.status_code == 200 and response.json()["in_follow_up"]:
                break
            assert datetime.now(UTC) < deadline, response.text
            await asyncio.sleep(0.5)
    infant = response.json()
    assert infant["high_risk"] is True, infant["high_risk_reasons"]


async def test_a_viral_load_of_2400_at_30_weeks_gets_an_adherence_referral_and_a_repeat_viral_load_due(
    platform, issuer: testing.TestIssuer
) -> None:
    mother = {"client_ref": unique("ANC")}
    on_art_since = (TODAY - timedelta(days=400)).isoformat()
    [enrolled, _] = await post_events(
        platform,
        issuer,
        "enrolment",
        emr_event(
            "ClientEnrolled",
            ago(100),
            {
                "age_years": 29,
                "status_at_enrolment": "pregnant",
                "hiv_status": "positive",
                "on_art": True,
                "hiv_status_known_since": on_art_since,
                "art_start_date": on_art_since,
                "gestation_weeks": 20,
            },
            **mother,
        ),
        emr_event("ViralLoadRecorded", ago(28), {"copies_per_ml": 2400}, **mother),  # at 30 weeks
    )
    client_id = enrolled["client_id"]

    referred = await referrals_until(platform, issuer, client_id, lambda f: len(of(f, "psychosocial_support")) == 1)
    [support] = of(referred, "psychosocial_support")
    assert (support["reason_code"], support["origin"], support["status"]) == (
        "unsuppressed_viral_load",
        "automatic",
        "requested",
    )
    assert actions(await worklist(platform, issuer), client_id).get("mother_adherence_support") == "due"
    repeat_on = add_months(TODAY - timedelta(days=28), 3)  # after three months of adherence support
    later = actions(await worklist(platform, issuer, as_of=repeat_on + timedelta(days=7)), client_id)
    assert later.get("mother_repeat_viral_load") == "due"


async def test_a_positive_status_known_from_before_her_retest_fell_due_withdraws_the_testing_referral(
    platform, issuer: testing.TestIssuer
) -> None:
    """The retest overdue (as above) opened an HIV-testing referral; then the EMR posts a positive
    test from 150 days ago, before her third-trimester retest was due (74 days ago): a woman known
    positive is not retested, so the retest was never called for. It is cancelled
    `no_longer_required`, its announcements withdrawn (`no_longer_required`), and the testing
    referral cancelled `not_needed` (out of REFERRAL_COMPLETION), whatever order the facts came in."""
    mother, client_id, testing_referral = await negative_at_anc1_not_retested(platform, issuer, age=27)
    assert testing_referral["status"] == "requested"

    await post_events(
        platform,
        issuer,
        "enrolment",
        emr_event("HivTestRecorded", ago(150), {"result": "positive", "setting": "anc"}, **mother),
    )
    after = await referrals_until(
        platform, issuer, client_id, lambda f: of(f, "hiv_testing")[0]["status"] == "cancelled"
    )
    [testing_referral] = of(after, "hiv_testing")
    assert (testing_referral["status"], testing_referral["outcome_code"]) == ("cancelled", "not_needed")
    assert "mother_hiv_retest" not in " ".join(actions(await worklist(platform, issuer), client_id))
