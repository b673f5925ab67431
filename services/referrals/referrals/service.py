"""Use cases of the referrals service.

Every change of a referral goes through `_record`: the row, its action (with the note), one
ReferralEvent in the outbox and one feed entry, all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pmtct_events import CloudEvent
from pmtct_events.followup import SubjectType
from pmtct_events.referrals import (
    ReferralAccepted,
    ReferralCancelled,
    ReferralCompleted,
    ReferralCreated,
    ReferralDeclined,
    ReferralEvent,
    ReferralExpired,
    ReferralOrigin,
    ReferralService,
    ReferralStatus,
    Urgency,
)
from servicekit import outbox
from servicekit.auth import Principal
from servicekit.facilities import FacilityRegistry
from servicekit.problems import Problem

from . import feed, repository, rules
from .fhir import TaskQuery
from .models import Referral
from .rules import Action
from .schemas import FeedEntry, FeedPage, ReferralActionPublic, ReferralActionRequest, ReferralCreate
from .settings import Settings

SYSTEM = "referrals-service"
#: how far in the future an action's time may be (clock skew between an EMR and us)
CLOCK_SKEW = timedelta(minutes=5)

EVENT_OF: dict[Action | None, type[ReferralEvent]] = {
    None: ReferralCreated,
    Action.accept: ReferralAccepted,
    Action.complete: ReferralCompleted,
    Action.decline: ReferralDeclined,
    Action.cancel: ReferralCancelled,
    Action.expire: ReferralExpired,
}


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a change happens: the consumed event (or timer) behind it, for the CloudEvents
    causation and correlation ids of what we publish."""

    event_id: UUID | None = None
    correlation_id: str | None = None

    @classmethod
    def of(cls, ce: CloudEvent) -> Cause:
        return cls(ce.id, ce.correlation_id or str(ce.id))


async def _record(
    session: AsyncSession,
    r: Referral,
    action: Action | None,
    *,
    at: datetime,
    actor: str,
    note: str | None = None,
    cause: Cause = Cause(),
) -> None:
    """Write `r`'s new version: its action, its event (outbox) and its feed entry."""
    await repository.add_action(session, r, action=action.value if action else "request", at=at, actor=actor, note=note)
    event = EVENT_OF[action](
        facility_id=r.from_facility_id,
        occurred_at=at,
        referral_id=r.id,
        subject_type=r.subject_type,
        subject_id=r.subject_id,
        client_id=r.client_id,
        to_facility_id=r.to_facility_id,
        referral_service=r.referral_service,
        urgency=r.urgency,
        due_by=r.due_by,
        status=r.status,
        origin=r.origin,
        reason_code=r.reason_code,
        outcome_code=r.outcome_code,
        version=r.version,
        requested_at=r.requested_at,
        accepted_at=r.accepted_at,
    )
    [ce] = await outbox.add(session, event, correlation_id=cause.correlation_id, causation_id=cause.event_id)
    feed.enlist(session, ce, r)


def _transitioned(r: Referral, action: Action, at: datetime, outcome_code: str | None) -> Referral:
    status = rules.next_status(r.status, action)
    if status is ReferralStatus.accepted:
        return r.changed(status=status, accepted_at=at, outcome_code=outcome_code)
    return r.changed(status=status, closed_at=at, outcome_code=outcome_code or r.outcome_code)


# --- by hand (HTTP) ------------------------------------------------------------------------------


def _check_facility(registry: FacilityRegistry, facility_id: str, field: str) -> None:
    if facility_id not in registry:
        raise Problem(422, "unknown_facility", f"{field}: facility {facility_id!r} is not in the facility registry.")


def _check_time(at: datetime, moment: datetime, field: str) -> None:
    if at > moment + CLOCK_SKEW:
        raise Problem(422, "time_in_future", f"{field} {at.isoformat()} is in the future.")


