"""The mother's follow-up beyond viral loads: her HIV tests (retesting while she is not known
positive), her pregnancies by episode, the day the platform first knew she was positive (ART start
is due from then), her latest enrolment (a transfer out dated before it is over); and the
worklist's "at once" index also covers the mother's urgent actions (ART start, a test at
delivery, enhanced adherence support).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OPEN = "status IN ('planned', 'due', 'overdue')"
URGENT = (
    "kind IN ('infant_art_start', 'confirmatory_nat', 'repeat_test', 'entry_nat', 'nat_after_antibody',"
    " 'mother_art_start', 'mother_hiv_test_delivery', 'mother_adherence_support')"
)
URGENT_BEFORE = "kind IN ('infant_art_start', 'confirmatory_nat', 'repeat_test', 'entry_nat', 'nat_after_antibody')"


def upgrade() -> None:
    op.add_column("mothers", sa.Column("positive_seen_on", sa.Date()))
    op.add_column("mothers", sa.Column("enrolled_on", sa.Date()))
    op.add_column("mothers", sa.Column("hiv_tests", JSONB(), nullable=False, server_default="[]"))
    op.add_column("mothers", sa.Column("pregnancies", JSONB(), nullable=False, server_default="{}"))
    op.execute("UPDATE mothers SET positive_seen_on = positive_since WHERE positive_since IS NOT NULL")
    _urgent_index(URGENT)


def downgrade() -> None:
    _urgent_index(URGENT_BEFORE)
    for name in ("pregnancies", "hiv_tests", "enrolled_on", "positive_seen_on"):
        op.drop_column("mothers", name)


def _urgent_index(predicate: str) -> None:
    op.drop_index("schedule_items_urgent", "schedule_items")
    op.create_index(
        "schedule_items_urgent",
        "schedule_items",
        ["facility_id", "window_start"],
        postgresql_where=sa.text(f"{OPEN} AND {predicate}"),
    )
