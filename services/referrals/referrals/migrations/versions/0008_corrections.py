"""Corrections (issue 17): an automatic referral remembers the CloudEvent that closed it
(`closed_by_event_id`, beside `cause_event_id`, the one that opened it), so that a voided fact
(ClientEventVoided / InfantEventVoided name the CloudEvent ids the voided event had produced)
cancels what it opened and reopens what it closed; `delivered_infant` remembers which delivery
registered which infant, so that a voided delivery cancels its infants' referrals, and such an
infant's subject ends `entered_in_error` (she was never born on the platform). Referrals closed
and deliveries consumed before this revision have none: a void does not reopen or reach them.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("referral", sa.Column("closed_by_event_id", UUID(as_uuid=True)))
    op.create_table(
        "delivered_infant",
        sa.Column("infant_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("delivery_event_id", UUID(as_uuid=True), nullable=False),
    )
    op.create_index("delivered_infant_delivery", "delivered_infant", ["delivery_event_id"])
    op.drop_constraint("subject_state_ended_check", "subject_state", type_="check")
    op.create_check_constraint(
        "subject_state_ended_check",
        "subject_state",
        "ended IN ('died', 'transferred_out', 'discharged', 'entered_in_error')",
    )


def downgrade() -> None:
    op.execute("UPDATE subject_state SET ended = NULL WHERE ended = 'entered_in_error'")
    op.drop_constraint("subject_state_ended_check", "subject_state", type_="check")
    op.create_check_constraint(
        "subject_state_ended_check", "subject_state", "ended IN ('died', 'transferred_out', 'discharged')"
    )
    op.drop_table("delivered_infant")
    op.drop_column("referral", "closed_by_event_id")
