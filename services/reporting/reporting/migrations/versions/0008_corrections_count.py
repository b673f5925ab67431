"""The CORRECTIONS count: voids per voiding facility and month in `monthly_counts`, from the voids
kept since 0007.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("monthly_counts", sa.Column("corrections", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        "INSERT INTO monthly_counts AS c (facility_id, month, corrections)"
        " SELECT facility_id, CAST(date_trunc('month', occurred_on) AS date), count(*) FROM voids GROUP BY 1, 2"
        " ON CONFLICT (facility_id, month) DO UPDATE SET corrections = excluded.corrections"
    )


def downgrade() -> None:
    op.drop_column("monthly_counts", "corrections")
