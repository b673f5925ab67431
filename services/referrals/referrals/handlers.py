"""Event handlers of the referrals service: the event -> use case table (`build`) of automatic
referrals and automatic loop closure (the use cases are in `stream`).

A consumer batch is one unit of work (`repository.ReferralsUnit`): `preload` loads every subject of
the batch in one go, each handler changes her in memory, and the unit writes the batch once, as it
commits (inbox rows, subjects, outbox and feed in one transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from uuid import UUID

from pmtct_events import Event
from pmtct_events.enrolment import (
    AncVisitRecorded,
    ArtInitiated,
    ClientDied,
    ClientEnrolled,
    ClientEventVoided,
    ClientTransferredOut,
    DeliveryRecorded,
    HivTestRecorded,
    MaternalOutcome,
    PregnancyEnded,
    ViralLoadRecorded,
)
from pmtct_events.followup import (
    AnnouncementWithdrawn,
    ClientAdherenceSupportDue,
    ClientHivTestOverdue,
    ClientLostToFollowUp,
    FinalOutcome,
    InfantArtInitiated,
    InfantCareOverdue,
    InfantCotrimoxazoleRecorded,
    InfantEvent,
    InfantEventVoided,
    InfantFeedingRecorded,
    InfantFinalOutcomeRecorded,
    InfantFollowUpResumed,
    InfantFollowUpStarted,
    InfantProphylaxisRecorded,
    InfantTestDue,
    InfantTestOverdue,
    InfantTestResulted,
    InfantVisitRecorded,
    SubjectType,
)
from pmtct_events.referrals import ReferralService, Urgency
from servicekit.clock import Clock
from servicekit.consumer import Handler

from . import mentoring, repository, rules, stream
from .repository import ReferralsUnit
from .rules import Action
from .settings import Settings

TRACING = [ReferralService.community_tracing]


async def _back_in_care(uow: ReferralsUnit, subject_id: UUID, clock: Clock, event: Event) -> None:
    """A recorded contact: a client traced because she was lost is found (by a contact on or after
    the day she became lost: `rules.closes_on`; an earlier one is follow-up's to judge)."""
    await stream.close_open(
        uow,
        subject_id,
        Action.complete,
        rules.OUTCOME_RETURNED_TO_CARE,
        services=TRACING,
        only=lambda r: rules.tracing_met_by_contact(r.reason_code),
        clock=clock,
        met_on=clock.local_day(event.occurred_at),
        met_at=event.occurred_at,
    )


async def _refer_infant(
    uow: ReferralsUnit,
    event: InfantEvent,
    need: ReferralService,
    reason_code: str,
    due_by: date,
    clock: Clock,
    urgency: Urgency = Urgency.urgent,
    need_on: date | None = None,
    happened_at: datetime | None = None,
) -> None:
    await stream.open_automatic(
        uow,
        subject_type=SubjectType.infant,
        subject_id=event.infant_id,
        client_id=event.client_id,
        facility_id=event.facility_id,
        service=need,
        reason_code=reason_code,
        due_by=due_by,
        urgency=urgency,
        clock=clock,
        need_on=need_on,
        happened_at=happened_at,
    )


def subject_of(event: Event) -> UUID:
    """Whose referrals and state the event is about."""
    if isinstance(event, ClientLostToFollowUp | AnnouncementWithdrawn):
        return event.subject_id
    mentoring_subject = mentoring.subject_of(event)
    if mentoring_subject is not None:
        return mentoring_subject
    if isinstance(event, InfantEvent):
        return event.infant_id
    return event.client_id  # type: ignore[attr-defined]


async def preload(uow: ReferralsUnit, events: Sequence[Event]) -> None:
    """The consumer's batch preload: every subject of the batch, loaded (and her open referrals
    locked) in one go; the handlers then find them in the unit's identity map. Each subject is
    known at the event's facility from now on (a referral by hand needs that: api.create_referral).
    A voided delivery's infants are loaded with her (their referrals are cancelled with it), and
    the standing facts of positive status of those the batch tells positive (`repository.Facts`)."""
    voided = [i for e in events if isinstance(e, ClientEventVoided) for i in e.voided_ids]
    infants = await uow.facts.infants_of(voided)
    await uow.subjects.get_many([*(subject_of(e) for e in events), *infants])
    await uow.facts.get_many(
        e.client_id
        for e in events
        if isinstance(e, ClientEnrolled | HivTestRecorded) and rules.positive_status_of(e) is not None
    )
    await repository.learn_subjects(uow.session, ((subject_of(e), e.facility_id) for e in events))


def build(settings: Settings) -> dict[type[Event], Handler]:
    """The handlers, bound to the service's settings: `handler(event, uow)`, `uow.cause` being the
    consumed envelope (the cause of what the handler raises)."""
    clock = settings.clock
    wait_days = settings.art_initiation_wait_days

    # --- mothers (pmtct.enrolment.v1) ---

    async def wait_for_art(uow: ReferralsUnit, event: ClientEnrolled | HivTestRecorded, reason_code: str) -> None:
        """She is known positive as of this event: refer her for ART unless it starts in time."""
        await stream.schedule_art_initiation(
            uow,
            client_id=event.client_id,
            facility_id=event.facility_id,
            diagnosed_at=event.occurred_at,
            reason_code=reason_code,
            wait_days=settings.art_initiation_wait_days,
        )

    async def client_enrolled(event: ClientEnrolled, uow: ReferralsUnit) -> None:
        # Enrolling (again, after a transfer in) makes her a current client.
        await stream.set_subject_active(uow, event.client_id, event.occurred_at)
        await stream.positive_status_known(uow, event)
        if event.on_art:
            await stream.art_started(uow, event.client_id, event.occurred_at, ReferralService.art_initiation, clock)
        elif rules.enrolled_positive_without_art(event):
            await wait_for_art(uow, event, rules.REASON_KNOWN_POSITIVE_NOT_ON_ART)

    async def hiv_test_recorded(event: HivTestRecorded, uow: ReferralsUnit) -> None:
        await _back_in_care(uow, event.client_id, clock, event)
        await stream.close_open(
            uow,
            event.client_id,
            Action.complete,
            rules.OUTCOME_TEST_RESULTED,
            services=rules.MET_BY_MOTHER_TEST,
            clock=clock,
            met_on=clock.local_day(event.occurred_at),
            met_at=event.occurred_at,
        )
        known_since = await stream.positive_status_known(uow, event)
        if rules.is_new_hiv_diagnosis(event, known_since):
            await wait_for_art(uow, event, rules.REASON_NEW_DIAGNOSIS)

    async def art_initiated(event: ArtInitiated, uow: ReferralsUnit) -> None:
        await _back_in_care(uow, event.client_id, clock, event)
        await stream.art_started(uow, event.client_id, event.occurred_at, ReferralService.art_initiation, clock)

    async def mother_seen(event: AncVisitRecorded | PregnancyEnded, uow: ReferralsUnit) -> None:
        await _back_in_care(uow, event.client_id, clock, event)

    async def viral_load_recorded(event: ViralLoadRecorded, uow: ReferralsUnit) -> None:
        await _back_in_care(uow, event.client_id, clock, event)
        if rules.adherence_support_met_by(event):
            await stream.close_open(
                uow,
                event.client_id,
                Action.complete,
                rules.OUTCOME_VIRAL_LOAD_SUPPRESSED,
                services=[ReferralService.psychosocial_support],
                only=lambda r: r.reason_code == rules.REASON_UNSUPPRESSED_VIRAL_LOAD,
                clock=clock,
                met_at=event.occurred_at,
            )

    async def _refer_mother(
        event: ClientHivTestOverdue | ClientAdherenceSupportDue,
        uow: ReferralsUnit,
        need: ReferralService,
        reason_code: str,
        due_days: int,
        need_on: date | None = None,
    ) -> None:
        await stream.open_automatic(
            uow,
            subject_type=SubjectType.client,
            subject_id=event.client_id,
            client_id=event.client_id,
            facility_id=event.facility_id,
            service=need,
            reason_code=reason_code,
            due_by=clock.local_day(event.occurred_at) + timedelta(days=due_days),
            clock=clock,
            need_on=need_on,
        )

    async def hiv_test_overdue(event: ClientHivTestOverdue, uow: ReferralsUnit) -> None:
        """A woman not known positive missed an HIV test (re)test: refer her for testing."""
        reason = rules.test_overdue_reason(event.kind.value)
        due_days = settings.hiv_testing_due_days
        await _refer_mother(event, uow, ReferralService.hiv_testing, reason, due_days, event.overdue_on)

    async def adherence_support_due(event: ClientAdherenceSupportDue, uow: ReferralsUnit) -> None:
        """An unsuppressed viral load: psychosocial and adherence support by a Mentor Mother."""
        reason = rules.REASON_UNSUPPRESSED_VIRAL_LOAD
        need = ReferralService.psychosocial_support
        await _refer_mother(event, uow, need, reason, settings.adherence_support_due_days)

    async def delivery_recorded(event: DeliveryRecorded, uow: ReferralsUnit) -> None:
        if uow.causation is not None:  # its infants, should it be voided
            uow.facts.remember_delivered(uow.causation[0], (i.infant_id for i in event.infants))
        if event.maternal_outcome is MaternalOutcome.died:
            await stream.subject_ended(uow, event.client_id, rules.OUTCOME_DIED, clock, event.occurred_at)
        else:
            await _back_in_care(uow, event.client_id, clock, event)

    async def client_died(event: ClientDied, uow: ReferralsUnit) -> None:
        await stream.subject_ended(uow, event.client_id, rules.OUTCOME_DIED, clock, event.occurred_at)

    async def client_transferred_out(event: ClientTransferredOut, uow: ReferralsUnit) -> None:
        if stream.transfer_followed_by_enrolment(await uow.subjects.of(event.client_id), event.occurred_at):
            return
        await stream.subject_ended(uow, event.client_id, rules.OUTCOME_TRANSFERRED_OUT, clock, event.occurred_at)

    # --- infants and lost clients (pmtct.followup.v1) ---

    async def infant_test_due(event: InfantTestDue, uow: ReferralsUnit) -> None:
        reason = rules.test_due_reason(event.kind.value)
        need = ReferralService.eid_sample_collection
        await _refer_infant(uow, event, need, reason, event.window_end, clock, Urgency.routine)

    async def infant_test_overdue(event: InfantTestOverdue, uow: ReferralsUnit) -> None:
        due_by = clock.local_day(event.occurred_at) + timedelta(days=settings.tracing_due_days)
        reason = rules.test_overdue_reason(event.kind.value)
        await _refer_infant(
            uow, event, ReferralService.community_tracing, reason, due_by, clock, need_on=event.overdue_on
        )

    async def infant_care_overdue(event: InfantCareOverdue, uow: ReferralsUnit) -> None:
        """A missed HEI clinic visit: community tracing, completed by her next contact."""
        if not rules.care_overdue_is_traced(event.kind.value):
            return
        due_by = clock.local_day(event.occurred_at) + timedelta(days=settings.tracing_due_days)
        reason = rules.test_overdue_reason(event.kind.value)
        await _refer_infant(uow, event, ReferralService.community_tracing, reason, due_by, clock)

    async def lost_to_follow_up(event: ClientLostToFollowUp, uow: ReferralsUnit) -> None:
        await stream.open_automatic(
            uow,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            client_id=event.client_id,
            facility_id=event.facility_id,
            service=ReferralService.community_tracing,
            reason_code=rules.REASON_LOST_TO_FOLLOW_UP,
            due_by=clock.local_day(event.occurred_at) + timedelta(days=settings.tracing_due_days),
            clock=clock,
            need_on=event.lost_on,
        )

    async def announcement_withdrawn(event: AnnouncementWithdrawn, uow: ReferralsUnit) -> None:
        """Follow-up took back an overdue or a loss: facts dated before its day showed the need was
        met, or the fact it rested on was voided. The automatic referral it opened is withdrawn
        (cancelled, `not_needed`, or `entered_in_error`: `rules.withdrawal_outcome`)."""
        need = rules.withdrawn_need(event.announcement, event.kind.value if event.kind else None)
        if need is not None:
            await stream.withdraw(uow, event.subject_id, *need, rules.withdrawal_outcome(event.reason), clock)

    async def client_event_voided(event: ClientEventVoided, uow: ReferralsUnit) -> None:
        """A mother's fact entered in error: her referrals as if it had never been posted."""
        await stream.voided(uow, event.client_id, event.voided_ids, event.voided_type, clock, wait_days)

    async def infant_event_voided(event: InfantEventVoided, uow: ReferralsUnit) -> None:
        """An infant's fact entered in error: her referrals as if it had never been posted."""
        await stream.voided(uow, event.infant_id, event.voided_ids, event.voided_type, clock, wait_days)

    async def infant_test_resulted(event: InfantTestResulted, uow: ReferralsUnit) -> None:
        await stream.close_open(
            uow,
            event.infant_id,
            Action.complete,
            rules.OUTCOME_TEST_RESULTED,
            services=rules.MET_BY_INFANT_RESULT,
            clock=clock,
            met_on=clock.local_day(event.occurred_at),
            met_at=event.occurred_at,
        )
        if rules.infant_result_needs_art(event):
            due_by = clock.local_day(event.occurred_at) + timedelta(days=settings.infant_art_due_days)
            reason = rules.REASON_POSITIVE_INFANT_TEST
            await _refer_infant(
                uow, event, ReferralService.infant_art, reason, due_by, clock, happened_at=event.occurred_at
            )

    async def infant_art_initiated(event: InfantArtInitiated, uow: ReferralsUnit) -> None:
        await _back_in_care(uow, event.infant_id, clock, event)
        await stream.art_started(uow, event.infant_id, event.occurred_at, ReferralService.infant_art, clock)

    async def infant_seen(
        event: InfantVisitRecorded | InfantProphylaxisRecorded | InfantFeedingRecorded | InfantCotrimoxazoleRecorded,
        uow: ReferralsUnit,
    ) -> None:
        await _back_in_care(uow, event.infant_id, clock, event)

    async def infant_final_outcome(event: InfantFinalOutcomeRecorded, uow: ReferralsUnit) -> None:
        if event.outcome is FinalOutcome.died:
            await stream.subject_ended(uow, event.infant_id, rules.OUTCOME_DIED, clock, event.occurred_at)
        elif event.outcome is FinalOutcome.transferred_out:
            await stream.subject_ended(uow, event.infant_id, rules.OUTCOME_TRANSFERRED_OUT, clock, event.occurred_at)
        elif event.outcome is FinalOutcome.discharged:
            await stream.subject_ended(uow, event.infant_id, rules.OUTCOME_DISCHARGED, clock, event.occurred_at)

    async def infant_resumed(event: InfantFollowUpResumed, uow: ReferralsUnit) -> None:
        """Transferred in, or seen after a discharge: she is followed again, at the facility that
        has her (`preload` knows her there), and automatic referrals apply to her once more."""
        await stream.set_subject_active(uow, event.infant_id)

    async def infant_known(event: InfantFollowUpStarted, uow: ReferralsUnit) -> None:
        """Nothing to do but know her at the facility (`preload` does): she may be referred by hand."""

    return {
        ClientEnrolled: client_enrolled,
        HivTestRecorded: hiv_test_recorded,
        ArtInitiated: art_initiated,
        AncVisitRecorded: mother_seen,
        PregnancyEnded: mother_seen,
        ViralLoadRecorded: viral_load_recorded,
        ClientHivTestOverdue: hiv_test_overdue,
        ClientAdherenceSupportDue: adherence_support_due,
        DeliveryRecorded: delivery_recorded,
        ClientDied: client_died,
        ClientTransferredOut: client_transferred_out,
        InfantTestDue: infant_test_due,
        InfantTestOverdue: infant_test_overdue,
        ClientLostToFollowUp: lost_to_follow_up,
        AnnouncementWithdrawn: announcement_withdrawn,
        ClientEventVoided: client_event_voided,
        InfantEventVoided: infant_event_voided,
        InfantTestResulted: infant_test_resulted,
        InfantArtInitiated: infant_art_initiated,
        InfantVisitRecorded: infant_seen,
        InfantProphylaxisRecorded: infant_seen,
        InfantFeedingRecorded: infant_seen,
        InfantCotrimoxazoleRecorded: infant_seen,
        InfantCareOverdue: infant_care_overdue,
        InfantFinalOutcomeRecorded: infant_final_outcome,
        InfantFollowUpResumed: infant_resumed,
        InfantFollowUpStarted: infant_known,
        **mentoring.build(settings),
    }
