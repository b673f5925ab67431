"""Every ART start the referrals service hears of, by the CloudEvent that recorded it (`art_start`):
a subject may have several (a regimen started again, a second record), and a void of one (entered
in error) leaves her on ART since the earliest that stands; only when none stands is she off ART,
the ART referral it completed reopened and her ART wait resumed. Subjects put on ART before this
revision have no rows: a void of their ART start takes her off ART, as before.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "art_start",
        sa.Column("subject_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("art_start")
