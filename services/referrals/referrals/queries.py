"""Reads of the referrals service: one referral and its history, searches (the API's and FHIR
Task's) and pages of the ministry feed. No unit of work: nothing here writes."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from pmtct_events.referrals import ReferralStatus
from servicekit.auth import Principal
from servicekit.problems import Problem

from . import feed, repository
from .fhir import ReferralQuery
from .models import Referral
from .schemas import FeedEntry, FeedPage, ReferralActionPublic


def may_read(principal: Principal, r: Referral) -> bool:
    return principal.may_act_for(r.from_facility_id) or (
        r.to_facility_id is not None and principal.may_act_for(r.to_facility_id)
    )


def not_found(referral_id: UUID) -> Problem:
    # The same answer for a referral of another facility: its existence is not the caller's business.
    return Problem(404, "referral_not_found", f"No referral {referral_id} that this client may see.")


async def get_referral(session: AsyncSession, principal: Principal, referral_id: UUID) -> Referral:
    r = await repository.get(session, referral_id)
    if r is None or not may_read(principal, r):
        raise not_found(referral_id)
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


async def search_referrals(
    session: AsyncSession,
    principal: Principal,
    query: ReferralQuery,
    *,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> tuple[list[Referral], bool]:
    """Referrals for a FHIR ServiceRequest or Task search, a page of them and whether more follow."""
    found = await repository.search(
        session,
        facilities=visible_facilities(principal, None),
        requesters=query.requester,
        receivers=query.receiver,
        statuses=query.statuses,
        cancelled_in_error=query.cancelled_in_error,
        subject_id=query.subject_id,
        referral_ids=query.referral_ids,
        updated=[(b.op, b.at) for b in query.updated],
        after=after,
        limit=limit + 1,
    )
    return found[:limit], len(found) > limit


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