async def create_referral(
    session: AsyncSession, principal: Principal, registry: FacilityRegistry, body: ReferralCreate
) -> Referral:
    moment = now()
    _check_facility(registry, body.from_facility_id, "from_facility_id")
    if body.to_facility_id is not None:
        _check_facility(registry, body.to_facility_id, "to_facility_id")
    principal.require_facility(body.from_facility_id)
    requested_at = (body.requested_at or moment).astimezone(UTC)
    _check_time(requested_at, moment, "requested_at")
    if body.due_by < requested_at.date():
        raise Problem(422, "due_by_before_request", f"due_by {body.due_by} is before the referral is requested.")
    if body.subject_type is SubjectType.client and body.client_id not in (None, body.subject_id):
        raise Problem(422, "client_id_mismatch", "For a client referral, client_id is the subject itself.")
    r = Referral.requested(
        requested_at=requested_at,
        subject_type=body.subject_type,
        subject_id=body.subject_id,
        client_id=body.client_id or (body.subject_id if body.subject_type is SubjectType.client else None),
        from_facility_id=body.from_facility_id,
        to_facility_id=body.to_facility_id,
        referral_service=body.referral_service,
        reason_code=body.reason_code,
        urgency=body.urgency,
        due_by=body.due_by,
        origin=ReferralOrigin.manual,
        created_by=principal.client_id,
        cause_event_id=None,
    )
    async with session.begin():
        if not await repository.insert_open(session, r):
            existing = await repository.open_for_need(session, r.subject_id, r.referral_service)
            raise Problem(
                409,
                "referral_already_open",
                f"This {r.subject_type.value} already has an open {r.referral_service.value} referral.",
                referral_id=str(existing.id) if existing else None,
            )
        await _record(session, r, None, at=requested_at, actor=principal.client_id, note=body.note)
    return r


def _may_act(principal: Principal, r: Referral, action: Action) -> bool:
    """The receiving side accepts or declines, the referring side cancels, either completes."""
    if action in (Action.accept, Action.decline):
        return principal.may_act_for(r.receiving_facility_id)
    if action is Action.cancel:
        return principal.may_act_for(r.from_facility_id)
    return principal.may_act_for(r.from_facility_id) or principal.may_act_for(r.receiving_facility_id)


def _may_read(principal: Principal, r: Referral) -> bool:
    return principal.may_act_for(r.from_facility_id) or (
        r.to_facility_id is not None and principal.may_act_for(r.to_facility_id)
    )


async def act(
    session: AsyncSession, principal: Principal, referral_id: UUID, action: Action, body: ReferralActionRequest
) -> Referral:
    moment = now()
    at = (body.at or moment).astimezone(UTC)
    _check_time(at, moment, "at")
    if action in rules.NEEDS_OUTCOME and body.outcome_code is None:
        raise Problem(422, "outcome_required", f"To {action.value} a referral, give the reason as outcome_code.")
    async with session.begin():
        r = await repository.get(session, referral_id, lock=True)
        if r is None or not _may_read(principal, r):
            raise _not_found(referral_id)
        if not _may_act(principal, r, action):
            raise Problem(
                403, "facility_forbidden", f"This client may not {action.value} a referral of these facilities."
            )
        try:
            changed = _transitioned(r, action, at, body.outcome_code)
        except rules.InvalidTransition as exc:
            raise Problem(
                409, "invalid_transition", str(exc), current_status=r.status.value, referral_id=str(r.id)
            ) from exc
        if at < r.requested_at:
            raise Problem(422, "time_before_request", f"at {at.isoformat()} is before the referral was requested.")
        await repository.save(session, changed)
        await _record(session, changed, action, at=at, actor=principal.client_id, note=body.note)
    return changed


def _not_found(referral_id: UUID) -> Problem:
    # The same answer for a referral of another facility: its existence is not the caller's business.
    return Problem(404, "referral_not_found", f"No referral {referral_id} that this client may see.")


async def get_referral(session: AsyncSession, principal: Principal, referral_id: UUID) -> Referral:
    r = await repository.get(session, referral_id)
    if r is None or not _may_read(principal, r):
        raise _not_found(referral_id)
    return r


