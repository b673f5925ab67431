"""Bad input: every problem has its own code and a reason a person can act on; none is a 500 and
none writes anything (no client, event, infant, registration or outbox row)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

TOKEN_FACILITY = "FAC-ZA-002"


@dataclass(frozen=True)
class Case:
    """`setup` events are posted (and must be accepted) first; then `bad` is posted alone (a
    callable `bad` is given the setup's results, to name a woman by her new client_id)."""

    code: str
    reason: str
    build: Callable[[Any], tuple[list[dict], Any]]
    post: dict = field(default_factory=dict)


def alone(make: Callable[[Any], Any]) -> Callable[[Any], tuple[list[dict], Any]]:
    return lambda emr: ([], make(emr))


def after_enrolment(make: Callable[[Any, str], Any], **enrolment: Any) -> Callable[[Any], tuple[list[dict], Any]]:
    """The bad event for a woman who is enrolled (at day -300 unless told otherwise)."""

    def build(emr: Any) -> tuple[list[dict], Any]:
        ref = emr.ref()
        enrolment.setdefault("at", emr.ago(300))
        return [emr.enrolment(ref, **enrolment)], make(emr, ref)

    return build


def after(setup: Callable[[Any, str], list[dict]], make: Callable[[Any, str], Any]):
    def build(emr: Any) -> tuple[list[dict], Any]:
        ref = emr.ref()
        return setup(emr, ref), make(emr, ref)

    return build


def without(event: dict, *path: str) -> dict:
    target = event
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return event


def with_(event: dict, **fields: Any) -> dict:
    return {**event, **fields}


def with_data(event: dict, **data: Any) -> dict:
    return {**event, "data": {**event["data"], **data}}


def positive(emr: Any, ref: str) -> list[dict]:
    return [emr.enrolment(ref, at=emr.ago(300), hiv_status="positive", hiv_status_known_since="2019-03-01")]


def delivered(emr: Any, ref: str) -> list[dict]:
    return [emr.enrolment(ref, at=emr.ago(300)), emr.delivery(ref, emr.ago(100))]


def died(emr: Any, ref: str) -> list[dict]:
    return [emr.enrolment(ref, at=emr.ago(300)), emr.died(ref, emr.ago(100))]


def conflicting(emr: Any) -> tuple[list[dict], Any]:
    ref = emr.ref()
    first = emr.enrolment(ref, at=emr.ago(300))
    visit = emr.anc_visit(ref, emr.ago(280), visit_number=2)
    return [first, visit], with_data(visit, visit_number=3)


def two_women_one_national_id(emr: Any) -> tuple[list[dict], Any]:
    hers, other = emr.ref(), emr.ref()
    theirs = emr.enrolment(other, at=emr.ago(300))
    return [emr.enrolment(hers, at=emr.ago(300)), theirs], emr.enrolment(
        hers, at=emr.ago(10), national_id=theirs["data"]["national_id"]
    )


def infant_ref_reused(emr: Any) -> tuple[list[dict], Any]:
    first, second = emr.ref(), emr.ref()
    baby = emr.infant()
    setup = [
        emr.enrolment(first, at=emr.ago(300)),
        emr.enrolment(second, at=emr.ago(300)),
        emr.delivery(first, emr.ago(100), infants=[baby]),
    ]
    return setup, emr.delivery(second, emr.ago(90), infants=[{**emr.infant(), "infant_ref": baby["infant_ref"]}])


CASES: dict[str, Case] = {
    # --- shape of one event ---------------------------------------------------------------------
    "an event that is not an object": Case("invalid_value", "must be a JSON object", alone(lambda emr: 42)),
    "an unknown event type": Case(
        "unknown_event_type",
        "'InfantWeighed' is not an event the platform takes",
        alone(lambda emr: with_(emr.enrolment(), type="InfantWeighed")),
    ),
    "no type": Case("missing_field", "type is required", alone(lambda emr: without(emr.enrolment(), "type"))),
    "a required data field missing": Case(
        "missing_field",
        "data.hiv_status is required",
        alone(lambda emr: without(emr.enrolment(), "data", "hiv_status")),
    ),
    "an unknown data field": Case(
        "unknown_field",
        "data.nickname is not a field",
        alone(lambda emr: with_data(emr.enrolment(), nickname="Nono")),
    ),
    "an unknown event field": Case(
        "unknown_field", "notes is not a field", alone(lambda emr: with_(emr.enrolment(), notes="seen by sister"))
    ),
    "a wrong type": Case(
        "invalid_value",
        "data.on_art: Input should be a valid boolean",
        alone(lambda emr: with_data(emr.enrolment(), on_art="yes")),
    ),
    "a number sent as text": Case(
        "invalid_value",
        "data.copies_per_ml: Input should be a valid integer",
        after_enrolment(lambda emr, ref: with_data(emr.viral_load(ref, emr.ago(10)), copies_per_ml="1200")),
    ),
    "a value outside its code list": Case(
        "invalid_value",
        "data.hiv_status: Input should be",
        alone(lambda emr: with_data(emr.enrolment(), hiv_status="reactive")),
    ),
    "an occurred_at without a time zone": Case(
        "invalid_value",
        "occurred_at: Input should have timezone info",
        alone(lambda emr: with_(emr.enrolment(), occurred_at="2026-01-05T10:00:00")),
    ),
    "an event_id that is not a UUID": Case(
        "invalid_value",
        "event_id: Input should be a valid UUID",
        alone(lambda emr: with_(emr.enrolment(), event_id="42")),
    ),
    "a date in year 1": Case(
        "invalid_value",
        "between the years 1900 and 2999",
        alone(lambda emr: with_(emr.enrolment(), occurred_at="0001-01-01T00:00:00+05:00")),
    ),
    # --- facility and identity -------------------------------------------------------------------
    "an unknown facility": Case(
        "unknown_facility",
        "'FAC-XX-999' is not in the facility registry",
        alone(lambda emr: emr.enrolment(facility_id="FAC-XX-999")),
    ),
    "a facility the token is not for": Case(
        "facility_forbidden",
        "may not post events for FAC-ZA-001",
        alone(lambda emr: emr.enrolment()),
        post={"facilities": [TOKEN_FACILITY]},
    ),
    "an unknown client_ref": Case(
        "awaiting_client", "held until her enrolment", alone(lambda emr: emr.anc_visit(emr.ref(), emr.ago(10)))
    ),
    "an unknown client_id": Case(
        "unknown_client",
        "No client has client_id",
        alone(lambda emr: emr.event("ArtInitiated", {}, client_id=str(uuid.uuid4()), occurred_at=emr.ago(5))),
    ),
    "no client named": Case(
        "subject_identifier_missing",
        "client_ref",
        alone(lambda emr: emr.event("ClientDied", {}, occurred_at=emr.ago(5))),
    ),
    "both client_ref and client_id": Case(
        "subject_identifier_ambiguous",
        "not both",
        alone(lambda emr: emr.event("ClientDied", client_ref=emr.ref(), client_id=str(uuid.uuid4()))),
    ),
    "an enrolment by client_id": Case(
        "client_ref_required",
        "platform assigns client_id",
        alone(lambda emr: with_(without(emr.enrolment(), "client_ref"), client_id=str(uuid.uuid4()))),
    ),
    "a national id of another woman": Case(
        "identity_conflict", "national_id belongs to another client", two_women_one_national_id
    ),
    "a second enrolment while enrolled": Case(
        "already_enrolled",
        "already enrolled at FAC-ZA-001",
        after_enrolment(lambda emr, ref: emr.enrolment(ref, at=emr.ago(10), national_id=None)),
    ),
    "an event at a facility she is not enrolled at": Case(
        "not_enrolled_at_facility",
        "not enrolled at FAC-ZA-002",
        after_enrolment(
            lambda emr, ref: (
                lambda accepted: emr.event(
                    "ClientDied", client_id=accepted[0]["client_id"], facility_id="FAC-ZA-002", occurred_at=emr.ago(5)
                )
            )
        ),
    ),
    "the same event_id with other content": Case("conflict", "different content", conflicting),
    # --- dates -------------------------------------------------------------------------------------
    "an event in the future": Case(
        "occurred_in_future",
        "more than 5 minutes after the server time",
        alone(lambda emr: emr.enrolment(at="2999-01-01T00:00:00Z")),
    ),
    "an enrolment before her birth": Case(
        "before_birth", "before her data.birth_date", alone(lambda emr: emr.enrolment(at="1990-01-01T00:00:00Z"))
    ),
    "a test before her birth": Case(
        "before_birth",
        "before her birth date on record",
        after_enrolment(lambda emr, ref: emr.hiv_test(ref, "1995-01-01T00:00:00Z")),
    ),
    "a status date after the enrolment": Case(
        "date_after_occurred_at",
        "hiv_status_known_since",
        alone(
            lambda emr: emr.enrolment(at=emr.ago(50), hiv_status="positive", hiv_status_known_since=emr.ago(10)[:10])
        ),
    ),
    "an event after her death": Case(
        "event_after_death", "She died on", after(died, lambda emr, ref: emr.anc_visit(ref, emr.ago(50)))
    ),
    "a second death": Case(
        "death_already_recorded", "already recorded", after(died, lambda emr, ref: emr.died(ref, emr.ago(50)))
    ),
    "a death before recorded events": Case(
        "death_before_recorded_events",
        "after this death",
        after_enrolment(lambda emr, ref: emr.died(ref, emr.ago(301))),
    ),
    "an event after transferring out": Case(
        "transferred_out",
        "transferred out of FAC-ZA-001",
        after(
            lambda emr, ref: [emr.enrolment(ref, at=emr.ago(300)), emr.transfer_out(ref, emr.ago(200))],
            lambda emr, ref: emr.anc_visit(ref, emr.ago(100)),
        ),
    ),
    # --- clinical rules ----------------------------------------------------------------------------
    "neither birth date nor age": Case(
        "birth_date_or_age_required", "data.age_years", alone(lambda emr: emr.enrolment(birth_date=None))
    ),
    "an age too young to enrol": Case(
        "age_out_of_range", "Age at enrolment 7", alone(lambda emr: emr.enrolment(birth_date=None, age_years=7))
    ),
    "a gestation of 50 weeks at enrolment": Case(
        "gestation_out_of_range",
        "gestation_weeks 50 is outside 4–45",
        alone(lambda emr: emr.enrolment(gestation_weeks=50)),
    ),
    "a gestation of 2 weeks at a visit": Case(
        "gestation_out_of_range",
        "gestation_weeks 2",
        after_enrolment(lambda emr, ref: emr.anc_visit(ref, emr.ago(250), gestation_weeks=2)),
    ),
    "a due date two years ahead": Case(
        "edd_out_of_range",
        "is not a due date",
        alone(lambda emr: emr.enrolment(at=emr.ago(30), edd=emr.ago(-700)[:10])),
    ),
    "a status date with an unknown status": Case(
        "inconsistent_hiv_status",
        "hiv_status is unknown",
        alone(lambda emr: emr.enrolment(hiv_status="unknown", hiv_status_known_since="2020-01-01")),
    ),
    "an ART start date while not on ART": Case(
        "inconsistent_art",
        "on_art is false",
        alone(lambda emr: emr.enrolment(hiv_status="positive", art_start_date="2020-01-01")),
    ),
    "on ART with a negative status": Case(
        "art_before_positive_status", "hiv_status is negative", alone(lambda emr: emr.enrolment(on_art=True))
    ),
    "ART started for a woman who tested negative": Case(
        "awaiting_earlier_event",
        "no positive HIV status",
        after_enrolment(lambda emr, ref: emr.art(ref, emr.ago(100))),
    ),
    "ART started before her positive test": Case(
        "awaiting_earlier_event",
        "no positive HIV status is recorded on or before",
        after(
            lambda emr, ref: [emr.enrolment(ref, at=emr.ago(300)), emr.hiv_test(ref, emr.ago(100))],
            lambda emr, ref: emr.art(ref, emr.ago(150)),
        ),
    ),
    "a viral load for a woman without a positive status": Case(
        "awaiting_earlier_event",
        "no positive HIV status",
        after_enrolment(lambda emr, ref: emr.viral_load(ref, emr.ago(100))),
    ),
    "an impossible viral load": Case(
        "viral_load_out_of_range",
        "outside 0–50,000,000",
        after(positive, lambda emr, ref: emr.viral_load(ref, emr.ago(100), copies=-5)),
    ),
    "an ANC visit after delivery": Case(
        "not_pregnant", "She is postnatal", after(delivered, lambda emr, ref: emr.anc_visit(ref, emr.ago(50)))
    ),
    "a delivery before a pregnant enrolment": Case(
        "delivery_before_enrolment",
        "before she enrolled pregnant",
        after_enrolment(lambda emr, ref: emr.delivery(ref, emr.ago(310))),
    ),
    "a delivery without infants": Case(
        "live_birth_without_infants",
        "lists every baby born",
        after_enrolment(lambda emr, ref: emr.delivery(ref, emr.ago(100), infants=[])),
    ),
    "one infant_ref for two babies": Case(
        "duplicate_infant_ref",
        "given to two infants",
        after_enrolment(lambda emr, ref: emr.delivery(ref, emr.ago(100), infants=[twin := emr.infant(), twin])),
    ),
    "an infant_ref already in use": Case(
        "infant_ref_taken", "already names an infant at FAC-ZA-001", infant_ref_reused
    ),
    "an impossible birth weight": Case(
        "birth_weight_out_of_range",
        "birth_weight_g 12000",
        after_enrolment(lambda emr, ref: emr.delivery(ref, emr.ago(100), infants=[emr.infant(birth_weight_g=12000)])),
    ),
    "a second delivery a month after the first": Case(
        "delivery_too_soon",
        "same delivery posted twice",
        after(delivered, lambda emr, ref: emr.delivery(ref, emr.ago(70))),
    ),
    "a transfer to the facility she leaves": Case(
        "transfer_to_same_facility",
        "is the facility she leaves",
        after_enrolment(lambda emr, ref: emr.transfer_out(ref, emr.ago(10), to_facility_id="FAC-ZA-001")),
    ),
    "a transfer to an unknown facility": Case(
        "unknown_facility",
        "to_facility_id 'FAC-NOWHERE'",
        after_enrolment(lambda emr, ref: emr.transfer_out(ref, emr.ago(10), to_facility_id="FAC-NOWHERE")),
    ),
}


def test_there_are_at_least_twenty_five_distinct_bad_inputs_with_distinct_codes() -> None:
    assert len(CASES) >= 25
    assert len({c.code for c in CASES.values()}) >= 25


@pytest.mark.parametrize("name", list(CASES))
async def test_a_bad_event_is_rejected_with_its_code_and_reason_and_writes_nothing(enrolment, emr, name: str) -> None:
    case = CASES[name]
    setup, bad = case.build(emr)
    accepted = await enrolment.accept(setup) if setup else []
    if callable(bad):
        bad = bad(accepted)
    before = await enrolment.counts()

    response = await enrolment.post([bad], **case.post)

    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    # an event that waits for its woman's enrolment or an earlier fact is held, not rejected (and
    # not recorded either: tests/enrolment/test_held_events.py)
    status = "pending" if case.code.startswith("awaiting_") else "rejected"
    assert (result["status"], result["code"]) == (status, case.code), result
    assert case.reason in result["reason"], result["reason"]
    assert result.get("client_id") is None
    assert await enrolment.counts() == before


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b'{"events": [', 400, "malformed_json"),
        (b'{"events": "all of them"}', 422, "validation_failed"),
        (b'[{"event_id": "x"}]', 422, "validation_failed"),
        (b'{"events": [], "source": "openmrs"}', 422, "validation_failed"),
        (b'{"events": []}', 422, "empty_batch"),
    ],
    ids=["malformed JSON", "events not a list", "a bare list", "an unknown top-level field", "an empty batch"],
)
async def test_a_malformed_batch_is_a_problem_for_the_whole_request(
    enrolment, body: bytes, status: int, code: str
) -> None:
    before = await enrolment.counts()

    response = await enrolment.post_raw(body)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert response.json()["detail"]
    assert await enrolment.counts() == before


