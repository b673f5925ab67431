"""The v1 event catalog: every event type, its topic and how to parse it back."""

from __future__ import annotations

from . import enrolment, followup, mentoring, referrals
from .base import Event
from .envelope import CloudEvent, EnvelopeError

ENROLMENT_TOPIC = "pmtct.enrolment.v1"
FOLLOWUP_TOPIC = "pmtct.followup.v1"
REFERRALS_TOPIC = "pmtct.referrals.v1"
TOPICS: tuple[str, ...] = (ENROLMENT_TOPIC, FOLLOWUP_TOPIC, REFERRALS_TOPIC)

ALL_EVENTS: tuple[type[Event], ...] = enrolment.EVENTS + followup.EVENTS + mentoring.EVENTS + referrals.EVENTS
BY_CE_TYPE: dict[str, type[Event]] = {e.ce_type(): e for e in ALL_EVENTS}
BY_NAME: dict[str, type[Event]] = {e.event_name: e for e in ALL_EVENTS}


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def parse(ce: CloudEvent) -> Event:
    """The typed event inside a CloudEvent; raises EnvelopeError for an unknown type and
    pydantic.ValidationError for a payload that breaks its contract."""
    model = BY_CE_TYPE.get(ce.type)
    if model is None:
        raise EnvelopeError(f"unknown event type {ce.type!r}")
    return model.model_validate(ce.data)
