"""Push subscriptions: what a subscriber registers (a webhook URL, facilities, kinds of change),
where its delivery stands in the feed, and its delivery log. The SQL of the push tables
(migrations/versions/0004_push_subscriptions.py) and the API's use cases; push.py delivers.

A subscription's `position` is the last feed position it has handled: every entry up to it that
its filter takes was delivered (answered 2xx), or skipped by a re-send. The deliverer holds a
subscription by a lease (`lease_owner`, `leased_until`), so one replica at a time delivers it, in
feed order; every change it makes is conditional on still holding that lease, and the API's
pause, resume, re-send and delete take the lease away, so the deliverer stops at its next step.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from servicekit.auth import Principal
from servicekit.facilities import FacilityRegistry
from servicekit.problems import Problem

from . import feed, repository
from .models import EVENT_OF
from .schemas import DeliveryPublic, SubscriptionCreate, SubscriptionPublic

#: the kinds of change a subscription may ask for: event name -> CloudEvents type
EVENT_TYPES: dict[str, str] = {cls.event_name: cls.ce_type() for cls in EVENT_OF.values()}


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as the deliverer holds it."""

    id: UUID
    url: str
    secret: str
    facilities: list[str] | None
    event_types: list[str] | None
    position: int
    failures: int
    first_failure_at: datetime | None


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def not_found(subscription_id: UUID) -> Problem:
    return Problem(404, "subscription_not_found", f"No subscription {subscription_id} that this client may see.")


def _public(row: Any) -> SubscriptionPublic:
    m = row._mapping
    return SubscriptionPublic(
        id=m["id"],
        url=m["url"],
        facility_ids=m["facilities"],
        event_types=[t.split(".")[-2] for t in m["event_types"]] if m["event_types"] else None,
        status=m["status"],
        paused_reason=m["paused_reason"],
        cursor=feed.cursor(m["position"]),
        failures=m["failures"],
        next_attempt_at=m["next_attempt_at"],
        created_by=m["created_by"],
        created_at=m["created_at"],
    )


def check_url(url: str, allow_http: bool) -> None:
    """A webhook URL the deliverer may call: https with a host (http too when `allow_http`, for
    development). Without `allow_http`, a host that names this machine or a private network
    (localhost, 10.x, 192.168.x, fd00::/8, ...) is refused, so that a subscription cannot make
    the service call its own network's internals; a public name that resolves to a private address
    is not caught here (put the deliverer behind an egress proxy if that matters)."""
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise Problem(422, "invalid_webhook_url", f"url: {url!r} is not an {' or '.join(schemes)} URL with a host.")
    if parts.username or parts.password:
        raise Problem(422, "invalid_webhook_url", "url: no credentials in the URL; requests are signed instead.")
    if allow_http:
        return
    host = parts.hostname.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        internal = host == "localhost" or host.endswith((".localhost", ".local", ".internal")) or "." not in host
    else:
        internal = not address.is_global
    if internal:
        raise Problem(
            422, "webhook_url_not_public", f"url: {parts.hostname} is this machine or a private network, not a webhook."
        )


_COLUMNS = (
    "id, url, facilities, event_types, status, paused_reason, position, failures, next_attempt_at,"
    " created_by, created_at"
)
_INSERT = text(
    "INSERT INTO subscription (id, url, secret, facilities, event_types, status, position, created_by)"
    " VALUES (:id, :url, :secret, :facilities, :event_types, 'active', :position, :created_by)"
    f" RETURNING {_COLUMNS}"
)


async def create(
    session: AsyncSession,
    principal: Principal,
    registry: FacilityRegistry,
    body: SubscriptionCreate,
    *,
    allow_http: bool,
) -> tuple[SubscriptionPublic, str]:
    """A new subscription and its secret (shown once). Its facilities are the caller's to read."""
    check_url(body.url, allow_http)
    facilities = body.facility_ids
    if facilities is None and not principal.national:
        facilities = sorted(principal.facilities)
    for f in facilities or []:
        if f not in registry:
            raise Problem(422, "unknown_facility", f"facility_ids: {f!r} is not in the facility registry.")
        principal.require_facility(f)
    types = None
    if body.event_types is not None:
        unknown = [t for t in body.event_types if t not in EVENT_TYPES]
        if unknown:
            raise Problem(
                422,
                "unknown_event_type",
                f"event_types: {', '.join(unknown)}; the kinds of change are {', '.join(EVENT_TYPES)}.",
            )
        types = sorted({EVENT_TYPES[t] for t in body.event_types})
    horizon = await repository.feed_horizon(session)
    position = horizon if body.after is None else _position(body.after, horizon)
    secret = new_secret()
    row = (
        await session.execute(
            _INSERT,
            {
                "id": uuid4(),
                "url": body.url,
                "secret": secret,
                "facilities": sorted(set(facilities)) if facilities is not None else None,
                "event_types": types,
                "position": position,
                "created_by": principal.client_id,
            },
        )
    ).one()
    await session.commit()
    return _public(row), secret


