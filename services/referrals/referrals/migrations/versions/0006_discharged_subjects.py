"""A subject's automatic referrals may also end because the facility discharged her from HEI
follow-up (`discharged`, from follow-up's InfantFinalOutcomeRecorded); they apply again when
follow-up resumes (InfantFollowUpResumed).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("subject_state_ended_check", "subject_state", type_="check")
    op.create_check_constraint(
        "subject_state_ended_check", "subject_state", "ended IN ('died', 'transferred_out', 'discharged')"
    )


def downgrade() -> None:
    op.execute("UPDATE subject_state SET ended = NULL WHERE ended = 'discharged'")
    op.drop_constraint("subject_state_ended_check", "subject_state", type_="check")
    op.create_check_constraint("subject_state_ended_check", "subject_state", "ended IN ('died', 'transferred_out')")
