"""PMTCT platform event contracts (v1)."""

from .base import Contract, Event
from .catalog import (
    ALL_EVENTS,
    BY_CE_TYPE,
    BY_NAME,
    ENROLMENT_TOPIC,
    FOLLOWUP_TOPIC,
    REFERRALS_TOPIC,
    TOPICS,
    dlq_topic,
    parse,
)
from .envelope import CloudEvent, EnvelopeError

__all__ = [
    "ALL_EVENTS",
    "BY_CE_TYPE",
    "BY_NAME",
    "ENROLMENT_TOPIC",
    "FOLLOWUP_TOPIC",
    "REFERRALS_TOPIC",
    "TOPICS",
    "CloudEvent",
    "Contract",
    "EnvelopeError",
    "Event",
    "dlq_topic",
    "parse",
]