def _position(cursor: str, horizon: int) -> int:
    position = feed.parse_cursor(cursor)
    if position is None or position > horizon:
        raise Problem(422, "invalid_cursor", f"after: {cursor!r} is not a cursor of the feed (0..{horizon}).")
    return position


def _mine(principal: Principal) -> tuple[str, dict[str, Any]]:
    """The subscriptions a client may see: its own; a national client's, every one."""
    if principal.national:
        return "", {}
    return " AND created_by = :me", {"me": principal.client_id}


async def list_for(session: AsyncSession, principal: Principal) -> list[SubscriptionPublic]:
    where, params = _mine(principal)
    rows = await session.execute(
        text(f"SELECT {_COLUMNS} FROM subscription WHERE true{where} ORDER BY created_at, id"), params
    )
    return [_public(r) for r in rows.all()]


async def get(session: AsyncSession, principal: Principal, subscription_id: UUID) -> SubscriptionPublic:
    where, params = _mine(principal)
    row = (
        await session.execute(
            text(f"SELECT {_COLUMNS} FROM subscription WHERE id = :id{where}"), {"id": subscription_id, **params}
        )
    ).first()
    if row is None:
        raise not_found(subscription_id)
    return _public(row)


async def _change(
    session: AsyncSession, principal: Principal, subscription_id: UUID, assignments: str, **values: Any
) -> SubscriptionPublic:
    """Change a subscription and take the deliverer's lease away (it stops at its next step)."""
    where, params = _mine(principal)
    row = (
        await session.execute(
            text(
                f"UPDATE subscription SET {assignments}, lease_owner = NULL, leased_until = NULL,"
                f" updated_at = now() WHERE id = :id{where} RETURNING {_COLUMNS}"
            ),
            {"id": subscription_id, **params, **values},
        )
    ).first()
    if row is None:
        raise not_found(subscription_id)
    await session.commit()
    return _public(row)


_RESTART = "status = 'active', paused_reason = NULL, failures = 0, first_failure_at = NULL, next_attempt_at = now()"


#: the reason of a pause by hand (a pause after failures says what failed)
BY_HAND = "paused by hand"


async def pause(session: AsyncSession, principal: Principal, subscription_id: UUID) -> SubscriptionPublic:
    return await _change(
        session, principal, subscription_id, "status = 'paused', paused_reason = :reason", reason=BY_HAND
    )


async def resume(session: AsyncSession, principal: Principal, subscription_id: UUID) -> SubscriptionPublic:
    """Deliver again from where it stopped (the entry that failed comes first)."""
    return await _change(session, principal, subscription_id, _RESTART)


async def resend(session: AsyncSession, principal: Principal, subscription_id: UUID, after: str) -> SubscriptionPublic:
    """Deliver every entry after `after` again (and resume): a receiver that lost its copy."""
    position = _position(after, await repository.feed_horizon(session))
    return await _change(session, principal, subscription_id, f"{_RESTART}, position = :position", position=position)


async def delete(session: AsyncSession, principal: Principal, subscription_id: UUID) -> None:
    where, params = _mine(principal)
    gone = await session.execute(
        text(f"DELETE FROM subscription WHERE id = :id{where} RETURNING id"), {"id": subscription_id, **params}
    )
    if gone.first() is None:
        raise not_found(subscription_id)
    await session.commit()


async def deliveries(
    session: AsyncSession, principal: Principal, subscription_id: UUID, limit: int
) -> list[DeliveryPublic]:
    """Its delivery log, the latest attempt first."""
    await get(session, principal, subscription_id)
    rows = await session.execute(
        text(
            "SELECT id, position, event_id, attempt, at, outcome, status_code, error, duration_ms"
            " FROM push_delivery WHERE subscription_id = :id ORDER BY id DESC LIMIT :limit"
        ),
        {"id": subscription_id, "limit": limit},
    )
    return [DeliveryPublic(cursor=feed.cursor(r.position), **{**r._mapping, "position": None}) for r in rows.all()]


# --- the deliverer's side (push.py) ------------------------------------------------------------------

_STATES = text(
    "SELECT CASE WHEN status = 'active' THEN 'active' WHEN paused_reason = :by_hand THEN 'paused' ELSE 'failing' END"
    " AS state, count(*) FROM subscription GROUP BY 1"
)


