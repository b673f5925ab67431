"""One settings pattern for every service: environment variables prefixed `PMTCT_`.

A service subclasses `ServiceSettings`, adds its own fields and sets `service_name`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Self

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .clock import Clock, zone_of

SERVICES: tuple[str, ...] = ("enrolment", "followup", "referrals", "reporting")
PORTS: dict[str, int] = {"enrolment": 8001, "followup": 8002, "referrals": 8003, "reporting": 8004}


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PMTCT_", extra="ignore")

    service_name: str = "service"
    #: the service's own login role; its search_path is its own schema
    database_url: str = "postgresql+asyncpg://localhost/pmtct"
    db_pool_size: int = 10

    kafka_bootstrap_servers: str = "localhost:9092"
    #: on for real Kafka; the dev broker (Tansu) has no InitProducerId, so `pmtct dev` turns it off
    kafka_idempotent_producer: bool = True
    kafka_topic_partitions: int = 6
    kafka_replication_factor: int = 1
    kafka_min_insync_replicas: int = 1
    #: event topics are the log the reporting read model is rebuilt from: kept forever by default
    kafka_retention_ms: int = -1
    kafka_dlq_retention_ms: int = 30 * 24 * 3600 * 1000

    relay_batch_size: int = 500
    relay_poll_interval_s: float = 1.0
    outbox_retention_hours: float = 72.0

    consumer_max_attempts: int = 5
    consumer_backoff_initial_s: float = 0.2
    consumer_backoff_max_s: float = 5.0
    consumer_batch_size: int = 500
    consumer_fetch_max_wait_ms: int = 100
    #: bounded decoding of a consumed record, before any parser sees it: larger or deeper is a dead letter
    consumer_max_record_bytes: int = Field(default=1024 * 1024, ge=1024)
    consumer_max_json_depth: int = Field(default=32, ge=2)
    #: a consumer that has not finished a poll for this long is stuck (e.g. crashing on one record
    #: and restarting): /readyz says so. Above the worst retry budget of one batch.
    consumer_stall_s: float = Field(default=120.0, gt=0)

    #: the durable timers (follow-up's due / overdue / lost announcements, referrals' ART waits and
    #: expiries) do not run while this is on: for loading a backlog of history, so that nothing is
    #: announced overdue before the back-dated facts that meet it are in. Turn it off again (restart)
    #: once the backlog is applied; the timers then act on every fact at once.
    timers_paused: bool = False

    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = "pmtct"
    auth_jwks_cache_seconds: int = 300

    #: key of the keyed hashes of EMR record numbers and national ids (servicekit.identifiers)
    hmac_key: str | None = None

    #: EMR intake (`servicekit.intake`, every `POST /v1/events`): an event may be stamped this far
    #: ahead of the server clock (EMR clock drift) before it is `occurred_in_future`
    intake_future_tolerance_s: float = Field(default=300, ge=0)
    #: the most events one posted batch may hold (more: 413 `batch_too_large`)
    intake_max_batch: int = Field(default=1000, ge=1)
    #: how long an event answered `pending` is held for what it waits for (its woman's enrolment,
    #: its infant's delivery, an earlier fact) before it expires, `pending_expired` (servicekit.pending)
    intake_pending_ttl_days: float = Field(default=30, gt=0)
    #: how often held events are checked for expiry (seconds), and how many one pass expires
    intake_pending_check_s: float = Field(default=60, gt=0)
    intake_pending_batch: int = Field(default=500, ge=1)

    #: the largest request body a service reads (bytes; more: 413 `payload_too_large`). A full batch of
    #: 1000 EMR events is well under 1 MiB.
    http_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: the `Retry-After` (seconds) of a 503 answered while the database or broker is unreachable
    http_retry_after_s: int = Field(default=5, ge=1)

    #: when set, `GET /metrics` answers only `Authorization: Bearer <this>` (401 otherwise): what
    #: `pmtct dev` sets, since its services are reachable without the gateway that blocks /metrics
    #: in the compose deployment (Prometheus scrapes inside the network there)
    metrics_token: SecretStr | None = None

    facilities_path: Path | None = Field(default=None, alias="PMTCT_FACILITIES")
    #: the staff registry (servicekit.staff): the demo one unless `PMTCT_STAFF=path.csv`
    staff_path: Path | None = Field(default=None, alias="PMTCT_STAFF")

    log_level: str = "INFO"
    log_json: bool = True

    #: the programme's time zone (IANA name): every service takes an instant's day, and "today", there
    timezone: str = "UTC"
    #: where "now" comes from when a test injected a clock (`use_clock`); the wall clock otherwise
    _now: Callable[[], datetime] | None = PrivateAttr(default=None)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone_of(value)
        except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {value!r}: give an IANA name such as Africa/Johannesburg") from exc
        return value

    @cached_property
    def clock(self) -> Clock:
        """The one clock of this service: the programme's zone, UTC wall time unless a test injected one.
        Made once and kept (the intake, the consumers and the timers ask for it per event: reading a
        pydantic private attribute and building a Clock cost tens of microseconds each time)."""
        return Clock(self.timezone) if self._now is None else Clock(self.timezone, self._now)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy whose clock is made again from its own fields (a copy with another `timezone` must
        not keep the clock made for this one: `clock` is cached in the instance's `__dict__`)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("clock", None)
        return copy

    def use_clock(self, clock: Clock) -> Self:
        """Read "now" from `clock` (tests: `Clock.fixed(...)`, `Clock.shifted(...)`); the zone stays `timezone`."""
        self._now = clock.now
        self.__dict__.pop("clock", None)  # made again, from the injected "now", when next asked for
        return self

    @property
    def schema(self) -> str:  # type: ignore[override]  # pydantic v1's deprecated schema(), unused here
        return self.service_name
