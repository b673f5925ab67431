"""A small programme posted to the real services, as `pmtct simulate` posts it: every answer is
the one the generator intended (accepted, duplicate, or rejected for its data-entry error)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import date

import pytest

from emrsim.desk import DeskRates
from emrsim.posting import Endpoints
from emrsim.programme import ProgrammeParams, generate, intended
from emrsim.rates import Rates
from emrsim.runner import post_programme, registry_facilities, work_referrals

pytestmark = pytest.mark.e2e

#: more of what is rare, so that a small programme has some of everything
SMALL_BUT_EVENTFUL = Rates(hiv_prevalence=0.5, mtct_early=0.15, duplicate=0.05, invalid=0.15, transfer_out=0.1)


def test_a_simulated_programme_gets_the_answers_the_generator_intended(platform) -> None:
    seed = uuid.uuid4().int % 10**6  # the session's database may outlive one run
    params = ProgrammeParams(
        registry_facilities(), clients=70, months=18, seed=seed, anchor=date.today(), rates=SMALL_BUT_EVENTFUL
    )
    events = generate(params)
    assert {e.why for e in events} > {"valid", "resend"}, "the programme should carry data-entry errors"
    assert any(e.service == "followup" for e in events)

    tally = asyncio.run(
        post_programme(events, Endpoints(platform.url("enrolment"), platform.url("followup")), platform.issuer.mint)
    )

    surprises = Counter((e.type, e.why, answer, code) for e, answer, code, _ in tally.surprises)
    assert not surprises, f"seed {seed}: {surprises}"
    assert tally.answered == intended(events) == tally.intended
    assert tally.infant_ids, "delivery results name the new infants"


def test_posting_the_same_programme_again_is_all_duplicates_except_what_was_rejected(platform) -> None:
    seed = uuid.uuid4().int % 10**6
    params = ProgrammeParams(registry_facilities(4), clients=12, months=6, seed=seed, anchor=date.today())
    events = [e for e in generate(params) if e.service == "enrolment"]
    endpoints = Endpoints(platform.url("enrolment"), platform.url("followup"))
    first = asyncio.run(post_programme(events, endpoints, platform.issuer.mint))
    again = asyncio.run(post_programme(events, endpoints, platform.issuer.mint))
    assert first.matches, first.surprises
    assert again.answered["accepted"] == 0
    assert again.answered["duplicate"] == first.answered["accepted"] + first.answered["duplicate"]
    assert again.answered["rejected"] == first.answered["rejected"]


def test_mentor_mothers_refer_by_hand_and_work_the_open_referrals_through_the_referrals_api(platform) -> None:
    seed = uuid.uuid4().int % 10**6
    params = ProgrammeParams(registry_facilities(3), clients=40, months=12, seed=seed, anchor=date.today())
    mint = platform.issuer.mint
    tally = asyncio.run(
        post_programme(generate(params), Endpoints(platform.url("enrolment"), platform.url("followup")), mint)
    )
    done = asyncio.run(work_referrals(params, tally, platform.url("referrals"), mint, DeskRates(manual_referral=0.5)))

    assert done["referred by hand"] >= 10, done
    assert done["accepted"] > 0 and done["completed"] > 0
    # 409: the platform closed a referral meanwhile; anything else is a refusal the desk did not expect
    assert {what for what in done if ":" in what or what.startswith("refused")} <= {
        "accept: 409",
        "complete: 409",
        "decline: 409",
    }, done
