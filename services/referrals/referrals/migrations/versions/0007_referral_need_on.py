"""The clinical day of an automatic referral's need (an item's overdue day, the day she became
lost): a fact dated before it does not complete the referral; follow-up withdraws the announcement
instead when the fact met the need in time (referrals.rules.closes_on). Referrals made before this
revision have none, and close as before.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("referral", sa.Column("need_on", sa.Date))


def downgrade() -> None:
    op.drop_column("referral", "need_on")
