"""The Mentor Mothers' work as pure functions: who gets a new client, what a tracing attempt
means for the client, how an index contact is known. No I/O, no clock reads; table-tested in
tests/mentoring/test_mentoring_rules.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from pmtct_events.mentoring import TracingOutcome
from servicekit.identifiers import ref_hash


class CaseloadRule(StrEnum):
    #: a new client goes to the active Mentor Mother of her facility with the fewest clients
    least_loaded = "least_loaded"
    #: nobody is chosen: a site coordinator assigns every new client through the API
    none = "none"


#: the education topics of the m2m curriculum the app offers (PMTCT_MENTORING__TOPICS replaces them)
DEFAULT_TOPICS: tuple[str, ...] = (
    "pmtct",
    "art_adherence",
    "viral_load",
    "infant_feeding",
    "infant_testing",
    "infant_prophylaxis",
    "family_planning",
    "disclosure",
    "partner_testing",
    "nutrition",
    "tb",
    "stigma",
    "safer_sex",
    "danger_signs",
)


class MentoringRules(BaseModel):
    """Configuration of the Mentor Mothers' work (`PMTCT_MENTORING__TRACING_ATTEMPTS=3`, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    caseload_rule: CaseloadRule = CaseloadRule.least_loaded
    #: failed tracing attempts (not found) after which a lost client is confirmed lost
    tracing_attempts: int = Field(3, ge=1, le=20)
    #: the topic codes a contact or a group session may name
    topics: tuple[str, ...] = DEFAULT_TOPICS


def least_loaded(loads: Mapping[str, int]) -> str | None:
    """The Mentor Mother a new client goes to: the fewest clients in her caseload, then the
    lowest staff id (so any replica, in any order of the same facts, chooses the same one).
    `loads`: every active Mentor Mother of the facility and her caseload size. None: nobody."""
    if not loads:
        return None
    return min(loads, key=lambda staff_id: (loads[staff_id], staff_id))


#: the attempts that count towards "confirmed lost": she was not there to be found
FAILED: frozenset[TracingOutcome] = frozenset({TracingOutcome.not_found})


@dataclass(frozen=True, slots=True)
class TracingVerdict:
    failed_attempts: int
    #: this attempt reached the configured number of failed attempts
    confirmed_lost: bool
    #: the client is back in follow-up (found and back in care)
    back_in_care: bool
    #: the tracing referral closes: completed (back in care) or declined with the outcome
    closes_tracing: bool


def tracing_verdict(outcome: TracingOutcome, failed_before: int, confirmed_before: bool, limit: int) -> TracingVerdict:
    """What one tracing attempt means. The outcomes follow PEPFAR MER 2.x TX_ML (clients who
    interrupted treatment, by outcome after tracing: died, transferred out / moved, refused or
    stopped treatment, lost to follow-up after tracing, and those returned to treatment, TX_RTT).
    A client not found on `limit` attempts is confirmed lost (once per episode); any other
    outcome (found and back in care, found and refusing, moved, died) closes her tracing."""
    failed = failed_before + (1 if outcome in FAILED else 0)
    confirmed = outcome in FAILED and failed >= limit and not confirmed_before
    closes = outcome not in FAILED or confirmed
    return TracingVerdict(failed, confirmed, outcome is TracingOutcome.found_back_in_care, closes)


#: namespace of index contact ids (uuid5 of the keyed hash of the app's reference)
CONTACT_NAMESPACE = uuid.UUID("6f7d2c1e-93b4-5c8a-9e0d-1b2a3c4d5e6f")


def contact_id(key: str, facility_id: str, contact_ref: str) -> uuid.UUID:
    """The platform id of an index contact: a UUID derived from the keyed hash (HMAC,
    `servicekit.identifiers`) of the app's reference for the contact at the facility, so every
    record of the same contact names the same id and the reference itself never leaves."""
    return uuid.uuid5(CONTACT_NAMESPACE, ref_hash(key, facility_id, f"contact:{contact_ref}"))
