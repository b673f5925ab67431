"""CloudEvents 1.0 in Kafka *binary* content mode.

The Kafka value is the JSON `data`; attributes travel as `ce_*` headers. `ce_id` is the
idempotency key every consumer deduplicates on (broker offsets change on redelivery).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid4

from .base import Event

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]


class EnvelopeError(ValueError):
    """A Kafka record that is not a valid CloudEvent of this platform."""


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: UUID
    type: str
    source: str
    subject: str
    time: datetime
    data: dict
    facility_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    extra_headers: tuple[tuple[str, bytes], ...] = field(default=())

    @classmethod
    def from_event(
        cls,
        event: Event,
        *,
        event_id: UUID | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        traceparent: str | None = None,
    ) -> CloudEvent:
        return cls(
            id=event_id or uuid4(),
            type=event.ce_type(),
            source=f"/services/{event.service}",
            subject=event.key(),
            time=datetime.now(UTC),
            data=event.model_dump(mode="json"),
            facility_id=event.facility_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            traceparent=traceparent,
        )

    @property
    def key(self) -> bytes:
        return self.subject.encode()

    @property
    def event_name(self) -> str:
        """`org.pmtct.enrolment.ClientEnrolled.v1` -> `ClientEnrolled`."""
        parts = self.type.split(".")
        return parts[-2] if len(parts) >= 2 else self.type

    def headers(self) -> Headers:
        pairs: list[tuple[str, str | None]] = [
            ("ce_specversion", SPEC_VERSION),
            ("ce_id", str(self.id)),
            ("ce_type", self.type),
            ("ce_source", self.source),
            ("ce_subject", self.subject),
            ("ce_time", self.time.isoformat().replace("+00:00", "Z")),
            ("content-type", CONTENT_TYPE),
            ("ce_facilityid", self.facility_id),
            ("ce_correlationid", self.correlation_id),
            ("ce_causationid", self.causation_id),
            ("traceparent", self.traceparent),
            ("tracestate", self.tracestate),
        ]
        out = [(k, v.encode()) for k, v in pairs if v]
        out.extend(self.extra_headers)
        return out

    def value(self) -> bytes:
        return json.dumps(self.data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_kafka(cls, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> CloudEvent:
        h = {k: v.decode("utf-8", "replace") for k, v in headers if v is not None}
        missing = [a for a in ("ce_id", "ce_type", "ce_source", "ce_specversion") if a not in h]
        if missing:
            raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
        if h["ce_specversion"] != SPEC_VERSION:
            raise EnvelopeError(f"unsupported ce_specversion {h['ce_specversion']!r}")
        try:
            event_id = UUID(h["ce_id"])
        except ValueError as exc:
            raise EnvelopeError(f"ce_id is not a UUID: {h['ce_id']!r}") from exc
        try:
            data = json.loads(value or b"null")
        except ValueError as exc:
            raise EnvelopeError(f"value is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise EnvelopeError("value is not a JSON object")
        time_raw = h.get("ce_time")
        try:
            time = datetime.fromisoformat(time_raw.replace("Z", "+00:00")) if time_raw else datetime.now(UTC)
        except ValueError as exc:
            raise EnvelopeError(f"ce_time is not RFC 3339: {time_raw!r}") from exc
        known = {
            "ce_specversion",
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_subject",
            "ce_time",
            "content-type",
            "ce_facilityid",
            "ce_correlationid",
            "ce_causationid",
            "traceparent",
            "tracestate",
        }
        return cls(
            id=event_id,
            type=h["ce_type"],
            source=h["ce_source"],
            subject=h.get("ce_subject") or (key or b"").decode("utf-8", "replace"),
            time=time,
            data=data,
            facility_id=h.get("ce_facilityid"),
            correlation_id=h.get("ce_correlationid"),
            causation_id=h.get("ce_causationid"),
            traceparent=h.get("traceparent"),
            tracestate=h.get("tracestate"),
            extra_headers=tuple((k, v) for k, v in headers if k not in known),
        )


def header(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return None
