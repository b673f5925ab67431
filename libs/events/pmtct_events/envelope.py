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

import orjson

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
        # one pass over the headers: the attributes (the last of a repeated one wins) and the rest
        h: dict[str, bytes] = {}
        extra: list[tuple[str, bytes]] = []
        for k, v in headers:
            if k in _ATTRIBUTES:
                if v is not None:
                    h[k] = v
            else:
                extra.append((k, v))
        missing = [a for a in _REQUIRED if a not in h]
        if missing:
            raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
        spec = h["ce_specversion"].decode("utf-8", "replace")
        if spec != SPEC_VERSION:
            raise EnvelopeError(f"unsupported ce_specversion {spec!r}")
        raw_id = h["ce_id"].decode("utf-8", "replace")
        try:
            event_id = UUID(raw_id)
        except ValueError as exc:
            raise EnvelopeError(f"ce_id is not a UUID: {raw_id!r}") from exc
        data = _json_object(value)
        time_raw = _text(h, "ce_time")
        try:
            time = datetime.fromisoformat(time_raw.replace("Z", "+00:00")) if time_raw else datetime.now(UTC)
        except ValueError as exc:
            raise EnvelopeError(f"ce_time is not RFC 3339: {time_raw!r}") from exc
        return cls(
            id=event_id,
            type=h["ce_type"].decode("utf-8", "replace"),
            source=h["ce_source"].decode("utf-8", "replace"),
            subject=_text(h, "ce_subject") or (key or b"").decode("utf-8", "replace"),
            time=time,
            data=data,
            facility_id=_text(h, "ce_facilityid"),
            correlation_id=_text(h, "ce_correlationid"),
            causation_id=_text(h, "ce_causationid"),
            traceparent=_text(h, "traceparent"),
            tracestate=_text(h, "tracestate"),
            extra_headers=tuple(extra),
        )


#: the headers `from_kafka` reads as attributes; every other header travels on in `extra_headers`
_ATTRIBUTES = frozenset(
    {
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
)
_REQUIRED = ("ce_id", "ce_type", "ce_source", "ce_specversion")


def _text(h: dict[str, bytes], name: str) -> str | None:
    raw = h.get(name)
    return None if raw is None else raw.decode("utf-8", "replace")


def _json_object(value: bytes | None) -> dict:
    value = value or b"null"
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        data = _standard_loads(value)  # what orjson refuses but the standard library reads (NaN, UTF-16, ...)
    else:
        try:
            has_float = type(data) is dict and _has_float(data)
        except RecursionError as exc:
            raise EnvelopeError("value is nested too deep") from exc
        if has_float:
            # orjson reads an integer beyond 64 bits as a float; none of the contracts has a float
            data = _standard_loads(value)
    if not isinstance(data, dict):
        raise EnvelopeError("value is not a JSON object")
    return data


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _standard_loads(value: bytes) -> object:
    try:
        # NaN and Infinity are not JSON (RFC 8259): refused, as the EMR intake refuses them
        return json.loads(value, parse_constant=_no_constant)
    except ValueError as exc:
        raise EnvelopeError(f"value is not JSON: {exc}") from exc
    except RecursionError as exc:  # orjson refused it for its depth (over 1024), and so does json
        raise EnvelopeError("value is nested too deep") from exc


def _has_float(data: dict | list) -> bool:
    for item in data.values() if type(data) is dict else data:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and _has_float(item)):
            return True
    return False


def header(headers: Iterable[tuple[str, bytes]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return None
