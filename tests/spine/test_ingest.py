"""servicekit.intake: what enrolment and follow-up answer the same way to a batch of EMR events."""

from __future__ import annotations

import hashlib
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import orjson
import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy.exc import DBAPIError

from servicekit.auth import Principal
from servicekit.facilities import load as load_registry
from servicekit.intake import (
    CONFLICT_REASON,
    MAX_BATCH,
    Accept,
    Action,
    BatchReply,
    Code,
    EventResult,
    EventStatus,
    Intake,
    IntakeBatch,
    PostedEvent,
    Reject,
    check_batch_size,
    fingerprint,
    is_conflict,
)
from servicekit.problems import Problem
from servicekit.settings import ServiceSettings

KEY = "test-hmac-key"
EVENT_ID = UUID("0b8f3f5e-8a51-4c8e-9a43-6f1c2f7d9a10")
JOHANNESBURG = timezone(timedelta(hours=2))


class VisitData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    given_name: str | None = None
    visit_number: int


class PostedVisit(BaseModel):
    """Shaped like a service's posted event: id, type, facility, instant, subject, data."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_id: UUID
    type: Literal["AncVisitRecorded", "HivTestRecorded"] = "AncVisitRecorded"
    facility_id: str = "FAC-ZA-001"
    occurred_at: AwareDatetime
    client_ref: str | None = None
    client_id: UUID | None = None
    data: VisitData


def visit(**changes: Any) -> PostedVisit:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "occurred_at": datetime(2026, 3, 2, 9, 15, tzinfo=JOHANNESBURG),
        "client_ref": "ANC-2026-00017",
        "data": VisitData(given_name="Thandi", visit_number=2),
    }
    return PostedVisit(**(fields | changes))


class InfantResult(EventResult):
    infant_id: UUID | None = None


# --- fingerprint ---------------------------------------------------------------------------------


def test_the_same_instant_posted_with_another_offset_has_the_same_fingerprint() -> None:
    local = visit()
    in_utc = visit(occurred_at=datetime(2026, 3, 2, 7, 15, tzinfo=UTC))

    assert fingerprint(KEY, local) == fingerprint(KEY, in_utc)


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "HivTestRecorded"},
        {"facility_id": "FAC-ZA-002"},
        {"occurred_at": datetime(2026, 3, 2, 9, 16, tzinfo=JOHANNESBURG)},
        {"client_ref": "ANC-2026-00018"},
        {"client_ref": None, "client_id": UUID(int=1)},
        {"data": VisitData(given_name="Thandi", visit_number=3)},
        {"data": VisitData(visit_number=2)},
    ],
    ids=["type", "facility", "instant", "subject ref", "subject id", "data", "a field left out"],
)
def test_any_change_of_content_changes_the_fingerprint(changes: dict[str, Any]) -> None:
    assert fingerprint(KEY, visit(**changes)) != fingerprint(KEY, visit())


def test_the_fingerprint_cannot_be_recomputed_without_the_key() -> None:
    event = visit()
    canonical = orjson.dumps(
        {**event.model_dump(mode="json"), "occurred_at": "2026-03-02T07:15:00+00:00"}, option=orjson.OPT_SORT_KEYS
    )

    assert fingerprint(KEY, event) != fingerprint("another-key", event)
    assert fingerprint(KEY, event) != hashlib.sha256(canonical).hexdigest()
    assert "Thandi" not in fingerprint(KEY, event)


def test_the_fingerprint_of_an_event_stays_what_was_stored_for_it() -> None:
    # enrolment has stored fingerprints in this canonical form since its first release: changing the
    # form would turn every re-sent event into a conflict
    assert fingerprint(KEY, visit()) == "7668af907a1f9cc082ea9b3cd32f78d59cba220a4b797a43062e84eb608ff0c7"


# --- duplicate or conflict -----------------------------------------------------------------------


def test_an_event_recorded_before_with_the_same_fingerprint_is_not_a_conflict() -> None:
    recorded = fingerprint(KEY, visit())

    assert not is_conflict(fingerprint(KEY, visit()), recorded)


def test_an_event_recorded_before_with_another_fingerprint_is_a_conflict() -> None:
    recorded = fingerprint(KEY, visit())

    assert is_conflict(fingerprint(KEY, visit(data=VisitData(visit_number=3))), recorded)


def test_a_conflict_is_rejected_with_its_code_and_asks_for_a_new_event_id() -> None:
    result = InfantResult.conflict(4, EVENT_ID)

    assert isinstance(result, InfantResult)
    assert (result.index, result.event_id, result.status, result.code) == (
        4,
        str(EVENT_ID),
        EventStatus.rejected,
        "conflict",
    )
    assert result.reason == CONFLICT_REASON and "new event_id" in CONFLICT_REASON


# --- results and the batch reply -----------------------------------------------------------------


def test_a_rejection_names_the_event_id_as_text_and_keeps_the_service_s_own_fields() -> None:
    infant_id = UUID(int=7)
    result = InfantResult.rejection(
        0, EVENT_ID, "before_birth", "occurred_at is before the birth.", infant_id=infant_id
    )

    assert result.model_dump(mode="json") == {
        "index": 0,
        "event_id": str(EVENT_ID),
        "status": "rejected",
        "code": "before_birth",
        "reason": "occurred_at is before the birth.",
        "provisional_ids": None,
        "infant_id": str(infant_id),
    }


def test_a_rejection_of_an_event_without_an_event_id_names_none() -> None:
    assert EventResult.rejection(3, None, "invalid_value", "An event must be a JSON object.").event_id is None


def test_the_batch_reply_counts_each_status_and_keeps_the_results_in_order() -> None:
    results = [
        InfantResult(index=0, event_id="a", status=EventStatus.accepted),
        InfantResult.conflict(1, "b"),
        InfantResult(index=2, event_id="c", status=EventStatus.duplicate),
        InfantResult(index=3, event_id="d", status=EventStatus.accepted),
    ]

    reply = BatchReply[InfantResult].of(UUID(int=9), results)

    assert (reply.batch_id, reply.accepted, reply.duplicate, reply.rejected) == (UUID(int=9), 2, 1, 1)
    assert [r.index for r in reply.results] == [0, 1, 2, 3]


def test_a_batch_reply_of_no_results_counts_zero_of_each() -> None:
    reply = BatchReply[EventResult].of(UUID(int=0), [])

    assert (reply.accepted, reply.duplicate, reply.rejected, reply.results) == (0, 0, 0, [])


# --- batch size ----------------------------------------------------------------------------------


def test_a_batch_of_up_to_1000_events_is_taken() -> None:
    assert MAX_BATCH == 1000
    check_batch_size(MAX_BATCH)


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(Problem) as refused:
        check_batch_size(0)

    assert (refused.value.status, refused.value.code) == (422, "empty_batch")


def test_a_batch_of_more_than_the_limit_is_refused_as_too_large() -> None:
    with pytest.raises(Problem) as refused:
        check_batch_size(MAX_BATCH + 1)

    assert (refused.value.status, refused.value.code) == (413, "batch_too_large")
    assert refused.value.detail == "A batch holds at most 1000 events; this one has 1001."


def test_a_service_may_set_a_lower_limit() -> None:
    check_batch_size(10, limit=10)
    with pytest.raises(Problem, match="at most 10 events; this one has 11"):
        check_batch_size(11, limit=10)


# --- the vocabulary ------------------------------------------------------------------------------


def test_every_code_has_a_meaning_and_an_action_and_whole_request_codes_an_http_status() -> None:
    for code in Code:
        assert code.meaning.endswith(".") and isinstance(code.action, Action), code
        assert code.status in (None, 400, 401, 403, 413, 415, 422, 503), code
    assert Code.conflict.action is Action.new_event_id and Code.awaiting_infant.action is Action.wait
    assert Code("occurred_in_future") is Code.occurred_in_future  # a code is its own text on the wire


def test_every_rule_of_enrolment_names_a_code_of_the_vocabulary() -> None:
    import re

    domain = Path(__file__).resolve().parents[2] / "services/enrolment/enrolment/domain.py"
    named = set(re.findall(r'RuleBroken\(\s*"([a-z_]+)"', domain.read_text()))
    assert named and named <= {c.value for c in Code}


# --- the pipeline, without a database ------------------------------------------------------------


class VisitIn(PostedEvent):
    type: Literal["Visit"]
    subject: str
    data: VisitData = Field(default_factory=lambda: VisitData(visit_number=1))


@asynccontextmanager
async def FakeUnit() -> Any:  # noqa: N802 - stands where a unit-of-work factory goes
    """The pipeline's logic without a database: a unit of work whose commit does nothing (the same
    steps against PostgreSQL are tests/spine/test_one_intake_vocabulary.py and the services' tests)."""

    class Unit:
        session = None
        correlation_id = None

        async def commit(self) -> None:
            return None

    yield Unit()


