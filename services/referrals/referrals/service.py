"""Use cases of the referrals service.

Every change of a referral goes through `_record`: the row, its action (with the note), one
ReferralEvent in the outbox and one feed entry, all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

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
from servicekit.clock import Clock
from servicekit.db import at_commit
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
    session: AsyncSession, principal: Principal, registry: FacilityRegistry, body: ReferralCreate, clock: Clock
) -> Referral:
    moment = clock.now()
    _check_facility(registry, body.from_facility_id, "from_facility_id")
    if body.to_facility_id is not None:
        _check_facility(registry, body.to_facility_id, "to_facility_id")
    principal.require_facility(body.from_facility_id)
    requested_at = (body.requested_at or moment).astimezone(UTC)
    _check_time(requested_at, moment, "requested_at")
    if body.due_by < clock.local_day(requested_at):
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
    session: AsyncSession,
    principal: Principal,
    referral_id: UUID,
    action: Action,
    body: ReferralActionRequest,
    clock: Clock,
) -> Referral:
    moment = clock.now()
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

#: session.info key of the `KnownSubjects` of a consumer transaction
KNOWN = "referrals.known_subjects"


@dataclass
class KnownSubjects:
    """What one consumer transaction loaded up front (`load_known`) about the subjects of its
    events, so that an event that can change nothing costs no statement. The use cases below keep
    it current; a subject (or need) it does not cover is looked up as without it. A subject's
    state and ART wait are read only through it, so their changes wait for the commit and go in
    one statement each (an ART wait is ended at once: the timer must find it locked).

    `open` holds every open referral of `locked` needs (None: every service of the subject) and
    the ones this transaction opened: all of them locked by this transaction, so nobody else
    changes them until it ends."""

    facts: dict[UUID, repository.SubjectFacts] = field(default_factory=dict)
    locked: dict[UUID, frozenset[ReferralService] | None] = field(default_factory=dict)
    open: dict[UUID, dict[ReferralService, Referral]] = field(default_factory=dict)
    #: subjects whose state changed, and ART waits started: written at commit (`_write_at_commit`)
    changed_states: set[UUID] = field(default_factory=set)
    new_waits: dict[UUID, repository.ArtWait] = field(default_factory=dict)

    def covers(self, subject_id: UUID, services: Collection[ReferralService] | None) -> bool:
        if subject_id not in self.locked:
            return False
        held = self.locked[subject_id]
        return held is None or (services is not None and held.issuperset(services))

    def open_of(self, subject_id: UUID, services: Collection[ReferralService] | None) -> list[Referral]:
        found = self.open.get(subject_id, {})
        return sorted(
            (r for s, r in found.items() if services is None or s in services),
            key=lambda r: r.id,
        )

    def opened(self, r: Referral) -> None:
        self.open.setdefault(r.subject_id, {})[r.referral_service] = r

    def closed(self, r: Referral) -> None:
        self.open.get(r.subject_id, {}).pop(r.referral_service, None)

    def forget_open(self, subject_id: UUID) -> None:
        self.locked.pop(subject_id, None)
        self.open.pop(subject_id, None)


async def load_known(
    session: AsyncSession,
    subjects: Iterable[UUID],
    needs: dict[UUID, frozenset[ReferralService] | None],
) -> KnownSubjects:
    """Load (two statements) the state and ART wait of `subjects` and lock the open referrals of
    `needs`: subject -> the services its events may close (None: every one). Kept in
    `session.info` for the use cases below."""
    known = KnownSubjects(facts=await repository.subject_facts(session, set(subjects)), locked=dict(needs))
    for r in await repository.lock_open_for_needs(session, needs):
        known.opened(r)
    return at_commit(session, KNOWN, known, _write_at_commit)


def _known(session: AsyncSession) -> KnownSubjects | None:
    return session.info.get(KNOWN)


def _write_at_commit(session: Session, known: KnownSubjects) -> None:
    if known.changed_states:
        repository.save_subject_states(session, {s: known.facts[s].state for s in sorted(known.changed_states)})
    if known.new_waits:
        repository.schedule_art_waits(session, [known.new_waits[s] for s in sorted(known.new_waits)])


async def _state_of(session: AsyncSession, subject_id: UUID) -> repository.SubjectState:
    known = _known(session)
    if known is not None and subject_id in known.facts:
        return known.facts[subject_id].state
    return await repository.subject_state_of(session, subject_id)


async def _set_state(session: AsyncSession, subject_id: UUID, **values: object) -> None:
    """Write the subject's state (at commit when it is known), unless it is so already."""
    known = _known(session)
    if known is not None and subject_id in known.facts:
        facts = known.facts[subject_id]
        if all(getattr(facts.state, k) == v for k, v in values.items()):
            return
        known.facts[subject_id] = replace(facts, state=replace(facts.state, **values))
        known.changed_states.add(subject_id)
        return
    await repository.set_subject_state(session, subject_id, **values)