async def count_by_state(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Subscriptions active, paused by hand, and failing (paused after repeated failure)."""
    async with sessions() as session:
        found = {row[0]: row[1] for row in await session.execute(_STATES, {"by_hand": BY_HAND})}
    return {state: found.get(state, 0) for state in ("active", "paused", "failing")}


_CLAIM = text(
    "UPDATE subscription SET lease_owner = :owner, leased_until = now() + make_interval(secs => :lease)"
    " WHERE id IN (SELECT id FROM subscription WHERE status = 'active' AND next_attempt_at <= now()"
    " AND (leased_until IS NULL OR leased_until < now()) AND NOT (id = ANY(CAST(:busy AS uuid[])))"
    " ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)"
    " RETURNING id, url, secret, facilities, event_types, position, failures, first_failure_at"
)


async def claim_due(
    sessions: async_sessionmaker[AsyncSession], owner: str, lease_s: float, n: int, busy: list[UUID]
) -> list[Subscription]:
    """Active subscriptions due for delivery that nobody holds, leased to `owner`."""
    async with sessions() as session, session.begin():
        rows = await session.execute(_CLAIM, {"owner": owner, "lease": lease_s, "n": n, "busy": busy})
        return [Subscription(**r._mapping) for r in rows.all()]


async def pending(
    sessions: async_sessionmaker[AsyncSession], sub: Subscription, position: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The feed entries after `position` the subscription takes (feed order), and the horizon read."""
    conditions = ["position > :after", "position <= :horizon"]
    params: dict[str, Any] = {"after": position, "limit": limit}
    if sub.facilities is not None:
        conditions.append("(from_facility_id = ANY(:facilities) OR to_facility_id = ANY(:facilities))")
        params["facilities"] = sub.facilities
    if sub.event_types is not None:
        conditions.append("event_type = ANY(:types)")
        params["types"] = sub.event_types
    async with sessions() as session:
        horizon = await repository.feed_horizon(session)
        rows = await session.execute(
            text(
                "SELECT position, event_id, event_type, event_time, referral_id, version, data FROM feed_entry"
                f" WHERE {' AND '.join(conditions)} ORDER BY position LIMIT :limit"
            ),
            {**params, "horizon": horizon},
        )
        return [dict(r._mapping) for r in rows.all()], horizon


_HELD = "id = :id AND lease_owner = :owner"


async def advance(
    sessions: async_sessionmaker[AsyncSession],
    sub: Subscription,
    owner: str,
    position: int,
    lease_s: float,
    delivery: dict[str, Any] | None,
) -> bool:
    """Handled up to `position` (with the delivery that got there, if any); False: lease lost."""
    async with sessions() as session, session.begin():
        done = await session.execute(
            text(
                "UPDATE subscription SET position = GREATEST(position, :position), failures = 0,"
                " first_failure_at = NULL, leased_until = now() + make_interval(secs => :lease), updated_at = now()"
                f" WHERE {_HELD} RETURNING id"
            ),
            {"id": sub.id, "owner": owner, "position": position, "lease": lease_s},
        )
        held = done.first() is not None
        if held and delivery is not None:
            await _log(session, sub, delivery)
        return held


async def failed(
    sessions: async_sessionmaker[AsyncSession],
    sub: Subscription,
    owner: str,
    delivery: dict[str, Any],
    retry_in_s: float,
    pause_reason: str | None,
) -> None:
    """An attempt failed: retry later (the lease is let go), or pause."""
    async with sessions() as session, session.begin():
        held = await session.execute(
            text(
                "UPDATE subscription SET failures = failures + 1,"
                " first_failure_at = COALESCE(first_failure_at, now()),"
                " next_attempt_at = now() + make_interval(secs => :retry),"
                " status = CASE WHEN CAST(:reason AS text) IS NULL THEN status ELSE 'paused' END,"
                " paused_reason = COALESCE(CAST(:reason AS text), paused_reason),"
                f" lease_owner = NULL, leased_until = NULL, updated_at = now() WHERE {_HELD} RETURNING id"
            ),
            {"id": sub.id, "owner": owner, "retry": retry_in_s, "reason": pause_reason},
        )
        if held.first() is not None:  # (not paused, re-sent or deleted meanwhile)
            await _log(session, sub, delivery)


async def release(sessions: async_sessionmaker[AsyncSession], sub: Subscription, owner: str) -> None:
    """Caught up: let the lease go; the next pass looks again."""
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "UPDATE subscription SET lease_owner = NULL, leased_until = NULL, next_attempt_at = now()"
                f" WHERE {_HELD}"
            ),
            {"id": sub.id, "owner": owner},
        )


async def _log(session: AsyncSession, sub: Subscription, delivery: dict[str, Any]) -> None:
    await session.execute(
        text(
            "INSERT INTO push_delivery (subscription_id, position, event_id, attempt, outcome, status_code, error,"
            " duration_ms) VALUES (:subscription_id, :position, :event_id, :attempt, :outcome, :status_code,"
            " :error, :duration_ms)"
        ),
        {"subscription_id": sub.id, **delivery},
    )