class Visits(IntakeBatch[Any]):
    """Accepts every visit of subject "known"; the write fails with `fail` as many times as asked."""

    def __init__(self, fail: list[str]) -> None:
        self.fail = fail

    async def resolve(self, uow: Any, candidates: Any) -> dict:
        return {}

    def decide(self, c: Any) -> Accept | Reject:
        if c.event.subject != "known":
            return Reject(Code.subject_identifier_missing, "who?", {"infant_id": None})
        return Accept({"infant_id": str(UUID(int=1))})

    async def write(self, uow: Any) -> None:
        if self.fail:
            orig = type("Orig", (Exception,), {"sqlstate": self.fail.pop()})()
            raise DBAPIError("INSERT", {}, orig)


class VisitReply(BatchReply[InfantResult]):
    pass


INTAKE = Intake("test", TypeAdapter(VisitIn), ("Visit",), "a test event", InfantResult, VisitReply)
SETTINGS = ServiceSettings(hmac_key=KEY)
REGISTRY = load_registry()
ANYWHERE = Principal("emr", frozenset({"events:write"}), frozenset({"*"}))


def posted(**changes: Any) -> dict[str, Any]:
    event = {
        "event_id": str(UUID(int=5)),
        "type": "Visit",
        "facility_id": "FAC-ZA-001",
        "occurred_at": "2026-03-02T09:15:00+02:00",
        "subject": "known",
    }
    return {**event, **changes}


