"""Push delivery of the referral feed: webhook subscriptions and their delivery log
(referrals/push.py, referrals/subscriptions.py).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE subscription (
            id uuid PRIMARY KEY,
            url text NOT NULL,
            secret text NOT NULL,
            facilities text[],
            event_types text[],
            status text NOT NULL CHECK (status IN ('active', 'paused')),
            paused_reason text,
            position bigint NOT NULL,
            failures integer NOT NULL DEFAULT 0,
            first_failure_at timestamptz,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            leased_until timestamptz,
            lease_owner text,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute("CREATE INDEX subscription_due ON subscription (next_attempt_at) WHERE status = 'active'")
    op.execute(
        """CREATE TABLE push_delivery (
            id bigserial PRIMARY KEY,
            subscription_id uuid NOT NULL REFERENCES subscription (id) ON DELETE CASCADE,
            position bigint NOT NULL,
            event_id uuid NOT NULL,
            attempt integer NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            outcome text NOT NULL CHECK (outcome IN ('delivered', 'failed')),
            status_code integer,
            error text,
            duration_ms integer NOT NULL
        )"""
    )
    op.execute("CREATE INDEX push_delivery_of_subscription ON push_delivery (subscription_id, id)")


def downgrade() -> None:
    op.execute("DROP TABLE push_delivery")
    op.execute("DROP TABLE subscription")
