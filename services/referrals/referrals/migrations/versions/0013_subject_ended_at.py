"""When a subject's follow-up ended (`ended_at`: when the death, transfer out or discharge happened)
and by which CloudEvent (`ended_by_event_id`), so that a fact dated before it and posted after it
does what it did posted in order (issue 17, any order): it completes the referral the ending had
cancelled, opens the infant-ART referral the ending then cancels, starts the ART wait the ending
then ends (each closed by that event, so a void of it reopens them). Subjects ended before this
revision have neither: a fact posted after their end does nothing, as before.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subject_state", sa.Column("ended_at", sa.DateTime(timezone=True)))
    op.add_column("subject_state", sa.Column("ended_by_event_id", UUID(as_uuid=True)))


def downgrade() -> None:
    op.drop_column("subject_state", "ended_by_event_id")
    op.drop_column("subject_state", "ended_at")