async def _drop_art_wait(session: AsyncSession, subject_id: UUID) -> None:
    known = _known(session)
    if known is None:
        await repository.drop_art_wait(session, subject_id)
        return
    facts = known.facts.get(subject_id)
    if facts is not None:
        known.new_waits.pop(subject_id, None)
        if not facts.waiting_for_art:
            return  # only this subject's own events start a wait, and none did since it was loaded
        known.facts[subject_id] = replace(facts, waiting_for_art=False)
    if not await repository.drop_art_wait(session, subject_id):
        # The timer may have taken the wait after the batch was loaded, and opened an ART referral
        # that the loaded open referrals lack: look the subject's referrals up afresh from now on.
        known.forget_open(subject_id)


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
    clock: Clock,
) -> Referral | None:
    """Open a referral for a need, unless one is open already (however often the event that
    causes it is delivered) or the subject has died or left. None when nothing was opened."""
    state = await _state_of(session, subject_id)
    if state.ended is not None:
        return None
    if service in (ReferralService.art_initiation, ReferralService.infant_art) and state.on_art_since is not None:
        return None
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
        cause_event_id=cause.event_id,
    )
    known = _known(session)
    if known is not None and service in known.open.get(subject_id, {}):
        return None  # open, and locked by us: the insert would find it
    if not await repository.insert_open(session, r):
        return None
    if known is not None:
        known.opened(r)
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
    clock: Clock,
) -> list[Referral]:
    """Complete or cancel the subject's open referrals (of `services`, those `only` accepts):
    loop closure by the event that meets the need, or by death or transfer."""
    known = _known(session)
    if known is not None and known.covers(subject_id, services):
        candidates = known.open_of(subject_id, services)
    else:
        candidates = await repository.lock_open_for_subject(session, subject_id, services)
    moment = clock.now()
    closed = []
    for r in candidates:
        if only is not None and not only(r):
            continue
        changed = _transitioned(r, action, moment, outcome_code)
        await repository.save(session, changed)
        await _record(session, changed, action, at=moment, actor=SYSTEM, cause=cause)
        if known is not None:
            known.closed(changed)
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
    state = await _state_of(session, client_id)
    if state.ended is not None or state.on_art_since is not None:
        return
    wait = repository.ArtWait(
        client_id=client_id,
        facility_id=facility_id,
        diagnosed_at=diagnosed_at,
        due_at=rules.art_wait_due_at(diagnosed_at, settings.art_initiation_wait_days),
        reason_code=reason_code,
        cause_event_id=cause.event_id,
        correlation_id=cause.correlation_id,
    )
    known = _known(session)
    if known is not None and client_id in known.facts:
        known.new_waits.setdefault(client_id, wait)  # the first diagnosis, as the insert keeps
        return
    await repository.schedule_art_wait(session, wait)


async def art_started(
    session: AsyncSession, cause: Cause, subject_id: UUID, started_at: datetime, service: ReferralService, clock: Clock
) -> None:
    """ART started: no ART referral is needed any more, and an open one is met."""
    await _drop_art_wait(session, subject_id)
    await _set_state(session, subject_id, on_art_since=started_at)
    await close_open(
        session, cause, subject_id, Action.complete, rules.OUTCOME_ART_INITIATED, services=[service], clock=clock
    )


async def set_subject_active(session: AsyncSession, subject_id: UUID) -> None:
    """Enrolled (again, e.g. transferred back in): automatic referrals apply to her once more."""
    await _set_state(session, subject_id, ended=None)


async def subject_ended(session: AsyncSession, cause: Cause, subject_id: UUID, ended: str, clock: Clock) -> None:
    """Died or transferred out: cancel what is open, with the reason, and open nothing more."""
    await _drop_art_wait(session, subject_id)
    await _set_state(session, subject_id, ended=ended)
    await close_open(session, cause, subject_id, Action.cancel, ended, clock=clock)


async def open_due_art_referrals(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    """Open an ART-initiation referral for every wait that is over; returns how many waits ended."""
    done = 0
    while True:
        async with sessions() as session, session.begin():
            waits = await repository.lock_due_art_waits(session, settings.clock.now(), settings.timer_batch_size)
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
                    due_by=settings.clock.today() + timedelta(days=settings.art_initiation_due_days),
                    clock=settings.clock,
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
            moment = settings.clock.now()
            for r in batch:
                changed = _transitioned(r, Action.expire, moment, None)
                await repository.save(session, changed)
                await _record(session, changed, Action.expire, at=moment, actor=SYSTEM)
        expired += len(batch)
        if len(batch) < settings.timer_batch_size:
            return expired
