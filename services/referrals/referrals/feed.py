"""The ministry referral feed over HTTP (`GET /v1/feed?after=<cursor>`): one entry per referral
change, in commit order, resumable, with no gaps and no repeats while many writers commit.

Why not an id or a timestamp: a bigserial (the outbox id, say) is handed out when a row is
inserted, but transactions commit in another order. A reader that has passed id 12 while the
transaction holding id 11 is still open would never see 11 (a gap); re-reading "a bit back" to
catch it brings repeats. `created_at` has the same flaw.

What we do instead: a position assigned at commit time under a single-row counter.
  * Every change of a referral raises its event (`subjects.Subject`), which the unit of work
    (`repository.ReferralsUnit`) writes to the outbox as it commits.
  * Last, after the subjects' rows and the outbox are written and just before COMMIT, the unit's
    `finish` (libs/servicekit/servicekit/uow.py, step 4c) gives the referral events among those envelopes
    their entries: `repository.append_feed` increments the one row of `feed_counter` by the number
    of entries, which takes that row's lock until COMMIT, and inserts the entries with the positions
    it got.
  * The next writer's increment waits for that lock, that is for this COMMIT. So positions grow
    in commit order, have no holes (a rollback rolls the counter back too), and any snapshot sees
    exactly the entries 1..N, N being the counter in that snapshot.
  * The lock is held for one UPDATE, one INSERT and the COMMIT, however long the transaction ran
    before (the consumer applies a whole batch of events in one transaction). Writers serialise
    only on that short tail; this service writes a few changes per second per facility.
The alternative, ordering by an insert-time id and reading only below
`pg_snapshot_xmin(pg_current_snapshot())` with an xid8 per row, also avoids gaps and repeats, but
its order is insert order, not commit order, and one long transaction stalls every reader.

Reading: take N from `feed_counter`, then the entries with `after < position <= N`. Every
position up to N is committed, so the cursor (a position) is stable: the same cursor always
yields the same continuation. A clinic reads only entries of referrals from or to its facilities;
positions stay global, and when a page is not full its next cursor is N, so it skips the other
facilities' entries instead of scanning them again.

The Kafka topic `pmtct.referrals.v1` carries the same changes: each entry is made from its event's
envelope in the outbox, in the same transaction, with the same CloudEvents id, type, time and data.
"""

from __future__ import annotations


def cursor(position: int) -> str:
    return str(position)


def parse_cursor(value: str | None) -> int | None:
    """A cursor is a feed position written as a decimal; None when it is not one."""
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 18:
        return None
    return int(value)