async def history(session: AsyncSession, referral_id: UUID) -> list[ReferralActionPublic]:
    return [ReferralActionPublic.model_validate(a) for a in await repository.actions(session, referral_id)]


def visible_facilities(principal: Principal, facility_id: str | None) -> Collection[str] | None:
    """The facilities a reader may see (None = all); a named facility must be one of them."""
    if facility_id is not None:
        principal.require_facility(facility_id)
    return None if principal.national else principal.facilities


async def list_referrals(
    session: AsyncSession,
    principal: Principal,
    *,
    facility_id: str | None,
    status: ReferralStatus | None,
    subject_id: UUID | None,
    limit: int,
    offset: int,
) -> list[Referral]:
    return await repository.search(
        session,
        facilities=visible_facilities(principal, facility_id),
        facility_id=facility_id,
        statuses=[status] if status else None,
        subject_id=subject_id,
        limit=limit,
        offset=offset,
    )


async def search_tasks(session: AsyncSession, principal: Principal, query: TaskQuery, *, limit: int) -> list[Referral]:
    """Referrals for a FHIR Task search; `owner` is the receiving facility."""
    return await repository.search(
        session,
        facilities=visible_facilities(principal, None),
        receiving_facility_id=query.owner,
        statuses=query.statuses,
        subject_id=query.subject_id,
        referral_ids=query.referral_ids,
        limit=limit,
    )


async def read_feed(
    session: AsyncSession, principal: Principal, *, after: str | None, limit: int, facility_id: str | None
) -> FeedPage:
    position = feed.parse_cursor(after)
    if position is None:
        raise Problem(400, "invalid_cursor", "after: a cursor is the next_cursor of an earlier page.")
    facilities = visible_facilities(principal, facility_id)
    if facility_id is not None:
        facilities = [facility_id]
    horizon = await repository.feed_horizon(session)
    if position > horizon:
        raise Problem(400, "invalid_cursor", f"after: cursor {position} is beyond the end of the feed ({horizon}).")
    rows = await repository.feed_page(session, after=position, horizon=horizon, facilities=facilities, limit=limit)
    full = len(rows) == limit
    entries = [
        FeedEntry(
            cursor=feed.cursor(row["position"]),
            event_id=row["event_id"],
            type=row["event_type"],
            time=row["event_time"],
            referral_id=row["referral_id"],
            version=row["version"],
            data=row["data"],
        )
        for row in rows
    ]
    next_position = rows[-1]["position"] if full else horizon
    return FeedPage(entries=entries, next_cursor=feed.cursor(next_position), has_more=full and next_position < horizon)


# --- automatically (event handlers and timers) ---------------------------------------------------


async def open_automatic(
    session: AsyncSession,
    cause: Cause,
    *,
    subject_type: SubjectType,
    subject_id: UUID,
    client_id: UUID | None,
    facility_id: str,
    service: ReferralService,
    reason_code: str,
    due_by: date,
    urgency: Urgency = Urgency.urgent,
) -> Referral | None:
    """Open a referral for a need, unless one is open already (however often the event that
    causes it is delivered) or the subject has died or left. None when nothing was opened."""
    state = await repository.subject_state_of(session, subject_id)
    if state.ended is not None:
        return None
    if service in (ReferralService.art_initiation, ReferralService.infant_art) and state.on_art_since is not None:
        return None
    moment = now()
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
        due_by=rules.automatic_due_by(due_by, moment.date()),
        origin=ReferralOrigin.automatic,
        created_by=SYSTEM,
        cause_event_id=cause.event_id,
    )
    if not await repository.insert_open(session, r):
        return None
    await _record(session, r, None, at=moment, actor=SYSTEM, cause=cause)
    return r


