"""Automatic referrals: what the platform's events (and the ART timer) do to a subject's referrals.

Each use case works on a subject held by the caller's unit of work (`repository.ReferralsUnit`):
it asks `uow.subjects` for her (a consumer batch has loaded all its subjects already), changes her
in memory, and her changes raise their events; the unit writes both as it commits.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import date, datetime
from uuid import UUID

from pmtct_events.enrolment import ClientEnrolled, HivTestRecorded
from pmtct_events.followup import SubjectType
from pmtct_events.referrals import ReferralOrigin, ReferralService, Urgency
from servicekit.clock import Clock

from . import rules
from .models import ArtWait, Referral
from .repository import ReferralsUnit
from .rules import Action
from .subjects import Subject

SYSTEM = "referrals-service"
ART_NEEDS = (ReferralService.art_initiation, ReferralService.infant_art)


def _cause_id(uow: ReferralsUnit) -> UUID | None:
    """The event behind what the unit does now: the consumed one, or the one a timer acts on."""
    return uow.causation[0] if uow.causation is not None else None


async def open_automatic(
    uow: ReferralsUnit,
    *,
    subject_type: SubjectType,
    subject_id: UUID,
    client_id: UUID | None,
    facility_id: str,
    service: ReferralService,
    reason_code: str,
    due_by: date,
    clock: Clock,
    urgency: Urgency = Urgency.urgent,
    need_on: date | None = None,
    happened_at: datetime | None = None,
) -> Referral | None:
    """Open a referral for a need, unless one is open already (however often the event that
    causes it is delivered) or the subject has died or left. None when nothing was opened. Its
    cause is the unit's (`uow.causation`); `need_on` is the clinical day of the need (`rules.closes_on`).
    A need that arose (`happened_at`) before the fact that ended her, posted after it, is opened and
    cancelled by that end at once, as it was posted in order (`Subject.ended_after`); an ART need that
    arose before the ART start that met it, posted after it, is opened and completed by it at once."""
    subject = await uow.subjects.of(subject_id)
    ended_since = subject.ended is not None and happened_at is not None and subject.ended_after(happened_at)
    if subject.ended is not None and not ended_since:
        return None
    art_since = subject.on_art_since if service in ART_NEEDS else None
    met_since = art_since is not None and happened_at is not None and happened_at < art_since
    if art_since is not None and not met_since:
        return None
    if service in subject.open:
        return None  # open, and locked by us (or opened by this unit)
    moment = clock.now()
    r = Referral.requested(
        requested_at=moment,
        subject_type=subject_type,
        subject_id=subject_id,
        client_id=client_id,
        from_facility_id=facility_id,
        to_facility_id=None,
        referral_service=service,
        reason_code=reason_code,
        urgency=urgency,
        due_by=rules.automatic_due_by(due_by, clock.local_day(moment)),
        origin=ReferralOrigin.automatic,
        created_by=SYSTEM,
        cause_event_id=_cause_id(uow),
        need_on=need_on,
    )
    opened = subject.open_referral(r, actor=SYSTEM)
    if met_since:
        by = await uow.facts.earliest_art_start(subject_id)
        return subject.act(
            opened, Action.complete, at=moment, actor=SYSTEM, outcome_code=rules.OUTCOME_ART_INITIATED, cause=by
        )
    if ended_since:
        return subject.act(
            opened, Action.cancel, at=moment, actor=SYSTEM, outcome_code=subject.ended, cause=subject.ended_by
        )
    return opened


async def close_open(
    uow: ReferralsUnit,
    subject_id: UUID,
    action: Action,
    outcome_code: str,
    *,
    clock: Clock,
    services: Collection[ReferralService] | None = None,
    only: Callable[[Referral], bool] | None = None,
    met_on: date | None = None,
    met_at: datetime | None = None,
) -> list[Referral]:
    """Complete or cancel the subject's open referrals (of `services`, those `only` accepts):
    loop closure by the event that meets the need (dated `met_on`: it completes only the referrals
    whose need it can close, `rules.closes_on`), or by death or transfer. A fact that meets a need
    (`met_at`) before the fact that ended her, posted after it, completes the referrals that end had
    cancelled, as it did posted in order: reopened and completed (unless her need has one open)."""
    subject = await uow.subjects.of(subject_id)
    moment = clock.now()
    cause = _cause_id(uow)

    def meets(r: Referral) -> bool:
        return (
            (services is None or r.referral_service in services)
            and (only is None or only(r))
            and (met_on is None or rules.closes_on(met_on, r.need_on))
        )

    done = [
        subject.act(r, action, at=moment, actor=SYSTEM, outcome_code=outcome_code, cause=cause)
        for r in subject.open_of(services)
        if meets(r)
    ]
    if action is Action.complete and met_at is not None and subject.ended_after(met_at) and subject.ended_by:
        for r in await uow.subjects.touched_by(subject, [subject.ended_by]):
            held = subject.closed.get(r.id)
            if held is None or held.closed_by_event_id != subject.ended_by or held.outcome_code != subject.ended:
                continue
            if held.referral_service in subject.open or not meets(held):
                continue
            again = subject.act(held, Action.reopen, at=moment, actor=SYSTEM)
            done.append(subject.act(again, action, at=moment, actor=SYSTEM, outcome_code=outcome_code, cause=cause))
    return done


async def withdraw(
    uow: ReferralsUnit, subject_id: UUID, service: ReferralService, reason_code: str, outcome_code: str, clock: Clock
) -> list[Referral]:
    """The platform takes back its automatic referrals for a need (service and reason) that the
    facts show was never needed: open or expired ones become cancelled with `outcome_code`
    (`rules.may_withdraw`: completed and declined ones, and manual ones, stay as they are). The one
    way a referral is taken back by the platform (cancelled with a reason, out of REFERRAL_COMPLETION)."""
    subject = await uow.subjects.of(subject_id)
    moment = clock.now()
    held = [*subject.open_of([service]), *await uow.subjects.closed_of(subject, service, reason_code)]
    cause = _cause_id(uow)
    return [
        subject.act(r, Action.withdraw, at=moment, actor=SYSTEM, outcome_code=outcome_code, cause=cause)
        for r in held
        if r.reason_code == reason_code and rules.may_withdraw(r.origin, r.status)
    ]


async def positive_status_known(uow: ReferralsUnit, event: ClientEnrolled | HivTestRecorded) -> datetime | None:
    """Keep the event if it is a fact of her positive status (`rules.positive_status_of`), by the
    consumed CloudEvent; returns when the earliest other standing fact of it happened (for
    `rules.is_new_hiv_diagnosis`), from the facts, not from the order they arrived in."""
    reason = rules.positive_status_of(event)
    if reason is None or uow.causation is None:
        return None
    cause, correlation = uow.causation
    return await uow.facts.record_positive_status(
        event.client_id,
        cause,
        event.occurred_at,
        event.facility_id,
        reason or None,
        str(correlation) if correlation is not None else None,
    )


async def schedule_art_initiation(
    uow: ReferralsUnit,
    *,
    client_id: UUID,
    facility_id: str,
    diagnosed_at: datetime,
    reason_code: str,
    wait_days: float,
) -> None:
    """A positive mother not on ART: refer her for ART initiation unless ART starts in time."""
    subject = await uow.subjects.of(client_id)
    if subject.on_art_since is not None:
        return
    ended_since = subject.ended is not None and subject.ended_after(diagnosed_at)
    if subject.ended is not None and not ended_since:
        return
    cause = uow.causation
    subject.start_art_wait(
        ArtWait(
            client_id=client_id,
            facility_id=facility_id,
            diagnosed_at=diagnosed_at,
            due_at=rules.art_wait_due_at(diagnosed_at, wait_days),
            reason_code=reason_code,
            cause_event_id=cause[0] if cause is not None else None,
            correlation_id=str(cause[1]) if cause is not None else None,
            # a diagnosis before the fact that ended her, posted after it: her wait, ended by that
            # fact as it was posted in order (a void of it lets the wait run again)
            ended_at=subject.ended_at if ended_since else None,
            ended_by_event_id=subject.ended_by if ended_since else None,
        )
    )


async def art_started(
    uow: ReferralsUnit, subject_id: UUID, started_at: datetime, service: ReferralService, clock: Clock
) -> None:
    """ART started: no ART referral is needed any more, and an open one is met."""
    subject = await uow.subjects.of(subject_id)
    await uow.subjects.end_art_wait(subject, clock.now(), _cause_id(uow))
    subject.set_state(on_art_since=started_at)
    if (cause := _cause_id(uow)) is not None:  # for a void of it (`voided`)
        uow.facts.record_art_start(subject_id, cause, started_at)
    await close_open(
        uow,
        subject_id,
        Action.complete,
        rules.OUTCOME_ART_INITIATED,
        services=[service],
        clock=clock,
        met_at=started_at,
    )


async def set_subject_active(uow: ReferralsUnit, subject_id: UUID, enrolled_at: datetime | None = None) -> None:
    """Enrolled (again, e.g. transferred in; `enrolled_at`: when) or followed again (an infant):
    automatic referrals apply to her once more."""
    subject = await uow.subjects.of(subject_id)
    subject.set_state(ended=None, ended_at=None, ended_by=None)
    if enrolled_at is not None:
        subject.set_state(enrolled_at=max(subject.enrolled_at or enrolled_at, enrolled_at))


def transfer_followed_by_enrolment(subject: Subject, transferred_at: datetime) -> bool:
    """A transfer out dated before her latest enrolment (elsewhere: the two EMRs post on their own,
    so it may come after it) was followed by it: she is back in care, as follow-up decides too
    (`followup.stream.apply_to_mother`), in whichever order the two came."""
    return subject.enrolled_at is not None and transferred_at < subject.enrolled_at


async def subject_ended(uow: ReferralsUnit, subject_id: UUID, ended: str, clock: Clock, at: datetime) -> None:
    """Died or transferred out (the fact dated `at`): cancel what is open, with the reason, and open
    nothing more (but what facts dated before `at`, posted later, did before it: `Subject.ended_after`).
    An end dated before the one she has already stays behind it (in order, the later one ended her)."""
    subject = await uow.subjects.of(subject_id)
    await uow.subjects.end_art_wait(subject, clock.now(), _cause_id(uow))
    if subject.ended_after(at):
        return
    subject.set_state(ended=ended, ended_at=at, ended_by=_cause_id(uow))
    await close_open(uow, subject_id, Action.cancel, ended, clock=clock)


async def voided(
    uow: ReferralsUnit,
    subject_id: UUID,
    voided_ids: Collection[UUID],
    voided_type: str,
    clock: Clock,
    wait_days: float,
) -> None:
    """A fact voided, entered in error (ClientEventVoided / InfantEventVoided: `voided_ids` are the
    CloudEvents its acceptance had published): her referrals are as if it had never been posted.
    The ART wait its diagnosis started ends; the automatic referrals it opened are cancelled
    `entered_in_error` (open or expired: `rules.may_cancel_in_error`); those it closed are reopened
    as they were (`rules.may_reopen`; unless her need has another referral open now); a death or an
    ART start it recorded no longer stands (another ART start of hers may: she stays on ART since
    the earliest, and her ART referral stays met), and an ART wait it had ended runs again (she is referred
    when it is over, as if it had never been posted). A voided delivery's infants were never born on the
    platform: their automatic referrals are cancelled `entered_in_error`, and nothing more opens for
    them. The ART wait a voided diagnosis started runs again from her earliest diagnosis that stands
    (a later positive test of hers: as if the voided one had never been posted, it is the diagnosis;
    `wait_days`, as `schedule_art_initiation`). A second delivery of the same void finds nothing left
    to change."""
    ids = frozenset(voided_ids)
    subject = await uow.subjects.of(subject_id)
    moment = clock.now()
    await uow.subjects.end_art_wait_caused_by(subject, ids)
    first_voided, first = await uow.facts.void_positive_status(subject_id, ids)
    closed = await uow.subjects.touched_by(subject, ids)
    for r in [*subject.open_of(), *closed]:
        if r.cause_event_id in ids and rules.may_cancel_in_error(r.origin, r.status):
            subject.act(r, Action.withdraw, at=moment, actor=SYSTEM, outcome_code=rules.OUTCOME_ENTERED_IN_ERROR)
    was_art_start, standing = await uow.facts.void_art_starts(subject_id, ids)
    if was_art_start:
        on_art_since = standing[0] if standing is not None else None
    else:
        on_art_since = rules.on_art_after_void(subject.on_art_since, voided_type)
    for r in closed:
        held = subject.closed.get(r.id)
        if held is None or held.closed_by_event_id not in ids or not rules.may_reopen(held.status):
            continue
        if held.referral_service in subject.open:
            continue  # her need has a referral open now: that one stands
        if held.referral_service in ART_NEEDS and on_art_since is not None:
            # another ART start of hers stands: the need was met all the same, by that one now
            if standing is not None:
                subject.reattribute(held, closed_by=standing[1])
            continue
        subject.act(held, Action.reopen, at=moment, actor=SYSTEM)
    ended = rules.ended_after_void(subject.ended, voided_type)
    ending = {"ended_at": None, "ended_by": None} if ended is None else {}
    subject.set_state(ended=ended, on_art_since=on_art_since, **ending)
    if subject.ended is None and subject.on_art_since is None:
        await uow.subjects.resume_art_wait(subject, ids)
        if first_voided and first is not None and first.reason_code is not None:
            subject.start_art_wait(
                ArtWait(
                    client_id=subject_id,
                    facility_id=first.facility_id,
                    diagnosed_at=first.diagnosed_at,
                    due_at=rules.art_wait_due_at(first.diagnosed_at, wait_days),
                    reason_code=first.reason_code,
                    cause_event_id=first.event_id,
                    correlation_id=first.correlation_id,
                )
            )
    for infant_id in await uow.facts.infants_of(ids):
        infant = await uow.subjects.of(infant_id)
        infant.set_state(ended=rules.OUTCOME_ENTERED_IN_ERROR)
        for r in infant.open_of():
            if rules.may_cancel_in_error(r.origin, r.status):
                infant.act(r, Action.withdraw, at=moment, actor=SYSTEM, outcome_code=rules.OUTCOME_ENTERED_IN_ERROR)