async def test_a_batch_of_more_than_a_thousand_events_is_refused_whole(enrolment, emr) -> None:
    before = await enrolment.counts()

    response = await enrolment.post([emr.enrolment() for _ in range(1001)])

    assert response.status_code == 413
    problem = response.json()
    assert problem["code"] == "batch_too_large"
    assert "at most 1000" in problem["detail"]
    assert await enrolment.counts() == before


async def test_posting_events_needs_a_token_with_events_write(enrolment, emr) -> None:
    anonymous = await enrolment.http.post("/v1/events", json={"events": [emr.enrolment()]})
    reader = await enrolment.post([emr.enrolment()], scopes="clients:read")

    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
    assert (reader.status_code, reader.json()["code"]) == (403, "insufficient_scope")


async def test_text_that_postgres_cannot_store_is_rejected_not_a_server_error(enrolment, emr) -> None:
    before = await enrolment.counts()
    surrogate = emr.enrolment(given_name="@NAME@")
    nul = emr.enrolment(client_ref="A@NUL@B")
    huge = emr.viral_load(emr.ref(), emr.ago(5), copies=0)
    text = json.dumps({"events": [surrogate, nul, huge]})
    text = (
        text.replace("@NAME@", "\\ud800")
        .replace("@NUL@", "\\u0000")
        .replace('"copies_per_ml": 0', '"copies_per_ml": 1e400')
    )

    response = await enrolment.post_raw(text.encode())

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["status"], r["code"]) for r in results] == [("rejected", "invalid_value")] * 3
    assert "lone surrogate" in results[0]["reason"]
    assert "client_ref: String should match pattern" in results[1]["reason"]
    assert "data.copies_per_ml: a number must be finite" in results[2]["reason"]
    assert await enrolment.counts() == before


