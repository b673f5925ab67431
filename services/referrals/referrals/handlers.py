"""Event handlers of the referrals service: automatic referrals and automatic loop closure.

Each runs in the consumer's transaction (inbox row included) and only writes through `service`.
"""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events import CloudEvent, Event
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    ClientDied,
    ClientEnrolled,
    ClientTransferredOut,
    DeliveryRecorded,
    HivTestRecorded,
    MaternalOutcome,
    ViralLoadRecorded,
)
from pmtct_events.followup import (
    ClientLostToFollowUp,
    FinalOutcome,
    InfantArtInitiated,
    InfantEvent,
    InfantFeedingRecorded,
    InfantFinalOutcomeRecorded,
    InfantProphylaxisRecorded,
    InfantTestDue,
    InfantTestOverdue,
    InfantTestResulted,
    InfantVisitRecorded,
    SubjectType,
    TestResult,
)
from pmtct_events.referrals import ReferralService, Urgency
from servicekit.clock import Clock
from servicekit.consumer import Handler

from . import rules, service
from .rules import Action
from .service import Cause
from .settings import Settings

TRACING = [ReferralService.community_tracing]


async def _back_in_care(session: AsyncSession, ce: CloudEvent, subject_id: UUID, clock: Clock) -> None:
    """A recorded contact: a client traced because she was lost is found."""
    await service.close_open(
        session,
        Cause.of(ce),
        subject_id,
        Action.complete,
        rules.OUTCOME_RETURNED_TO_CARE,
        services=TRACING,
        only=lambda r: rules.tracing_met_by_contact(r.reason_code),
        clock=clock,
    )


async def _refer_infant(
    session: AsyncSession,
    ce: CloudEvent,
    event: InfantEvent,
    need: ReferralService,
    reason_code: str,
    due_by: date,
    clock: Clock,
    urgency: Urgency = Urgency.urgent,
) -> None:
    await service.open_automatic(
        session,
        Cause.of(ce),
        subject_type=SubjectType.infant,
        subject_id=event.infant_id,
        client_id=event.client_id,
        facility_id=event.facility_id,
        service=need,
        reason_code=reason_code,
        due_by=due_by,
        urgency=urgency,
        clock=clock,
    )


EVERY_SERVICE = None
NOTHING: frozenset[ReferralService] = frozenset()
_TRACING = frozenset(TRACING)


def subject_of(event: Event) -> UUID:
    """Whose referrals and state the event is about."""
    if isinstance(event, ClientLostToFollowUp):
        return event.subject_id
    if isinstance(event, InfantEvent):
        return event.infant_id
    return event.client_id  # type: ignore[attr-defined]


def may_close(event: Event) -> frozenset[ReferralService] | None:
    """The services whose open referrals the event's handler may close for its subject (None:
    every service), mirroring the handlers below."""
    match event:
        case ClientDied() | ClientTransferredOut():
            return EVERY_SERVICE
        case DeliveryRecorded(maternal_outcome=MaternalOutcome.died):
            return EVERY_SERVICE
        case InfantFinalOutcomeRecorded(outcome=FinalOutcome.died | FinalOutcome.transferred_out):
            return EVERY_SERVICE
        case ClientEnrolled(on_art=True):
            return frozenset({ReferralService.art_initiation})
        case ArtInitiated():
            return _TRACING | {ReferralService.art_initiation}
        case InfantArtInitiated():
            return _TRACING | {ReferralService.infant_art}
        case InfantTestResulted():
            return rules.MET_BY_INFANT_RESULT
        case (
            HivTestRecorded()
            | AncVisitRecorded()
            | ViralLoadRecorded()
            | DeliveryRecorded()
            | InfantVisitRecorded()
            | InfantProphylaxisRecorded()
            | InfantFeedingRecorded()
        ):
            return _TRACING
    return NOTHING


