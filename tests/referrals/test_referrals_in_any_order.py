"""A woman's referrals are a function of her facts, not of the order they arrived in (issue 17, "any
order"). Enrolment publishes a test's `status_before` as it knew it when the test arrived: a later
positive test posted before an earlier one says `unknown`, and the earlier one voided afterwards
leaves the later one standing either as her diagnosis or as a retest, depending on that order.
Referrals keeps every fact of her positive status (`positive_status`) and decides from those: a
positive test is a diagnosis when none stands before it, her ART wait counts from her earliest
diagnosis, and a void of it lets the next one start it again. Here every order of one woman's facts
(each test with the `status_before` enrolment gives it on arrival in that order) ends in the same
referrals once the ART timer has run."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID, uuid4

import httpx
import pytest
from conftest import FACILITY, Api
from referral_events import ago, apply, enrolled, referrals_of
from sqlalchemy import text

from pmtct_events import CloudEvent, Event
from pmtct_events.enrolment import (
    ArtInitiated,
    ClientEnrolled,
    ClientEventVoided,
    ClientTransferredOut,
    HivStatus,
    HivTestRecorded,
)
from pmtct_events.followup import (
    InfantArtInitiated,
    InfantEvent,
    InfantEventVoided,
    InfantFinalOutcomeRecorded,
    InfantTestResulted,
)
from pmtct_tools import testing
from referrals import timers
from referrals.main import build_app
from referrals.settings import Settings


@pytest.fixture(scope="module")
async def api(referrals_settings: Settings, issuer: testing.TestIssuer) -> AsyncIterator[Api]:
    """The service with its timers paused (`PMTCT_TIMERS_PAUSED`, the backlog setting): a wait over
    already opens its referral when the test runs the ART timer, after all her facts are in, so what
    ends is decided from the facts only, not from how far the posting had got when a pass ran."""
    settings = referrals_settings.model_copy(update={"timers_paused": True})
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
            yield Api(app, http, issuer, settings)


def hiv_test(mother: UUID, when: datetime, result: str = "positive") -> HivTestRecorded:
    return HivTestRecorded(facility_id=FACILITY, occurred_at=when, client_id=mother, result=result, setting="anc")


class Her:
    """One woman's facts, posted in some order, each published as enrolment would on its arrival."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.mother = uuid4()
        self.infant = uuid4()
        #: by name: the CloudEvent each fact was published as, and the fact
        self.sent: dict[str, tuple[CloudEvent, Event]] = {}

    def standing(self) -> list[Event]:
        voided = {n[len("void ") :] for n in self.sent if n.startswith("void ")}
        return [e for n, (_, e) in self.sent.items() if not n.startswith("void ") and n not in voided]

    def as_published(self, event: Event) -> Event:
        """A test's `status_before`: her status from the standing facts enrolment had by then."""
        if not isinstance(event, HivTestRecorded):
            return event
        before = [
            e
            for e in self.standing()
            if e.occurred_at < event.occurred_at
            and (
                (isinstance(e, HivTestRecorded) and e.result == "positive")
                or (isinstance(e, ClientEnrolled) and e.hiv_status == "positive")
            )
        ]
        return event.model_copy(update={"status_before": HivStatus.positive if before else HivStatus.unknown})

    async def post(self, name: str, event: Event | None) -> None:
        if event is None:  # the void of the fact named after "void "
            ce, voided = self.sent[name[len("void ") :]]
            void = {"voided_event_id": uuid4(), "voided_type": voided.event_name, "voided_ids": [ce.id]}
            if isinstance(voided, InfantEvent):
                event = InfantEventVoided(
                    facility_id=FACILITY, occurred_at=ago(), infant_id=self.infant, client_id=self.mother, **void
                )
            else:
                event = ClientEventVoided(facility_id=FACILITY, occurred_at=ago(), client_id=self.mother, **void)
        published = self.as_published(event)
        self.sent[name] = (await apply(self.api, published), published)

    async def referrals(self) -> list[tuple]:
        """Her referrals once the ART timer has run."""
        await timers.open_due_art_referrals(self.api.sessions, self.api.settings)
        found = [*await referrals_of(self.api, self.mother), *await referrals_of(self.api, self.infant)]
        return sorted((r["referral_service"], r["reason_code"], r["status"], r["outcome_code"]) for r in found)

    async def wait_cause(self) -> str | None:
        """The fact her ART wait counts from (by name), if one runs."""
        async with self.api.sessions() as session:
            cause = (
                await session.execute(
                    text("SELECT cause_event_id FROM art_wait WHERE client_id = :c AND ended_at IS NULL"),
                    {"c": self.mother},
                )
            ).scalar_one_or_none()
        return next((n for n, (ce, _) in self.sent.items() if ce.id == cause), None)