async def test_occurred_in_future_names_the_server_time_and_the_tolerance_apart(enrolment, emr) -> None:
    """The reason says "more than 5 minutes after the server time T", T being the server's time
    itself, not the server time plus the tolerance named as the server time."""
    from datetime import UTC, datetime, timedelta

    asked = datetime.now(UTC)
    at = (asked + timedelta(minutes=10)).isoformat(timespec="seconds")
    response = await enrolment.post([emr.enrolment(at=at)])
    [result] = response.json()["results"]
    assert result["code"] == "occurred_in_future"
    head, told = result["reason"].split("is more than 5 minutes after the server time ")
    assert head == f"occurred_at {at} "
    server_time = datetime.fromisoformat(told.split(" ")[0])
    assert asked - timedelta(seconds=5) <= server_time <= datetime.now(UTC) + timedelta(seconds=1)


async def test_a_body_that_is_not_utf8_is_malformed_json_as_the_codes_table_says(enrolment) -> None:
    """Bytes that are not UTF-8 cannot be read into events: the whole request is `malformed_json`,
    and the codes table (docs/emr-intake.md) says so; `invalid_value` names the lone surrogate, a
    JSON escape that is valid UTF-8 but no character (test above)."""
    from servicekit.intake import Code

    response = await enrolment.post_raw(b'{"events": [{"type": "ClientEnrolled", "data": {"given_name": "\xe9"}}]}')
    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")
    assert "UTF-8" in Code.malformed_json.meaning
    assert "not UTF-8" not in Code.invalid_value.meaning and "lone surrogate" in Code.invalid_value.meaning