def uses_state(event: Event) -> bool:
    """Whether the event's handler reads or writes its subject's state (and ART wait): a contact
    that can only close a tracing referral does not."""
    match event:
        case (
            AncVisitRecorded()
            | ViralLoadRecorded()
            | InfantVisitRecorded()
            | InfantProphylaxisRecorded()
            | InfantFeedingRecorded()
        ):
            return False
        case DeliveryRecorded():
            return event.maternal_outcome is MaternalOutcome.died
        case HivTestRecorded():
            return rules.is_new_hiv_diagnosis(event)
        case InfantTestResulted():
            return event.result is TestResult.positive
        case InfantFinalOutcomeRecorded():
            return event.outcome in (FinalOutcome.died, FinalOutcome.transferred_out)
    return True


async def prepare(session: AsyncSession, items: list[tuple[CloudEvent, Event]]) -> None:
    """The consumer's batch hook: load once what the batch's handlers would look up per event (the
    state of the subjects whose events use it, and the open referrals the events may close, locked)."""
    subjects: list[UUID] = []
    needs: dict[UUID, frozenset[ReferralService] | None] = {}
    for _, event in items:
        subject_id = subject_of(event)
        if uses_state(event):
            subjects.append(subject_id)
        services = may_close(event)
        if services is EVERY_SERVICE:
            needs[subject_id] = EVERY_SERVICE
        elif services:
            held = needs.get(subject_id, NOTHING)
            if held is not EVERY_SERVICE:
                needs[subject_id] = held | services
    await service.load_known(session, subjects, needs)


