"""What the simulator produces: EMR events as a partner clinic's system would post them, each
with the moment it reaches the platform and the answer the platform should give."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

#: the services that take EMR events (`POST /v1/events`: docs/emr-intake.md)
Service = Literal["enrolment", "followup"]
#: the per-event answers of `POST /v1/events` (`pending`: held until what it waits for is posted)
Outcome = Literal["accepted", "duplicate", "rejected", "pending"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "duplicate", "rejected", "pending")


@dataclass(frozen=True, slots=True)
class EmrEvent:
    service: Service
    #: one item of `POST /v1/events` (docs/emr-intake.md, "The request"), JSON-ready
    body: dict[str, Any]
    occurred_at: datetime
    #: when the clinic's EMR posts it: later than `occurred_at` for lab results and offline spells
    arrives_at: datetime
    #: the answer the platform should give
    expect: Outcome
    #: "valid", "resend", or the data-entry error the event carries (e.g. "occurred_in_future", the code it should get)
    why: str = "valid"

    @property
    def event_id(self) -> str:
        return self.body["event_id"]

    @property
    def type(self) -> str:
        return self.body["type"]

    @property
    def facility_id(self) -> str:
        return self.body["facility_id"]
