"""End to end: a fixed rate of EMR events, and the time from a POST's acceptance to its effect
as seen downstream, on the topics other systems read.

Two effects are followed, each through two services and two outbox relays:
- a delivery of an HIV-positive mother, accepted by enrolment, until follow-up has started its
  infants' follow-up (InfantFollowUpStarted on `pmtct.followup.v1`);
- a positive infant NAT, accepted by follow-up, until the referral for infant ART is opened
  (ReferralCreated on `pmtct.referrals.v1`, the ministry referral feed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import httpx

from emrsim.events import EmrEvent
from emrsim.posting import Endpoints, Poster, Tokens
from emrsim.runner import Mint
from pmtct_events import FOLLOWUP_TOPIC, REFERRALS_TOPIC

from . import topics
from .stats import summary

FOLLOW_UP_STARTED = "org.pmtct.followup.InfantFollowUpStarted.v1"
REFERRAL_CREATED = "org.pmtct.referrals.ReferralCreated.v1"


def effect_of(ce_type: str, payload: dict) -> str | None:
    if ce_type == FOLLOW_UP_STARTED:
        return "follow-up:" + payload["infant_id"]
    if ce_type == REFERRAL_CREATED and payload.get("referral_service") == "infant_art":
        return "referral:" + payload["subject_id"]
    return None


def exposed_infants(events: Sequence[EmrEvent]) -> set[tuple[str, str]]:
    """(facility, infant_ref) of live-born infants whose mother was known HIV-positive when she
    delivered, as the events say: the infants follow-up must take on."""
    positive: set[str] = set()
    out: set[tuple[str, str]] = set()
    for e in events:
        ref, data = e.body.get("client_ref"), e.body["data"]
        if e.expect != "accepted":
            continue
        if (e.type == "ClientEnrolled" and data["hiv_status"] == "positive") or (
            e.type == "HivTestRecorded" and data["result"] == "positive"
        ):
            positive.add(ref)
        elif e.type == "DeliveryRecorded" and ref in positive:
            out |= {(e.facility_id, i["infant_ref"]) for i in data["infants"] if i["outcome"] == "live_birth"}
    return out


def positive_result(facility_id: str, infant_id: str, sampled: date) -> EmrEvent:
    at = datetime.combine(sampled, datetime.min.time(), UTC).replace(hour=10)
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "InfantTestResulted",
        "facility_id": facility_id,
        "occurred_at": at.isoformat(),
        "infant_id": infant_id,
        "data": {"test": "NAT", "result": "positive", "confirmatory": False},
    }
    return EmrEvent("followup", body, at, at, "accepted", "e2e marker")


async def run(
    bootstrap: str,
    admin_url: str,
    endpoints: Endpoints,
    mint: Mint,
    mother_events: Sequence[EmrEvent],
    infants_for_results: Sequence[tuple[str, str]],
    *,
    rate: float,
    seconds: float,
    results_share: float = 0.05,
    batch_size: int = 50,
    concurrency: int = 16,
    drain_timeout_s: float = 300,
) -> dict:
    """`rate` events per second for `seconds`: mother events of a new cohort to enrolment, and a
    `results_share` of positive infant results (for infants follow-up already has) to follow-up.
    Posting stops after `seconds` even if the platform accepted less than `rate` per second."""
    total = int(rate * seconds)
    n_results = min(int(total * results_share), len(infants_for_results))
    mothers = list(mother_events[: total - n_results])
    yesterday = date.today() - timedelta(days=1)
    results = [positive_result(f, i, yesterday) for f, i in infants_for_results[:n_results]]
    expected_infants = exposed_infants(mothers)

    accepted_at: dict[str, float] = {}

    def answered(event: EmrEvent, result: dict) -> None:
        if result.get("status") != "accepted":
            return
        now = time.perf_counter()
        if event.type == "DeliveryRecorded":
            for infant in result.get("infants") or ():
                if (event.facility_id, infant["infant_ref"]) in expected_infants:
                    accepted_at["follow-up:" + str(infant["infant_id"])] = now
        elif event.type == "InfantTestResulted":
            accepted_at["referral:" + event.body["infant_id"]] = now

    watcher = topics.Watcher(bootstrap, [FOLLOWUP_TOPIC, REFERRALS_TOPIC], effect_of)
    await watcher.start()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0), limits=limits) as client:
            tokens = Tokens(mint)
            share = n_results / total if total else 0
            until = time.monotonic() + seconds
            enrolment = Poster(
                client,
                endpoints,
                tokens,
                batch_size=batch_size,
                concurrency=concurrency,
                rate=rate * (1 - share),
                on_answered=answered,
                until=until,
            )
            followup = Poster(
                client,
                endpoints,
                tokens,
                batch_size=max(1, batch_size // 4),
                concurrency=concurrency,
                rate=rate * share or None,
                on_answered=answered,
                until=until,
            )
            started = time.perf_counter()
            await asyncio.gather(
                enrolment.post_service("enrolment", mothers), followup.post_service("followup", results)
            )
            posting_s = time.perf_counter() - started
            drain_s = await topics.wait_caught_up(bootstrap, admin_url, timeout_s=drain_timeout_s)
            caught_up_s = time.perf_counter() - started
            await asyncio.sleep(1.0)  # the watcher's last fetch
    finally:
        await watcher.stop()

    def latencies(prefix: str) -> list[float]:
        return [
            (watcher.seen[k] - t) * 1000 for k, t in accepted_at.items() if k.startswith(prefix) and k in watcher.seen
        ]

    follow_up, referral = latencies("follow-up:"), latencies("referral:")
    both = follow_up + referral
    answered_events = sum(enrolment.tally.answered.values()) + sum(followup.tally.answered.values())
    accepted = enrolment.tally.answered["accepted"] + followup.tally.answered["accepted"]
    return {
        **summary(both, (50, 99)),
        "follow_up_started": _summary(follow_up, sum(k.startswith("follow-up:") for k in accepted_at)),
        "referral_opened": _summary(referral, sum(k.startswith("referral:") for k in accepted_at)),
        "target_rate_per_s": rate,
        "results_offered": n_results,
        "posted_rate_per_s": round(answered_events / posting_s, 1),
        "accepted": accepted,
        "unexpected_answers": [
            f"{e.type} ({e.why}): {answer} {code}: {reason}"
            for e, answer, code, reason in (enrolment.tally.surprises + followup.tally.surprises)[:5]
        ],
        "posting_s": round(posting_s, 1),
        "drain_after_posting_s": round(drain_s, 1),
        #: accepted events over the time until every consumer had processed everything
        "throughput_events_per_s": round(accepted / caught_up_s, 1),
        "watched_messages": watcher.messages,
    }


def _summary(values: list[float], markers: int) -> dict:
    return {"markers": markers, "seen": len(values), **summary(values, (50, 99))}
