"""A mother who enrolled at another facility while in a Mentor Mother's caseload here, her
transfer out from here not known yet: the caseload she moved from (`moved_from_facility_id`,
`moved_from_staff_id`), so that the transfer out, when it comes, announces her leaving it dated
by the transfer, as it would have had it come first (followup.mentoring.caseloads).

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
    op.add_column("caseload", sa.Column("moved_from_facility_id", sa.Text()))
    op.add_column("caseload", sa.Column("moved_from_staff_id", sa.Text()))


def downgrade() -> None:
    op.drop_column("caseload", "moved_from_staff_id")
    op.drop_column("caseload", "moved_from_facility_id")
