"""Push delivery: every referral change of the feed POSTed to each subscription's webhook.

What a receiver gets (docs/ministry-integration.md, "Push"): one POST per feed entry, the body the
feed's entry itself (`schemas.FeedEntry`: cursor, event_id, type, time, referral_id, version,
data), signed as Standard Webhooks specifies (https://www.standardwebhooks.com/): `webhook-id`
(the entry's event id: the idempotency key), `webhook-timestamp` (Unix seconds) and
`webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` with the
subscription's secret).

Guarantees, and how:
  * At least once, in feed order: a subscription is delivered by one task at a time (a lease in
    its row, `subscriptions.claim_due`), entry after entry; its position moves past an entry only
    once the receiver answered 2xx. A crash between the answer and the position's update sends
    that entry again, with the same `webhook-id`.
  * Retries: an attempt that fails (no answer within `push_timeout_s`, or not 2xx) is retried
    after `push_backoff_initial_s`, doubled at each failure in a row up to `push_backoff_max_s`;
    the entries after it wait, so the order per referral holds. After
    `push_pause_after_failures` failures in a row, or once the first of them is
    `push_retry_horizon_s` old, the subscription is paused; resuming it (or a re-send from a
    cursor) starts again at the entry that failed.
  * One slow or dead endpoint holds back only its own subscription: each one delivered is its own
    task (up to `push_concurrency` at once), and a failing one gives its turn back while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import UTC, datetime
from uuid import UUID, uuid4

import httpx
from standardwebhooks import Webhook

from servicekit import metrics
from servicekit.app import Runtime
from servicekit.guard import is_unavailable

from . import feed, subscriptions
from .schemas import FeedEntry
from .settings import Settings
from .subscriptions import Subscription

log = logging.getLogger(__name__)


def body_of(entry: dict) -> bytes:
    """The POST body: the entry as the feed shows it."""
    return (
        FeedEntry(
            cursor=feed.cursor(entry["position"]),
            event_id=entry["event_id"],
            type=entry["event_type"],
            time=entry["event_time"],
            referral_id=entry["referral_id"],
            version=entry["version"],
            data=entry["data"],
        )
        .model_dump_json()
        .encode()
    )


def signed_headers(secret: str, msg_id: str, body: bytes, at: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
        "user-agent": "pmtct-referrals-push/1",
    }


def backoff_s(failures: int, settings: Settings) -> float:
    """The wait after the `failures`-th failure in a row."""
    return min(settings.push_backoff_initial_s * 2 ** (failures - 1), settings.push_backoff_max_s)


def _lease_s(settings: Settings) -> float:
    return settings.push_timeout_s * 3 + 30


async def run(rt: Runtime[Settings]) -> None:
    """The deliverer: a background loop of the referrals service (every replica runs one)."""
    settings = rt.settings
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
    running: dict[UUID, asyncio.Task[None]] = {}
    limits = httpx.Limits(
        max_connections=settings.push_concurrency * 2, max_keepalive_connections=settings.push_concurrency
    )
    async with httpx.AsyncClient(timeout=settings.push_timeout_s, limits=limits, follow_redirects=False) as client:
        try:
            while True:
                try:
                    # bounded: a pass that waits (a lock, a pool) longer than an attempt may is
                    # abandoned, said in the log, and tried again, rather than stopping every delivery
                    async with asyncio.timeout(settings.push_timeout_s):
                        for state, n in (await subscriptions.count_by_state(rt.sessions)).items():
                            metrics.PUSH_SUBSCRIPTIONS.labels(state).set(n)
                        for sid in [sid for sid, task in running.items() if task.done()]:
                            del running[sid]
                        room = settings.push_concurrency - len(running)
                        if room > 0:
                            claimed = await subscriptions.claim_due(
                                rt.sessions, owner, _lease_s(settings), room, list(running)
                            )
                            for sub in claimed:
                                running[sub.id] = asyncio.create_task(_deliver_logged(rt, client, sub, owner))
                except TimeoutError:
                    log.warning(
                        "push: a pass over the subscriptions took over %.0f s (%d deliveries running); trying again",
                        settings.push_timeout_s,
                        len(running),
                    )
                except Exception as exc:
                    if not is_unavailable(exc):
                        raise
                    # the database restarting or stopping (as at the end of `make run`): no traceback,
                    # the next pass tries again
                    log.warning("push: the database is not reachable (%s); trying again", type(exc).__name__)
                await asyncio.sleep(settings.push_poll_interval_s)
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)


async def _deliver_logged(rt: Runtime[Settings], client: httpx.AsyncClient, sub: Subscription, owner: str) -> None:
    try:
        await deliver(rt, client, sub, owner)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # its lease runs out and the next pass takes it again
        if is_unavailable(exc):
            log.warning("push: delivering subscription %s waits for the database (%s)", sub.id, type(exc).__name__)
        else:
            log.exception("push: delivering subscription %s failed", sub.id)


async def deliver(rt: Runtime[Settings], client: httpx.AsyncClient, sub: Subscription, owner: str) -> None:
    """Deliver a leased subscription's pending entries in feed order until it is caught up, an
    attempt fails (then it waits for its retry) or its lease is taken away (paused, re-sent)."""
    settings = rt.settings
    position, failures, first_failure_at = sub.position, sub.failures, sub.first_failure_at
    while True:
        entries, horizon = await subscriptions.pending(rt.sessions, sub, position, settings.push_batch_size)
        if not entries:
            if horizon > position and not await subscriptions.advance(
                rt.sessions, sub, owner, horizon, _lease_s(settings), None
            ):
                return
            await subscriptions.release(rt.sessions, sub, owner)
            return
        for entry in entries:
            attempt = failures + 1
            outcome = await _post(client, sub, entry)
            delivery = {
                "position": entry["position"],
                "event_id": entry["event_id"],
                "attempt": attempt,
                **outcome,
            }
            if outcome["outcome"] == "delivered":
                if not await subscriptions.advance(
                    rt.sessions, sub, owner, entry["position"], _lease_s(settings), delivery
                ):
                    return
                position, failures, first_failure_at = entry["position"], 0, None
                continue
            now = datetime.now(UTC)
            first_failure_at = first_failure_at or now
            pause = None
            if attempt >= settings.push_pause_after_failures:
                pause = f"paused after {attempt} failed attempts in a row; last: {outcome['error']}"
            elif (now - first_failure_at).total_seconds() >= settings.push_retry_horizon_s:
                pause = f"paused: deliveries failed for {settings.push_retry_horizon_s:.0f} s; last: {outcome['error']}"
            await subscriptions.failed(rt.sessions, sub, owner, delivery, backoff_s(attempt, settings), pause)
            log.info(
                "push: subscription %s, entry %s, attempt %d failed (%s)%s",
                sub.id,
                entry["position"],
                attempt,
                outcome["error"],
                "; paused" if pause else "",
            )
            return


async def _post(client: httpx.AsyncClient, sub: Subscription, entry: dict) -> dict:
    body = body_of(entry)
    headers = signed_headers(sub.secret, str(entry["event_id"]), body, datetime.now(UTC))
    started = time.perf_counter()
    status_code, error = None, None
    try:
        response = await client.post(sub.url, content=body, headers=headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
    metrics.PUSH_DELIVERIES.labels("delivered" if error is None else "failed").inc()
    return {
        "outcome": "delivered" if error is None else "failed",
        "status_code": status_code,
        "error": error,
        "duration_ms": int((time.perf_counter() - started) * 1000),
    }
