"""Tables of the Mentor Mothers' work (created by migration 0004): staff, caseloads, the records
posted to `POST /v1/contacts`, tracing counts and index contacts. Staff are known by staff id,
clients by platform id, index contacts by a platform id derived from a keyed hash: no names."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Date, DateTime, Integer, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from ..models import metadata

staff = Table(
    "staff",
    metadata,
    Column("staff_id", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: one row per mother: whose caseload she and her infants are in (staff_id null: nobody's yet)
caseload = Table(
    "caseload",
    metadata,
    Column("client_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("facility_id", Text, nullable=False),
    Column("staff_id", Text),
    Column("reason", Text, nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    #: she enrolled elsewhere while in this Mentor Mother's caseload at this facility, and the
    #: transfer out from it is not known yet: it announces her leaving when it comes (migration 0010)
    Column("moved_from_facility_id", Text),
    Column("moved_from_staff_id", Text),
)

#: every record a Mentor Mother's app posted and the platform accepted: the idempotency record of
#: POST /v1/contacts (same event_id and content = duplicate) and the history of her work
mentoring_records = Table(
    "mentoring_records",
    metadata,
    Column("event_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("content_hash", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("staff_id", Text, nullable=False),
    #: the client it is about (the index client for an index contact); null for a group session
    Column("client_id", PG_UUID(as_uuid=True)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    #: the catalog event as published (ids and codes only)
    Column("payload", JSONB, nullable=False),
    #: what the app was told, so a duplicate gets the same answer
    Column("result", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: a subject's failed tracing attempts in her current lost-to-follow-up episode
tracing = Table(
    "tracing",
    metadata,
    Column("subject_id", PG_UUID(as_uuid=True), primary_key=True),
    #: the episode counted (the subject's lost_since when the count began)
    Column("lost_since", Date),
    Column("failed_attempts", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("confirmed_lost_on", Date),
)

#: a partner or child an index client named: elicited, invited, tested, linked
index_contacts = Table(
    "index_contacts",
    metadata,
    Column("contact_id", PG_UUID(as_uuid=True), primary_key=True),
    Column("client_id", PG_UUID(as_uuid=True), nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("relationship", Text, nullable=False),
    Column("elicited_on", Date),
    Column("invited_on", Date),
    Column("tested_on", Date),
    Column("result", Text),
    Column("known_positive", Boolean, nullable=False, server_default="false"),
    Column("linked_on", Date),
)
