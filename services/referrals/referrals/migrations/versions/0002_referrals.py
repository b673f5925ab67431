"""Referrals, their action history, the ministry feed, ART-initiation waits and subject state.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN = "('requested', 'accepted')"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE referral (
            id uuid PRIMARY KEY,
            subject_type text NOT NULL CHECK (subject_type IN ('client', 'infant')),
            subject_id uuid NOT NULL,
            client_id uuid,
            from_facility_id text NOT NULL,
            to_facility_id text,
            referral_service text NOT NULL,
            reason_code text NOT NULL,
            urgency text NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergency')),
            due_by date NOT NULL,
            status text NOT NULL
                CHECK (status IN ('requested', 'accepted', 'completed', 'declined', 'cancelled', 'expired')),
            origin text NOT NULL CHECK (origin IN ('manual', 'automatic')),
            outcome_code text,
            version integer NOT NULL,
            requested_at timestamptz NOT NULL,
            accepted_at timestamptz,
            closed_at timestamptz,
            created_by text NOT NULL,
            cause_event_id uuid,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((status IN {OPEN}) = (closed_at IS NULL))
        )"""
    )
    # "At most one open referral per need": the need is the subject and the service it is referred to.
    op.execute(
        "CREATE UNIQUE INDEX referral_one_open_per_need ON referral (subject_id, referral_service)"
        f" WHERE status IN {OPEN}"
    )
    op.execute("CREATE INDEX referral_from_facility ON referral (from_facility_id, status)")
    op.execute("CREATE INDEX referral_to_facility ON referral (to_facility_id, status)")
    op.execute("CREATE INDEX referral_subject ON referral (subject_id)")
    op.execute(f"CREATE INDEX referral_open_due ON referral (due_by) WHERE status IN {OPEN}")

    # Every action taken on a referral, with its free-text note: the note stays here, never on Kafka.
    op.execute(
        """CREATE TABLE referral_action (
            id bigserial PRIMARY KEY,
            referral_id uuid NOT NULL REFERENCES referral (id),
            version integer NOT NULL,
            action text NOT NULL,
            status text NOT NULL,
            at timestamptz NOT NULL,
            outcome_code text,
            note text,
            actor text NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (referral_id, version)
        )"""
    )

    # The ministry feed: one row per referral change, `position` in commit order (see referrals/feed.py).
    op.execute(
        """CREATE TABLE feed_entry (
            position bigint PRIMARY KEY,
            event_id uuid NOT NULL UNIQUE,
            event_type text NOT NULL,
            event_time timestamptz NOT NULL,
            referral_id uuid NOT NULL,
            version integer NOT NULL,
            from_facility_id text NOT NULL,
            to_facility_id text,
            data jsonb NOT NULL,
            committed_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute("CREATE INDEX feed_entry_from_facility ON feed_entry (from_facility_id, position)")
    op.execute("CREATE INDEX feed_entry_to_facility ON feed_entry (to_facility_id, position)")
    op.execute(
        "CREATE TABLE feed_counter (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
        " position bigint NOT NULL)"
    )
    op.execute("INSERT INTO feed_counter (singleton, position) VALUES (true, 0)")

    # A positive mother not (yet) on ART: an ART-initiation referral opens at `due_at` unless ART starts first.
    op.execute(
        """CREATE TABLE art_wait (
            client_id uuid PRIMARY KEY,
            facility_id text NOT NULL,
            diagnosed_at timestamptz NOT NULL,
            due_at timestamptz NOT NULL,
            reason_code text NOT NULL,
            cause_event_id uuid,
            correlation_id text
        )"""
    )
    op.execute("CREATE INDEX art_wait_due ON art_wait (due_at)")

    # What the events told us about a subject that decides whether an automatic referral still makes sense.
    op.execute(
        """CREATE TABLE subject_state (
            subject_id uuid PRIMARY KEY,
            on_art_since timestamptz,
            ended text CHECK (ended IN ('died', 'transferred_out')),
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""
    )


def downgrade() -> None:
    for table in ("subject_state", "art_wait", "feed_counter", "feed_entry", "referral_action", "referral"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
