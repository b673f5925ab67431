"""Event contracts: the committed JSON Schemas and AsyncAPI document are the published v1
contract; a model may only grow optional fields, and nothing personal may ride on the wire."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from pmtct_events import ALL_EVENTS, BY_CE_TYPE, CloudEvent, EnvelopeError, parse, schemagen
from pmtct_events.enrolment import ClientEnrolled, HivStatus, StatusAtEnrolment

EVENTS_DIR = Path(schemagen.__file__).resolve().parent.parent
COMMITTED = {p.relative_to(EVENTS_DIR).as_posix(): p.read_text() for p in EVENTS_DIR.glob("schemas/*.json")}
COMMITTED["asyncapi.json"] = (EVENTS_DIR / "asyncapi.json").read_text()
GENERATED = schemagen.render()


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_every_committed_schema_is_still_satisfied_without_breaking_changes(name: str) -> None:
    assert name in GENERATED, f"{name} is committed but no model produces it any more (a removed event type)"
    if name == "asyncapi.json":
        return
    problems = schemagen.breaking_changes(json.loads(COMMITTED[name]), json.loads(GENERATED[name]))
    assert not problems, f"breaking change to a v1 event (publish a .v2 instead): {problems}"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_the_committed_schemas_match_the_models(name: str) -> None:
    assert COMMITTED.get(name) == GENERATED[name], f"{name} is stale: run `make schemas` and commit the result"


def test_the_asyncapi_document_names_every_topic_event_key_and_header() -> None:
    doc = json.loads(COMMITTED["asyncapi.json"])
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {"pmtct.enrolment.v1", "pmtct.followup.v1", "pmtct.referrals.v1"}
    messages = doc["components"]["messages"]
    assert set(messages) == {e.event_name for e in ALL_EVENTS}
    for m in messages.values():
        assert "ce_id" in m["headers"]["properties"] and "traceparent" in m["headers"]["properties"]
        assert m["bindings"]["kafka"]["key"]["type"] == "string"


BASE = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"enum": ["x", "y"]}},
    "required": ["a"],
}


def variant(**changes) -> dict:
    out = json.loads(json.dumps(BASE))
    for k, v in changes.items():
        if v is None:
            out["properties"].pop(k)
        else:
            out["properties"][k] = v
    return out


@pytest.mark.parametrize(
    "new, expected",
    [
        (variant(b=None), "b: removed"),
        (variant(b={"type": "string"}), "b: no longer accepts"),
        (variant(c={"enum": ["x"]}), "c: no longer accepts"),
        ({**BASE, "required": ["a", "b"]}, "b: became required"),
    ],
)
def test_breaking_changes_are_detected(new: dict, expected: str) -> None:
    assert any(expected in p for p in schemagen.breaking_changes(BASE, new))


def test_adding_an_optional_field_or_enum_value_is_not_breaking() -> None:
    grown = variant(d={"type": "string"}, c={"enum": ["x", "y", "z"]})
    assert schemagen.breaking_changes(BASE, grown) == []


FORBIDDEN = re.compile(r"(name|phone|national|address|client_ref|infant_ref|record_number|note|email)", re.I)


@pytest.mark.parametrize("model", ALL_EVENTS, ids=lambda m: m.event_name)
def test_no_event_has_a_field_for_personal_data_or_emr_record_numbers(model) -> None:
    def fields(schema: dict, defs: dict) -> set[str]:
        out = set(schema.get("properties", {}))
        for d in defs.values():
            out |= set(d.get("properties", {}))
        return out

    schema = model.model_json_schema()
    leaked = {f for f in fields(schema, schema.get("$defs", {})) if FORBIDDEN.search(f)}
    assert not leaked, f"{model.event_name} has personal fields {leaked}"


def enrolled() -> ClientEnrolled:
    return ClientEnrolled(
        client_id=uuid4(),
        facility_id="FAC-ZA-001",
        occurred_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
        status_at_enrolment=StatusAtEnrolment.pregnant,
        age_years=24,
        hiv_status=HivStatus.positive,
        on_art=True,
    )


def test_an_event_round_trips_through_kafka_binary_mode_with_its_headers_and_key() -> None:
    event = enrolled()
    ce = CloudEvent.from_event(
        event, correlation_id="corr-1", traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    )
    headers = dict(ce.headers())
    assert headers["ce_type"] == b"org.pmtct.enrolment.ClientEnrolled.v1"
    assert headers["ce_source"] == b"/services/enrolment"
    assert headers["ce_subject"] == str(event.client_id).encode() == ce.key
    assert headers["ce_facilityid"] == b"FAC-ZA-001"
    assert headers["content-type"] == b"application/json"
    back = CloudEvent.from_kafka(ce.key, ce.value(), ce.headers())
    assert back.id == ce.id and back.correlation_id == "corr-1" and back.traceparent == ce.traceparent
    assert parse(back) == event


@pytest.mark.parametrize(
    "headers, value, reason",
    [
        ([("ce_id", b"not-a-uuid"), ("ce_type", b"t"), ("ce_source", b"s"), ("ce_specversion", b"1.0")], b"{}", "UUID"),
        ([("ce_type", b"t")], b"{}", "missing CloudEvents headers"),
        (
            [("ce_id", str(uuid4()).encode()), ("ce_type", b"t"), ("ce_source", b"s"), ("ce_specversion", b"0.3")],
            b"{}",
            "specversion",
        ),
        (
            [("ce_id", str(uuid4()).encode()), ("ce_type", b"t"), ("ce_source", b"s"), ("ce_specversion", b"1.0")],
            b"[1]",
            "JSON object",
        ),
    ],
)
def test_a_record_that_is_not_a_valid_cloudevent_is_refused_with_the_reason(headers, value, reason) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        CloudEvent.from_kafka(b"k", value, headers)


def test_every_catalog_type_follows_the_naming_convention() -> None:
    for ce_type, model in BY_CE_TYPE.items():
        assert ce_type == f"org.pmtct.{model.service}.{model.event_name}.v1"
        assert model.topic() == f"pmtct.{model.service}.v1"
