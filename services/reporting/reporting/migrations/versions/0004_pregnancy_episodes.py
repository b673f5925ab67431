"""What enrolment now says of each mother event (pregnancy episodes): an ANC1 that opens a new
pregnancy, a test's ANC visit number, the period of care of a test or an ART start; what opened an
episode. The facts stored before lack them, so the read model is emptied again: run
`pmtct replay reporting` after upgrading (docs/operations.md).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

READ_MODEL = (
    "mother_facts",
    "enrolments",
    "mother_tests",
    "deliveries",
    "infant_facts",
    "infants",
    "referral_facts",
    "referrals",
    "monthly_counts",
)


def upgrade() -> None:
    op.execute("DELETE FROM inbox WHERE consumer = 'reporting'")
    for table in READ_MODEL:
        op.execute(f"DELETE FROM {table}")
    op.add_column("mother_facts", sa.Column("opens_episode", sa.Boolean))
    op.add_column("mother_facts", sa.Column("anc_visit_number", sa.Integer))
    op.add_column("mother_facts", sa.Column("period", sa.Text))
    op.add_column("enrolments", sa.Column("opened_by", sa.Text, nullable=False))


def downgrade() -> None:
    op.drop_column("enrolments", "opened_by")
    for name in ("period", "anc_visit_number", "opens_episode"):
        op.drop_column("mother_facts", name)
