"""Event handlers of the reporting service: each merges one event's facts into the read model.

Every topic feeds it. Handlers keep only platform ids, facility ids, dates and coded facts: the
read model holds no personal data. The consumer's inbox makes each event count once; the merge
rules in the repository make the result independent of arrival order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event
from pmtct_events import enrolment as en
from pmtct_events import followup as fu
from pmtct_events import referrals as rf
from servicekit.consumer import Handler

from . import repository
from .episodes import ArtStart, Enrolled, HivTest

#: events a clinic records about a mother or an infant (CLIENT_INTERACTIONS); the platform's own
#: schedule, alert, classification and loss-to-follow-up events are not contacts with a client
INTERACTIONS: tuple[type[Event], ...] = (
    *en.EVENTS,
    fu.InfantProphylaxisRecorded,
    fu.InfantFeedingRecorded,
    fu.InfantTestResulted,
    fu.InfantArtInitiated,
    fu.InfantVisitRecorded,
)

CONCLUSIVE = (en.HivTestResult.positive, en.HivTestResult.negative)


async def on_client_enrolled(session: AsyncSession, ce: CloudEvent, event: en.ClientEnrolled) -> None:
    fact = Enrolled(
        occurred_at=event.occurred_at,
        facility_id=event.facility_id,
        status_at_enrolment=event.status_at_enrolment.value,
        hiv_status=event.hiv_status.value,
        on_art=event.on_art,
        transfer_in=event.transfer_in,
    )
    await repository.record_mother_fact(session, ce.id, event.client_id, event.facility_id, fact)


async def on_hiv_test(session: AsyncSession, ce: CloudEvent, event: en.HivTestRecorded) -> None:
    if event.result in CONCLUSIVE:
        fact = HivTest(event.occurred_at, event.result.value, event.setting.value)
        await repository.record_mother_fact(session, ce.id, event.client_id, event.facility_id, fact)


async def on_art_initiated(session: AsyncSession, ce: CloudEvent, event: en.ArtInitiated) -> None:
    await repository.record_mother_fact(session, ce.id, event.client_id, event.facility_id, ArtStart(event.occurred_at))


async def on_delivery(session: AsyncSession, _: CloudEvent, event: en.DeliveryRecorded) -> None:
    await repository.record_delivery(
        session,
        client_id=event.client_id,
        delivered_on=event.occurred_at.date(),
        facility_id=event.facility_id,
        skilled_attendant=event.skilled_attendant,
        mother_hiv_status=event.mother_hiv_status.value,
        live_births=sum(1 for i in event.infants if i.outcome is en.BirthOutcome.live_birth),
    )


async def on_follow_up_started(session: AsyncSession, _: CloudEvent, event: fu.InfantFollowUpStarted) -> None:
    await repository.record_hei(session, event.infant_id, event.facility_id, event.birth_date)


async def on_infant_test(session: AsyncSession, _: CloudEvent, event: fu.InfantTestResulted) -> None:
    if event.test is fu.InfantTest.NAT:
        await repository.record_infant_nat(
            session,
            infant_id=event.infant_id,
            facility_id=event.facility_id,
            sampled_at=event.occurred_at,
            age_days=event.age_days,
            result=event.result.value,
            confirmatory=event.confirmatory,
        )


async def on_infant_art(session: AsyncSession, _: CloudEvent, event: fu.InfantArtInitiated) -> None:
    await repository.record_infant_art(session, event.infant_id, event.occurred_at.date())


async def on_final_outcome(session: AsyncSession, ce: CloudEvent, event: fu.InfantFinalOutcomeRecorded) -> None:
    await repository.record_infant_outcome(session, event.infant_id, event.outcome.value, ce.time)


async def on_referral(session: AsyncSession, _: CloudEvent, event: rf.ReferralEvent) -> None:
    await repository.record_referral(
        session,
        referral_id=event.referral_id,
        facility_id=event.facility_id,
        referral_service=event.referral_service.value,
        due_by=event.due_by,
        status=event.status.value,
        version=event.version,
    )


async def count_interaction(session: AsyncSession, _: CloudEvent, event: Event) -> None:
    day = event.occurred_at.date()
    await repository.count_interaction(session, event.facility_id, date(day.year, day.month, 1))


def _both(first: Handler, second: Handler) -> Handler:
    async def handle(session: AsyncSession, ce: CloudEvent, event: Event) -> None:
        await first(session, ce, event)
        await second(session, ce, event)

    return handle


FACTS: dict[type[Event], Callable[[AsyncSession, CloudEvent, Event], Awaitable[None]]] = {
    en.ClientEnrolled: on_client_enrolled,
    en.HivTestRecorded: on_hiv_test,
    en.ArtInitiated: on_art_initiated,
    en.DeliveryRecorded: on_delivery,
    fu.InfantFollowUpStarted: on_follow_up_started,
    fu.InfantTestResulted: on_infant_test,
    fu.InfantArtInitiated: on_infant_art,
    fu.InfantFinalOutcomeRecorded: on_final_outcome,
    **dict.fromkeys(rf.EVENTS, on_referral),
}  # type: ignore[dict-item]

HANDLERS: dict[type[Event], Handler] = {
    model: _both(FACTS[model], count_interaction) if model in FACTS else count_interaction for model in INTERACTIONS
}
HANDLERS.update({model: handler for model, handler in FACTS.items() if model not in INTERACTIONS})
