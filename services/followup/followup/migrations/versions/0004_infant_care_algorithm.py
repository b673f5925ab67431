"""Infant care to the WHO algorithm: an item's name on the worklist (the clinical preset's label
of a test point), an infant's transfer in and "final test pending feeding status"; the at-once
actions' index covers the new at-once kinds (entry NAT, NAT after a positive antibody test).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OPEN = "status IN ('planned', 'due', 'overdue')"
URGENT_BEFORE = "kind IN ('infant_art_start', 'confirmatory_nat', 'repeat_test')"
URGENT = "kind IN ('infant_art_start', 'confirmatory_nat', 'repeat_test', 'entry_nat', 'nat_after_antibody')"


def upgrade() -> None:
    op.add_column("schedule_items", sa.Column("label", sa.Text))
    op.add_column("infants", sa.Column("transferred_in_on", sa.Date))
    op.add_column("infants", sa.Column("pending_feeding_status", sa.Boolean, nullable=False, server_default="false"))
    op.drop_index("schedule_items_urgent", "schedule_items")
    op.create_index(
        "schedule_items_urgent",
        "schedule_items",
        ["facility_id", "window_start"],
        postgresql_where=sa.text(f"{OPEN} AND {URGENT}"),
    )


def downgrade() -> None:
    op.drop_index("schedule_items_urgent", "schedule_items")
    op.create_index(
        "schedule_items_urgent",
        "schedule_items",
        ["facility_id", "window_start"],
        postgresql_where=sa.text(f"{OPEN} AND {URGENT_BEFORE}"),
    )
    op.drop_column("infants", "pending_feeding_status")
    op.drop_column("infants", "transferred_in_on")
    op.drop_column("schedule_items", "label")