async def record(events: list[Any], fail: list[str] | None = None, **kw: Any) -> VisitReply:
    failures = list(fail or [])
    reply = await INTAKE.record(lambda _: Visits(failures), FakeUnit, SETTINGS, REGISTRY, ANYWHERE, events, **kw)
    assert isinstance(reply, VisitReply)
    return reply


async def test_a_batch_is_decided_in_order_with_duplicates_and_conflicts_within_it() -> None:
    first, other = posted(), posted(event_id=str(UUID(int=6)), subject="stranger")
    changed = posted(occurred_at="2026-03-02T09:16:00+02:00")

    reply = await record([first, other, first, changed, 42])

    assert [(r.status, r.code) for r in reply.results] == [
        ("accepted", None),
        ("rejected", "subject_identifier_missing"),
        ("duplicate", None),
        ("rejected", "conflict"),
        ("rejected", "invalid_value"),
    ]
    assert reply.results[2].infant_id == UUID(int=1)


@pytest.mark.parametrize("sqlstate", ["40001", "40P01", "23505"])
async def test_a_race_retries_the_whole_batch_and_then_answers_as_if_it_had_not_happened(sqlstate: str) -> None:
    reply = await record([posted()], fail=[sqlstate, sqlstate])

    assert [r.status for r in reply.results] == ["accepted"]


async def test_a_batch_that_keeps_racing_is_refused_as_contention_and_another_error_is_not_retried() -> None:
    with pytest.raises(Problem) as refused:
        await record([posted()], fail=["40001"] * 3)
    assert (refused.value.status, refused.value.code) == (503, "contention")

    with pytest.raises(DBAPIError):
        await record([posted()], fail=["40001", "22P02"])


async def test_the_future_is_the_server_time_plus_the_one_tolerance_setting() -> None:
    now = datetime(2026, 3, 2, 7, 15, tzinfo=UTC)
    events = [
        posted(event_id=str(UUID(int=10)), occurred_at=(now + timedelta(seconds=299)).isoformat()),
        posted(event_id=str(UUID(int=11)), occurred_at=(now + timedelta(seconds=301)).isoformat()),
    ]

    reply = await record(events, now=now)

    assert [(r.status, r.code) for r in reply.results] == [("accepted", None), ("rejected", "occurred_in_future")]
    assert SETTINGS.intake_future_tolerance_s == 300


@pytest.mark.parametrize(
    "event, where",
    [
        (posted(data={"visit_number": float("nan")}), "data.visit_number"),
        (posted(data={"visit_number": float("inf")}), "data.visit_number"),
        (posted(extra=[1.0, float("-inf")]), "extra[1]"),
    ],
)
async def test_nan_and_infinity_are_refused_where_they_are(event: dict[str, Any], where: str) -> None:
    [result] = (await record([event])).results

    assert (result.status, result.code) == ("rejected", "invalid_value")
    assert result.reason and result.reason.startswith(f"{where}: a number must be finite")


async def test_facilities_are_checked_against_the_registry_and_then_the_token() -> None:
    clinic = Principal("emr", frozenset({"events:write"}), frozenset({"FAC-ZA-001"}))
    events = [posted(facility_id="FAC-XX-999"), posted(event_id=str(UUID(int=7)), facility_id="FAC-ZA-002")]

    reply = await INTAKE.record(lambda _: Visits([]), FakeUnit, SETTINGS, REGISTRY, clinic, events)

    assert [r.code for r in reply.results] == ["unknown_facility", "facility_forbidden"]
