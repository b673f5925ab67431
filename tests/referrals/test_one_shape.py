"""One referral, one shape: the JSON API shows every field of the feed's (and Kafka's) event
data under the same names and values, and a referral by hand is only for a subject the platform
has heard of at the referring facility (422 otherwise, and nothing reaches the feed)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

from conftest import FACILITY, OTHER_FACILITY, Api, referral_body
from referral_events import ago, apply, enrolled
from sqlalchemy import text


def same(value: Any) -> Any:
    """A JSON value as what it means: times as instants, dates as dates."""
    if isinstance(value, str):
        for parse in (datetime.fromisoformat, date.fromisoformat):
            try:
                return parse(value.replace("Z", "+00:00"))
            except ValueError:
                pass
    return value


async def feed_data(api: Api, referral_id: str) -> list[dict[str, Any]]:
    async with api.sessions() as session:
        rows = await session.execute(
            text("SELECT data FROM feed_entry WHERE referral_id = :id ORDER BY position"), {"id": referral_id}
        )
        return [data for (data,) in rows.all()]


async def test_the_json_api_shows_the_feed_s_fields_under_the_same_names(api: Api) -> None:
    both = api.auth(facilities=[FACILITY, OTHER_FACILITY])
    r = await api.create()
    await api.act(r["id"], "accept", both)
    await api.act(r["id"], "complete", both, outcome_code="service_provided")
    shown = (await api.http.get(f"/v1/referrals/{r['id']}", headers=both)).json()
    # `occurred_at`, when the change happened, is the event's own (every event has one)
    latest = {k: v for k, v in (await feed_data(api, r["id"]))[-1].items() if k != "occurred_at"}
    assert set(latest) <= set(shown), set(latest) - set(shown)
    assert {k: same(shown[k]) for k in latest} == {k: same(v) for k, v in latest.items()}
    # both names of the referral and of the referring facility, with one value each
    assert shown["referral_id"] == shown["id"] == latest["referral_id"]
    assert shown["facility_id"] == shown["from_facility_id"] == latest["from_facility_id"] == FACILITY
    assert latest["closed_at"] is not None and same(latest["closed_at"]) == same(shown["closed_at"])


async def test_a_referral_for_a_subject_the_platform_has_not_heard_of_is_422_and_not_published(api: Api) -> None:
    stranger = str(uuid4())
    body = referral_body(subject_id=stranger)
    response = await api.http.post("/v1/referrals", json=body, headers=api.auth())
    assert response.status_code == 422 and response.json()["code"] == "unknown_subject"
    # known at another facility only: still not hers to refer from here
    await api.known(stranger, OTHER_FACILITY)
    assert (await api.http.post("/v1/referrals", json=body, headers=api.auth())).json()["code"] == "unknown_subject"
    async with api.sessions() as session:
        published = await session.execute(
            text("SELECT count(*) FROM feed_entry WHERE data->>'subject_id' = :s"), {"s": stranger}
        )
        assert published.scalar_one() == 0
    # once an event about her at the referring facility has been consumed, she may be referred
    await apply(api, enrolled(UUID(stranger), ago(1)))
    created = await api.http.post("/v1/referrals", json=body, headers=api.auth())
    assert created.status_code == 201, created.text
