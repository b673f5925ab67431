"""When a subject's latest enrolment happened: a transfer out dated before it (posted by the
facility she left, after her enrolment elsewhere) was followed by it and does not end her.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subject_state", sa.Column("enrolled_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("subject_state", "enrolled_at")