async def close_open(
    session: AsyncSession,
    cause: Cause,
    subject_id: UUID,
    action: Action,
    outcome_code: str,
    *,
    services: Collection[ReferralService] | None = None,
    only: Callable[[Referral], bool] | None = None,
) -> list[Referral]:
    """Complete or cancel the subject's open referrals (of `services`, those `only` accepts):
    loop closure by the event that meets the need, or by death or transfer."""
    moment = now()
    closed = []
    for r in await repository.lock_open_for_subject(session, subject_id, services):
        if only is not None and not only(r):
            continue
        changed = _transitioned(r, action, moment, outcome_code)
        await repository.save(session, changed)
        await _record(session, changed, action, at=moment, actor=SYSTEM, cause=cause)
        closed.append(changed)
    return closed


async def schedule_art_initiation(
    session: AsyncSession,
    cause: Cause,
    settings: Settings,
    *,
    client_id: UUID,
    facility_id: str,
    diagnosed_at: datetime,
    reason_code: str,
) -> None:
    """A positive mother not on ART: refer her for ART initiation unless ART starts in time."""
    state = await repository.subject_state_of(session, client_id)
    if state.ended is not None or state.on_art_since is not None:
        return
    await repository.schedule_art_wait(
        session,
        repository.ArtWait(
            client_id=client_id,
            facility_id=facility_id,
            diagnosed_at=diagnosed_at,
            due_at=rules.art_wait_due_at(diagnosed_at, settings.art_initiation_wait_days),
            reason_code=reason_code,
            cause_event_id=cause.event_id,
            correlation_id=cause.correlation_id,
        ),
    )


async def art_started(
    session: AsyncSession, cause: Cause, subject_id: UUID, started_at: datetime, service: ReferralService
) -> None:
    """ART started: no ART referral is needed any more, and an open one is met."""
    await repository.drop_art_wait(session, subject_id)
    await repository.set_subject_state(session, subject_id, on_art_since=started_at)
    await close_open(session, cause, subject_id, Action.complete, rules.OUTCOME_ART_INITIATED, services=[service])


async def set_subject_active(session: AsyncSession, subject_id: UUID) -> None:
    """Enrolled (again, e.g. transferred back in): automatic referrals apply to her once more."""
    await repository.set_subject_state(session, subject_id, ended=None)


async def subject_ended(session: AsyncSession, cause: Cause, subject_id: UUID, ended: str) -> None:
    """Died or transferred out: cancel what is open, with the reason, and open nothing more."""
    await repository.drop_art_wait(session, subject_id)
    await repository.set_subject_state(session, subject_id, ended=ended)
    await close_open(session, cause, subject_id, Action.cancel, ended)


async def open_due_art_referrals(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    """Open an ART-initiation referral for every wait that is over; returns how many waits ended."""
    done = 0
    while True:
        async with sessions() as session, session.begin():
            waits = await repository.lock_due_art_waits(session, now(), settings.timer_batch_size)
            for w in waits:
                await open_automatic(
                    session,
                    Cause(w.cause_event_id, w.correlation_id),
                    subject_type=SubjectType.client,
                    subject_id=w.client_id,
                    client_id=w.client_id,
                    facility_id=w.facility_id,
                    service=ReferralService.art_initiation,
                    reason_code=w.reason_code,
                    due_by=now().date() + timedelta(days=settings.art_initiation_due_days),
                )
                await repository.drop_art_wait(session, w.client_id)
        done += len(waits)
        if len(waits) < settings.timer_batch_size:
            return done


async def expire_past_due(sessions: async_sessionmaker[AsyncSession], settings: Settings, today: date) -> int:
    """Expire every open referral whose due-by date is before `today`; each exactly once, even
    with several replicas (see repository.lock_past_due)."""
    expired = 0
    while True:
        async with sessions() as session, session.begin():
            batch = await repository.lock_past_due(session, today, settings.timer_batch_size)
            moment = now()
            for r in batch:
                changed = _transitioned(r, Action.expire, moment, None)
                await repository.save(session, changed)
                await _record(session, changed, Action.expire, at=moment, actor=SYSTEM)
        expired += len(batch)
        if len(batch) < settings.timer_batch_size:
            return expired