def infant(cls: type[InfantEvent], her: tuple[UUID, UUID], days_ago: float, **data) -> InfantEvent:
    mother, baby = her
    return cls(facility_id=FACILITY, occurred_at=ago(days_ago), infant_id=baby, client_id=mother, **data)


def stories(mother: UUID, baby: UUID) -> dict[str, dict[str, Event | None]]:
    """Facts by name (None: a void of the fact it names; a void comes after what it voids)."""
    her = (mother, baby)
    positive = {"test": "NAT", "result": "positive", "confirmatory": False, "age_days": 42}
    left = {"outcome": "transferred_out", "birth_date": ago(90).date(), "age_days": 80}
    return {
        "two positive tests": {
            "enrolled": enrolled(mother, ago(60)),
            "first positive": hiv_test(mother, ago(40)),
            "retest": hiv_test(mother, ago(20)),
        },
        "two positive tests, the first voided": {
            "enrolled": enrolled(mother, ago(60)),
            "first positive": hiv_test(mother, ago(40)),
            "retest": hiv_test(mother, ago(20)),
            "void first positive": None,
        },
        "a positive test before her enrolment as known positive, not on ART": {
            "enrolled": enrolled(mother, ago(30), hiv_status="positive"),
            "first positive": hiv_test(mother, ago(40)),
        },
        "two positive tests and ART after both": {
            "enrolled": enrolled(mother, ago(60)),
            "first positive": hiv_test(mother, ago(40)),
            "retest": hiv_test(mother, ago(20)),
            "art": ArtInitiated(facility_id=FACILITY, occurred_at=ago(19), client_id=mother),
        },
        # a transfer out posted before the facts it follows: they do what they did before it
        "a positive test, her transfer out, the transfer voided": {
            "enrolled": enrolled(mother, ago(60)),
            "first positive": hiv_test(mother, ago(40)),
            "transfer": ClientTransferredOut(facility_id=FACILITY, occurred_at=ago(35), client_id=mother),
            "void transfer": None,
        },
        "an infant's positive NAT, her ART start, her transfer out": {
            "positive NAT": infant(InfantTestResulted, her, 50, **positive),
            "art": infant(InfantArtInitiated, her, 48),
            "transfer": infant(InfantFinalOutcomeRecorded, her, 10, **left),
        },
        "an infant's positive NAT, her transfer out before any ART": {
            "positive NAT": infant(InfantTestResulted, her, 50, **positive),
            "transfer": infant(InfantFinalOutcomeRecorded, her, 10, **left),
        },
    }


#: story -> (her referrals once the ART timer has run, the fact her wait counts from before it ran)
EXPECTED = {
    "two positive tests": ([("art_initiation", "new_hiv_diagnosis", "requested", None)], "first positive"),
    # as if the first had never been posted: the retest is her diagnosis
    "two positive tests, the first voided": ([("art_initiation", "new_hiv_diagnosis", "requested", None)], "retest"),
    "a positive test before her enrolment as known positive, not on ART": (
        [("art_initiation", "new_hiv_diagnosis", "requested", None)],
        "first positive",
    ),
    "two positive tests and ART after both": ([], None),
    # the wait her transfer ended runs again, from her diagnosis
    "a positive test, her transfer out, the transfer voided": (
        [("art_initiation", "new_hiv_diagnosis", "requested", None)],
        "first positive",
    ),
    "an infant's positive NAT, her ART start, her transfer out": (
        [("infant_art", "positive_infant_test", "completed", "art_initiated")],
        None,
    ),
    "an infant's positive NAT, her transfer out before any ART": (
        [("infant_art", "positive_infant_test", "cancelled", "transferred_out")],
        None,
    ),
}


def orders(facts: dict[str, Event | None]) -> list[tuple[str, ...]]:
    """Every order in which a void comes after the fact it voids."""
    return [
        order
        for order in itertools.permutations(facts)
        if all(order.index(n) > order.index(n[len("void ") :]) for n in order if n.startswith("void "))
    ]


@pytest.mark.parametrize("story", list(EXPECTED))
async def test_every_arrival_order_of_her_facts_ends_in_the_same_referrals(api: Api, story: str) -> None:
    ended = set()
    for order in orders(stories(uuid4(), uuid4())[story]):
        her = Her(api)
        facts = stories(her.mother, her.infant)[story]
        for name in order:
            await her.post(name, facts[name])
        cause = await her.wait_cause()
        ended.add((tuple(await her.referrals()), cause))
    assert ended == {(tuple(EXPECTED[story][0]), EXPECTED[story][1])}, f"{story}: {ended}"
