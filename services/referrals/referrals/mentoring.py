"""What the Mentor Mothers' records do to referrals (`pmtct_events.mentoring`, from follow-up):

- a Community Mentor Mother's tracing attempt closes the subject's open tracing referral with
  what she found: completed `found_back_in_care`; declined (or, once accepted, cancelled) with
  `found_refused`, `moved`, `died`, or `confirmed_lost` when the configured number of failed
  attempts is reached; a `not_found` below that number leaves it open;
- partner and family (index) testing: a contact an HIV-positive client names gets a
  partner / family testing referral whose subject is the contact (by platform `contact_id`, the
  keyed reference: no name travels), completed when the contact's result is recorded; a contact
  who tests positive (a new diagnosis) gets an ART-initiation referral, completed when linked.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from pmtct_events import Event
from pmtct_events.followup import SubjectType, TestResult
from pmtct_events.mentoring import (
    IndexContactElicited,
    IndexContactEvent,
    IndexContactLinked,
    IndexContactTested,
    TracingAttemptRecorded,
    TracingOutcome,
)
from pmtct_events.referrals import ReferralService, ReferralStatus, Urgency
from servicekit.consumer import Handler

from . import stream
from .repository import ReferralsUnit
from .rules import Action
from .settings import Settings

TRACING = [ReferralService.community_tracing]
TESTING = [ReferralService.partner_family_testing]

#: reason and outcome codes of the Mentor Mothers' referrals
REASON_INDEX_CONTACT = "index_contact_{relationship}"
REASON_INDEX_CONTACT_POSITIVE = "index_contact_positive"
OUTCOME_CONFIRMED_LOST = "confirmed_lost"
OUTCOME_CONTACT_TESTED = "contact_tested_{result}"


def tracing_closure(event: TracingAttemptRecorded) -> tuple[Action, str] | None:
    """How a tracing attempt closes the subject's tracing referral (None: it stays open)."""
    if event.outcome is TracingOutcome.found_back_in_care:
        return Action.complete, event.outcome.value
    if event.outcome is TracingOutcome.not_found:
        return (Action.decline, OUTCOME_CONFIRMED_LOST) if event.confirmed_lost else None
    return Action.decline, event.outcome.value


def build(settings: Settings) -> dict[type[Event], Handler]:
    clock = settings.clock

    async def tracing_attempt(event: TracingAttemptRecorded, uow: ReferralsUnit) -> None:
        closure = tracing_closure(event)
        if closure is None:
            return
        action, outcome = closure
        subject = await uow.subjects.of(event.subject_id)
        moment = clock.now()
        for r in subject.open_of(TRACING):
            # only the receiving side declines, and only before accepting (rules.TRANSITIONS): an
            # accepted tracing referral the tracer closes unmet is cancelled, with the same reason
            act = action if action is Action.complete or r.status is ReferralStatus.requested else Action.cancel
            subject.act(r, act, at=moment, actor=f"staff:{event.staff_id}", outcome_code=outcome)

    async def contact_elicited(event: IndexContactElicited, uow: ReferralsUnit) -> None:
        await stream.open_automatic(
            uow,
            subject_type=SubjectType.contact,
            subject_id=event.contact_id,
            client_id=event.client_id,
            facility_id=event.facility_id,
            service=ReferralService.partner_family_testing,
            reason_code=REASON_INDEX_CONTACT.format(relationship=event.relationship.value),
            due_by=clock.local_day(event.occurred_at) + timedelta(days=settings.index_testing_due_days),
            urgency=Urgency.routine,
            clock=clock,
        )

    async def contact_tested(event: IndexContactTested, uow: ReferralsUnit) -> None:
        outcome = OUTCOME_CONTACT_TESTED.format(result=event.result.value)
        await stream.close_open(uow, event.contact_id, Action.complete, outcome, services=TESTING, clock=clock)
        if event.result is TestResult.positive and not event.known_positive:
            await stream.open_automatic(
                uow,
                subject_type=SubjectType.contact,
                subject_id=event.contact_id,
                client_id=event.client_id,
                facility_id=event.facility_id,
                service=ReferralService.art_initiation,
                reason_code=REASON_INDEX_CONTACT_POSITIVE,
                due_by=clock.local_day(event.occurred_at) + timedelta(days=settings.index_art_due_days),
                clock=clock,
            )

    async def contact_linked(event: IndexContactLinked, uow: ReferralsUnit) -> None:
        await stream.art_started(uow, event.contact_id, event.occurred_at, ReferralService.art_initiation, clock)

    return {
        TracingAttemptRecorded: tracing_attempt,
        IndexContactElicited: contact_elicited,
        IndexContactTested: contact_tested,
        IndexContactLinked: contact_linked,
    }


def subject_of(event: Event) -> UUID | None:
    """The subject of a Mentor Mothers' event, for the batch preload (None: not one of them)."""
    if isinstance(event, TracingAttemptRecorded):
        return event.subject_id
    if isinstance(event, IndexContactEvent):
        return event.contact_id
    return None
