"""Corrections (servicekit.corrections): per accepted EMR event, the CloudEvent ids its acceptance
published (`published_ids`, what a void publishes as `voided_ids`) and whether it was voided
(`voided_at`, `voided_by`); an infant of a voided delivery is kept, marked voided, and its record
number is free for the corrected delivery (the uniqueness of (facility_id, ref_hash) now holds among
the infants that stand).

Events recorded before get their published ids from the outbox rows still kept (the relay prunes
published rows after a while): the outbox payload is the catalog event as `client_events.payload`.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from servicekit.migrations import add_correction_columns, drop_correction_columns

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_correction_columns(op, "client_events")
    op.execute(
        "UPDATE client_events c SET published_ids = ARRAY[o.event_id] FROM outbox o"
        " WHERE o.payload = c.payload AND o.event_type = 'org.pmtct.enrolment.' || c.type || '.v1'"
    )
    op.execute("ALTER TABLE infants ADD COLUMN voided_at timestamptz")
    op.execute("ALTER TABLE infants DROP CONSTRAINT infants_facility_ref")
    op.execute("CREATE UNIQUE INDEX infants_facility_ref ON infants (facility_id, ref_hash) WHERE voided_at IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX infants_facility_ref")
    op.execute("ALTER TABLE infants ADD CONSTRAINT infants_facility_ref UNIQUE (facility_id, ref_hash)")
    op.execute("ALTER TABLE infants DROP COLUMN voided_at")
    drop_correction_columns(op, "client_events")
