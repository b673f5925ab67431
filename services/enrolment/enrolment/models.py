"""Tables of the enrolment schema.

Personal data (names, phone, national id) are AES-GCM ciphertexts (`personal_data.py`); the
national id is also kept as a keyed hash to link the same woman across facilities. `client_ref`
is kept in clear because EMRs look their clients up by it; it never leaves this schema.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

clients = Table(
    "clients",
    metadata,
    Column("client_id", UUID(as_uuid=True), primary_key=True),
    Column("national_id_hash", Text, unique=True),
    Column("birth_date", Date),
    Column("birth_date_estimated", Boolean, nullable=False, server_default="false"),
    Column("given_name", LargeBinary),
    Column("family_name", LargeBinary),
    Column("phone", LargeBinary),
    Column("national_id", LargeBinary),
    #: occurred_at of the enrolment the personal data came from: a later-dated enrolment wins
    Column("personal_as_of", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

registrations = Table(
    "registrations",
    metadata,
    Column("facility_id", Text, nullable=False),
    Column("client_ref", Text, nullable=False),
    Column("client_id", UUID(as_uuid=True), ForeignKey("clients.client_id"), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("facility_id", "client_ref"),
    Index("registrations_client", "client_id"),
)

#: every accepted EMR event: the idempotency record and the history her state is derived from
client_events = Table(
    "client_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("content_hash", Text, nullable=False),
    Column("batch_id", UUID(as_uuid=True), nullable=False),
    Column("client_id", UUID(as_uuid=True), ForeignKey("clients.client_id"), nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    #: the catalog event as published (coded facts only)
    Column("payload", JSONB, nullable=False),
    #: what the EMR was told (client id, new infant ids in order) so a duplicate gets the same answer
    Column("result", JSONB, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: corrections (servicekit.corrections): the CloudEvent ids its acceptance published; when and by
    #: which event (an EventVoided, or the corrected event) it was voided
    Column("published_ids", ARRAY(UUID(as_uuid=True))),
    Column("voided_at", DateTime(timezone=True)),
    Column("voided_by", UUID(as_uuid=True)),
    Index("client_events_history", "client_id", "occurred_at"),
)

infants = Table(
    "infants",
    metadata,
    Column("infant_id", UUID(as_uuid=True), primary_key=True),
    Column("client_id", UUID(as_uuid=True), ForeignKey("clients.client_id"), nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("ref_hash", Text, nullable=False),
    Column("delivery_event_id", UUID(as_uuid=True), ForeignKey("client_events.event_id"), nullable=False),
    Column("born_at", DateTime(timezone=True), nullable=False),
    Column("outcome", Text, nullable=False),
    #: its delivery was voided: it was never born on the platform, and its record number is free
    Column("voided_at", DateTime(timezone=True)),
    Index("infants_facility_ref", "facility_id", "ref_hash", unique=True, postgresql_where=text("voided_at IS NULL")),
    Index("infants_client", "client_id"),
)

personal_data_reads = Table(
    "personal_data_reads",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("client_id", UUID(as_uuid=True), ForeignKey("clients.client_id"), nullable=False),
    Column("caller", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("access", Text, nullable=False),
    Column("read_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Index("personal_data_reads_client", "client_id", "read_at"),
    Index("personal_data_reads_caller", "caller", "read_at"),
)

# --- caseloads, as follow-up announces them (CaseloadAssigned, StaffMemberChanged) -------------------
# A Mentor Mother's app reads the personal data of her own caseload only (`caseloads.py`); enrolment
# knows the caseloads and the staff from follow-up's events, never by asking follow-up.

caseload = Table(
    "caseload",
    metadata,
    Column("client_id", UUID(as_uuid=True), primary_key=True),
    Column("facility_id", Text, nullable=False),
    Column("staff_id", Text),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    Index("caseload_staff", "staff_id"),
)

staff = Table(
    "staff",
    metadata,
    Column("staff_id", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("facility_id", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)