def build(settings: Settings) -> dict[type[Event], Handler]:
    """The handlers, bound to the service's settings."""
    clock = settings.clock

    # --- mothers (pmtct.enrolment.v1) ---

    async def wait_for_art(
        session: AsyncSession, ce: CloudEvent, event: ClientEnrolled | HivTestRecorded, reason_code: str
    ) -> None:
        """She is known positive as of this event: refer her for ART unless it starts in time."""
        await service.schedule_art_initiation(
            session,
            Cause.of(ce),
            settings,
            client_id=event.client_id,
            facility_id=event.facility_id,
            diagnosed_at=event.occurred_at,
            reason_code=reason_code,
        )

    async def client_enrolled(session: AsyncSession, ce: CloudEvent, event: ClientEnrolled) -> None:
        # Enrolling (again, after a transfer in) makes her a current client.
        await service.set_subject_active(session, event.client_id)
        if event.on_art:
            await service.art_started(
                session, Cause.of(ce), event.client_id, event.occurred_at, ReferralService.art_initiation, clock
            )
        elif rules.enrolled_positive_without_art(event):
            await wait_for_art(session, ce, event, rules.REASON_KNOWN_POSITIVE_NOT_ON_ART)

    async def hiv_test_recorded(session: AsyncSession, ce: CloudEvent, event: HivTestRecorded) -> None:
        await _back_in_care(session, ce, event.client_id, clock)
        if rules.is_new_hiv_diagnosis(event):
            await wait_for_art(session, ce, event, rules.REASON_NEW_DIAGNOSIS)

    async def art_initiated(session: AsyncSession, ce: CloudEvent, event: ArtInitiated) -> None:
        await _back_in_care(session, ce, event.client_id, clock)
        await service.art_started(
            session, Cause.of(ce), event.client_id, event.occurred_at, ReferralService.art_initiation, clock
        )

    async def mother_seen(session: AsyncSession, ce: CloudEvent, event: AncVisitRecorded | ViralLoadRecorded) -> None:
        await _back_in_care(session, ce, event.client_id, clock)

    async def delivery_recorded(session: AsyncSession, ce: CloudEvent, event: DeliveryRecorded) -> None:
        if event.maternal_outcome is MaternalOutcome.died:
            await service.subject_ended(session, Cause.of(ce), event.client_id, rules.OUTCOME_DIED, clock)
        else:
            await _back_in_care(session, ce, event.client_id, clock)

    async def client_died(session: AsyncSession, ce: CloudEvent, event: ClientDied) -> None:
        await service.subject_ended(session, Cause.of(ce), event.client_id, rules.OUTCOME_DIED, clock)

    async def client_transferred_out(session: AsyncSession, ce: CloudEvent, event: ClientTransferredOut) -> None:
        await service.subject_ended(session, Cause.of(ce), event.client_id, rules.OUTCOME_TRANSFERRED_OUT, clock)

    # --- infants and lost clients (pmtct.followup.v1) ---

    async def infant_test_due(session: AsyncSession, ce: CloudEvent, event: InfantTestDue) -> None:
        reason = rules.test_due_reason(event.kind.value)
        service_ = ReferralService.eid_sample_collection
        await _refer_infant(session, ce, event, service_, reason, event.window_end, clock, Urgency.routine)

    async def infant_test_overdue(session: AsyncSession, ce: CloudEvent, event: InfantTestOverdue) -> None:
        due_by = clock.local_day(event.occurred_at) + timedelta(days=settings.tracing_due_days)
        reason = rules.test_overdue_reason(event.kind.value)
        await _refer_infant(session, ce, event, ReferralService.community_tracing, reason, due_by, clock)

    async def lost_to_follow_up(session: AsyncSession, ce: CloudEvent, event: ClientLostToFollowUp) -> None:
        await service.open_automatic(
            session,
            Cause.of(ce),
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            client_id=event.client_id,
            facility_id=event.facility_id,
            service=ReferralService.community_tracing,
            reason_code=rules.REASON_LOST_TO_FOLLOW_UP,
            due_by=clock.local_day(event.occurred_at) + timedelta(days=settings.tracing_due_days),
            clock=clock,
        )

    async def infant_test_resulted(session: AsyncSession, ce: CloudEvent, event: InfantTestResulted) -> None:
        await service.close_open(
            session,
            Cause.of(ce),
            event.infant_id,
            Action.complete,
            rules.OUTCOME_TEST_RESULTED,
            services=rules.MET_BY_INFANT_RESULT,
            clock=clock,
        )
        if event.result is TestResult.positive:
            due_by = clock.local_day(event.occurred_at) + timedelta(days=settings.infant_art_due_days)
            reason = rules.REASON_POSITIVE_INFANT_TEST
            await _refer_infant(session, ce, event, ReferralService.infant_art, reason, due_by, clock)

    async def infant_art_initiated(session: AsyncSession, ce: CloudEvent, event: InfantArtInitiated) -> None:
        await _back_in_care(session, ce, event.infant_id, clock)
        await service.art_started(
            session, Cause.of(ce), event.infant_id, event.occurred_at, ReferralService.infant_art, clock
        )

    async def infant_seen(
        session: AsyncSession,
        ce: CloudEvent,
        event: InfantVisitRecorded | InfantProphylaxisRecorded | InfantFeedingRecorded,
    ) -> None:
        await _back_in_care(session, ce, event.infant_id, clock)

    async def infant_final_outcome(session: AsyncSession, ce: CloudEvent, event: InfantFinalOutcomeRecorded) -> None:
        if event.outcome is FinalOutcome.died:
            await service.subject_ended(session, Cause.of(ce), event.infant_id, rules.OUTCOME_DIED, clock)
        elif event.outcome is FinalOutcome.transferred_out:
            await service.subject_ended(session, Cause.of(ce), event.infant_id, rules.OUTCOME_TRANSFERRED_OUT, clock)

    return {
        ClientEnrolled: client_enrolled,
        HivTestRecorded: hiv_test_recorded,
        ArtInitiated: art_initiated,
        AncVisitRecorded: mother_seen,
        ViralLoadRecorded: mother_seen,
        DeliveryRecorded: delivery_recorded,
        ClientDied: client_died,
        ClientTransferredOut: client_transferred_out,
        InfantTestDue: infant_test_due,
        InfantTestOverdue: infant_test_overdue,
        ClientLostToFollowUp: lost_to_follow_up,
        InfantTestResulted: infant_test_resulted,
        InfantArtInitiated: infant_art_initiated,
        InfantVisitRecorded: infant_seen,
        InfantProphylaxisRecorded: infant_seen,
        InfantFeedingRecorded: infant_seen,
        InfantFinalOutcomeRecorded: infant_final_outcome,
    }
