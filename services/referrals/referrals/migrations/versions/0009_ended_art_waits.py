"""An ART-initiation wait ended by an event (an ART start, a death, a transfer) is kept, ended
(`ended_at`, `ended_by_event_id`), instead of deleted: should that event be voided (entered in
error), the wait runs again from her diagnosis and the timer refers her when it is over. A wait
is running while `ended_at` is null. Waits ended before this revision were deleted: a void of
their event does not bring them back.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("art_wait", sa.Column("ended_at", sa.DateTime(timezone=True)))
    op.add_column("art_wait", sa.Column("ended_by_event_id", UUID(as_uuid=True)))


def downgrade() -> None:
    op.execute("DELETE FROM art_wait WHERE ended_at IS NOT NULL")
    op.drop_column("art_wait", "ended_by_event_id")
    op.drop_column("art_wait", "ended_at")
