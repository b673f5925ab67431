"""An infant's outcome by every fact known now, at any age (`infants.outcome_now`), and its count
(`monthly_counts.fo_infected_now`, the programme's HEI_INFECTED): a child found infected after 18
months counts as infected. The column fills as infants' facts arrive; `pmtct replay reporting`
(docs/operations.md) fills it for every infant at once.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("infants", sa.Column("outcome_now", sa.Text))
    op.add_column("monthly_counts", sa.Column("fo_infected_now", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("monthly_counts", "fo_infected_now")
    op.drop_column("infants", "outcome_now")
