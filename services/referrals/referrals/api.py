"""Referrals by hand (HTTP): refer a subject, and accept, complete, decline or cancel a referral.

Each request is one unit of work (`rt.begin()`, a `repository.ReferralsUnit`) committed once, at
the end: the subject's open referrals are locked, the change raises its event, and the unit
writes the referral, its history, the outbox and the feed as it commits.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import cast
from uuid import UUID

from pydantic import ValidationError

from pmtct_events.followup import SubjectType
from pmtct_events.referrals import ReferralOrigin
from servicekit.app import Runtime
from servicekit.auth import Principal
from servicekit.facilities import FacilityRegistry
from servicekit.intake import Code
from servicekit.problems import Problem
from servicekit.settings import ServiceSettings

from . import fhir, repository, rules
from .models import Referral
from .queries import may_read, not_found
from .repository import NeedAlreadyOpen, ReferralsUnit
from .rules import Action
from .schemas import ReferralActionRequest, ReferralCreate


def _unit(rt: Runtime) -> AbstractAsyncContextManager[ReferralsUnit]:
    return cast(AbstractAsyncContextManager[ReferralsUnit], rt.begin())


def _check_facility(registry: FacilityRegistry, facility_id: str, field: str) -> None:
    if facility_id not in registry:
        raise Problem(422, "unknown_facility", f"{field}: facility {facility_id!r} is not in the facility registry.")


def _check_time(at: datetime, moment: datetime, field: str, settings: ServiceSettings) -> None:
    """The intake pipeline's rule and code (`servicekit.intake`): a time may be ahead of ours by the
    one tolerance setting (`PMTCT_INTAKE_FUTURE_TOLERANCE_S`), for clocks that differ a little."""
    if at > moment + timedelta(seconds=settings.intake_future_tolerance_s):
        raise Problem(422, Code.occurred_in_future, f"{field} {at.isoformat()} is in the future.")


def unknown_subject(r: Referral) -> Problem:
    return Problem(
        422,
        "unknown_subject",
        f"The platform has no record of {r.subject_type.value} {r.subject_id} at {r.from_facility_id}: refer a "
        "mother or an infant its EMR has posted there (POST /v1/events). Events reach this service within "
        "seconds of being accepted, so a referral made right after the enrolment may be retried.",
    )


def _already_open(r: Referral, existing: Referral | None) -> Problem:
    return Problem(
        409,
        "referral_already_open",
        f"This {r.subject_type.value} already has an open {r.referral_service.value} referral.",
        referral_id=str(existing.id) if existing else None,
    )


async def create_referral(rt: Runtime, principal: Principal, body: ReferralCreate) -> Referral:
    clock = rt.settings.clock
    moment = clock.now()
    _check_facility(rt.registry, body.from_facility_id, "from_facility_id")
    if body.to_facility_id is not None:
        _check_facility(rt.registry, body.to_facility_id, "to_facility_id")
    principal.require_facility(body.from_facility_id)
    requested_at = (body.requested_at or moment).astimezone(UTC)
    _check_time(requested_at, moment, "requested_at", rt.settings)
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
    async with _unit(rt) as unit:
        if not await repository.is_known(unit.session, r.subject_id, r.from_facility_id):
            raise unknown_subject(r)
        subject = await unit.subjects.of(r.subject_id)
        existing = subject.open.get(r.referral_service)
        if existing is not None:
            raise _already_open(r, existing)
        subject.open_referral(r, actor=principal.client_id, note=body.note)
        try:
            await unit.commit()
        except NeedAlreadyOpen:
            # opened by another writer since we locked hers; it has committed (our insert waited)
            existing = await repository.open_for_need(unit.session, r.subject_id, r.referral_service)
            raise _already_open(r, existing) from None
    return r


def stale(r: Referral, expected_version: int) -> Problem:
    problem = Problem(
        412,
        "version_conflict",
        f"The referral is at version {r.version}, not {expected_version}: read it again, then update.",
        current_version=r.version,
    )
    problem.headers = {"ETag": f'W/"{r.version}"'}
    return problem


def _may_act(principal: Principal, r: Referral, action: Action) -> bool:
    """The receiving side accepts or declines, the referring side cancels, either completes."""
    if action in (Action.accept, Action.decline):
        return principal.may_act_for(r.receiving_facility_id)
    if action is Action.cancel:
        return principal.may_act_for(r.from_facility_id)
    return principal.may_act_for(r.from_facility_id) or principal.may_act_for(r.receiving_facility_id)


async def act(
    rt: Runtime,
    principal: Principal,
    referral_id: UUID,
    action: Action,
    body: ReferralActionRequest,
    *,
    expected_version: int | None = None,
) -> Referral:
    """`expected_version`: the change is made against that version (FHIR If-Match); 412 when the
    referral has moved on since, checked under its lock, so nothing changes then."""
    moment = rt.settings.clock.now()
    at = (body.at or moment).astimezone(UTC)
    _check_time(at, moment, "at", rt.settings)
    if action in rules.NEEDS_OUTCOME and body.outcome_code is None:
        raise Problem(422, "outcome_required", f"To {action.value} a referral, give the reason as outcome_code.")
    async with _unit(rt) as unit:
        found = await repository.get(unit.session, referral_id)
        if found is None or not may_read(principal, found):
            raise not_found(referral_id)
        if not _may_act(principal, found, action):
            raise Problem(
                403, "facility_forbidden", f"This client may not {action.value} a referral of these facilities."
            )
        # Lock her open referrals (in their lock order), then take this one as it is under the lock.
        subject = await unit.subjects.of(found.subject_id)
        r = subject.open.get(found.referral_service)
        if r is None or r.id != referral_id:
            # closed (by now, if not when read): a closed referral changes no more
            r = await repository.get(unit.session, referral_id) or found
        if expected_version is not None and r.version != expected_version:
            raise stale(r, expected_version)
        try:
            rules.next_status(r.status, action)
        except rules.InvalidTransition as exc:
            raise Problem(
                409, "invalid_transition", str(exc), current_status=r.status.value, referral_id=str(r.id)
            ) from exc
        if at < r.requested_at:
            raise Problem(422, "time_before_request", f"at {at.isoformat()} is before the referral was requested.")
        changed = subject.act(
            r, action, at=at, actor=principal.client_id, outcome_code=body.outcome_code, note=body.note
        )
        await unit.commit()
    return changed


async def update_task(
    rt: Runtime, principal: Principal, referral_id: UUID, expected_version: int, incoming: fhir.Task
) -> Referral:
    """A FHIR Task update (PUT, or PATCH once applied): the same lifecycle as `act`, against the
    version the caller read. An update that changes nothing answers the referral as it is (still
    412 if the caller's version is stale)."""
    found = await visible_referral(rt, principal, referral_id)
    change = fhir.task_change(found, incoming)
    if change.action is None:
        if found.version != expected_version:
            raise stale(found, expected_version)
        return found
    try:
        body = ReferralActionRequest(outcome_code=change.outcome_code, note=change.note)
    except ValidationError as exc:
        raise Problem(422, "invalid_task", f"The Task's note cannot be kept: {exc.errors()[0]['msg']}") from None
    return await act(rt, principal, referral_id, change.action, body, expected_version=expected_version)


async def visible_referral(rt: Runtime, principal: Principal, referral_id: UUID) -> Referral:
    async with rt.sessions() as session:
        found = await repository.get(session, referral_id)
    if found is None or not may_read(principal, found):
        raise not_found(referral_id)
    return found
