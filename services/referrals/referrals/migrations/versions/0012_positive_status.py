"""Every fact of a subject's positive HIV status the referrals service hears of (`positive_status`),
by the CloudEvent that recorded it: a positive test, an enrolment as known positive. A positive
test is a new diagnosis when no standing fact of hers is dated before it (rules.is_new_hiv_diagnosis),
whatever order they arrived in, and the ART wait counts from her earliest diagnosis; a void of
one leaves the others, and a wait it started runs again from the earliest that stands. Subjects
heard of before this revision have no rows: their facts from before it are not known here.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "positive_status",
        sa.Column("subject_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("diagnosed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("facility_id", sa.Text, nullable=False),
        #: the ART wait it starts (None: none, she was on ART by it)
        sa.Column("reason_code", sa.Text),
        sa.Column("correlation_id", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("positive_status")
