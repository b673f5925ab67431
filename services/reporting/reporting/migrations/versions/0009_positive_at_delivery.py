"""A delivery's `positive_at_delivery`: her status at the delivery derived from her facts dated on or
before it, whatever order they arrived in (the delivery's `mother_hiv_status` is as enrolment knew it
on arrival). NULL until a delivery is derived again (`pmtct replay reporting` derives every one);
hiv_pos_deliveries reads the published status for such a row meanwhile.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("positive_at_delivery", sa.Boolean))


def downgrade() -> None:
    op.drop_column("deliveries", "positive_at_delivery")
