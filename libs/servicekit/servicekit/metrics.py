"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_LATENCY = Histogram(
    "pmtct_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_BACKLOG = Gauge("pmtct_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge("pmtct_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"])
OUTBOX_PUBLISHED = Counter("pmtct_outbox_published_total", "Outbox rows published", ["service"])
RELAY_LEADER = Gauge("pmtct_outbox_relay_leader", "1 when this replica holds the relay leadership", ["service"])
CONSUMER_LAG = Gauge("pmtct_consumer_lag", "Messages behind the partition end", ["consumer", "topic", "partition"])
EVENTS_PROCESSED = Counter(
    "pmtct_events_processed_total", "Consumed events by outcome", ["consumer", "event_type", "outcome"]
)
HANDLER_LATENCY = Histogram(
    "pmtct_handler_seconds",
    "Event handler latency",
    ["consumer", "event_type"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
DLQ_MESSAGES = Counter("pmtct_dlq_messages_total", "Messages sent to a dead-letter topic", ["consumer", "topic"])
INTAKE_EVENTS = Counter(
    "pmtct_intake_events_total",
    "EMR events posted to POST /v1/events, by outcome and rejection code (servicekit.intake)",
    ["service", "outcome", "code"],
)
INTAKE_DRY_RUN_EVENTS = Counter(
    "pmtct_intake_dry_run_events_total",
    "EMR events posted with ?dry_run=true (nothing recorded), by the outcome a real post would have",
    ["service", "outcome", "code"],
)
INTAKE_BATCH_SECONDS = Histogram(
    "pmtct_intake_batch_seconds",
    "Time to answer one posted batch of EMR events",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INTAKE_RETRIES = Counter(
    "pmtct_intake_retries_total", "Batch transactions tried again after a race, by SQLSTATE", ["service", "sqlstate"]
)
INTAKE_PENDING = Gauge(
    "pmtct_intake_pending",
    "EMR events held (answered `pending`) until what they wait for is recorded (servicekit.pending)",
    ["service"],
)
INTAKE_PENDING_EXPIRED = Counter(
    "pmtct_intake_pending_expired_total", "Held EMR events that expired (`pending_expired`)", ["service"]
)

PUSH_DELIVERIES = Counter(
    "pmtct_push_deliveries_total", "Webhook deliveries of referral changes (referrals/push.py), by outcome", ["outcome"]
)
PUSH_SUBSCRIPTIONS = Gauge(
    "pmtct_push_subscriptions",
    "Push subscriptions by state: active, paused (by hand), failing (paused after repeated failure)",
    ["state"],
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
