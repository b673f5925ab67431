"""The `Subject` aggregate: a mother or an infant as the referrals service knows her. Her state
(on ART since, died or left), her ART-initiation wait and her open referrals, at most one per need
(service), are one consistency boundary: every change of one of her referrals goes through her,
and raises its event here. No I/O: `repository.Subjects` loads and writes subjects.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from pmtct_events.referrals import ReferralService
from servicekit.uow import Aggregate

from . import rules
from .models import ArtWait, Referral
from .rules import Action


@dataclass(slots=True)
class HistoryEntry:
    """One row of a referral's action history (`referral_action`), written as the unit commits."""

    referral: Referral
    action: str
    at: datetime
    actor: str
    note: str | None


@dataclass(slots=True, eq=False)
class Subject(Aggregate):
    """A subject held by one unit of work (see `repository.Subjects` for how it is loaded).

    `locked`: her open referrals are locked by this unit, so it may change them. `whole`: her state
    and every open referral are loaded, so it may change her state and open new ones (the expiry
    timer holds only the referrals it expires; the ART timer holds her unlocked, and only opens)."""

    subject_id: UUID
    on_art_since: datetime | None = None
    ended: str | None = None
    #: when her latest enrolment happened (a transfer out dated before it was followed by it)
    enrolled_at: datetime | None = None
    #: an ART-initiation wait is stored for her (as loaded, less what this unit ended)
    waiting_for_art: bool = False
    #: the wait this unit starts (the earliest diagnosis wins, as the insert keeps the stored one
    #: unless this one is earlier: rules.earlier_diagnosis)
    new_wait: ArtWait | None = None
    #: the ART timer took her stored wait: written as a delete
    wait_over: bool = False
    #: her open referrals by service: as loaded, then as this unit changes them
    open: dict[ReferralService, Referral] = field(default_factory=dict)
    locked: bool = True
    whole: bool = True
    #: when the fact that ended her (`ended`) happened, and its CloudEvent: a fact dated before it
    #: and posted after it does what it did in order (`stream.close_open`, `open_automatic`)
    ended_at: datetime | None = None
    ended_by: UUID | None = None
    #: (on_art_since, ended, enrolled_at, ended_at, ended_by) as stored
    stored: tuple[Any, ...] = (None, None, None, None, None)
    #: closed referrals of hers this unit locked to change them (`Subjects.closed_of`: a withdrawal)
    closed: dict[UUID, Referral] = field(default_factory=dict)
    #: the referrals that exist in the database (loaded): the others in `changed` are new
    stored_ids: set[UUID] = field(default_factory=set)
    #: the last version of every referral this unit opened or changed, and their history rows
    changed: dict[UUID, Referral] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)

    @classmethod
    def loaded(
        cls,
        subject_id: UUID,
        on_art_since: datetime | None,
        ended: str | None,
        waiting_for_art: bool,
        open_referrals: Iterable[Referral],
        enrolled_at: datetime | None = None,
        ended_at: datetime | None = None,
        ended_by: UUID | None = None,
        **flags: Any,
    ) -> Subject:
        s = cls(
            subject_id,
            on_art_since,
            ended,
            enrolled_at,
            waiting_for_art,
            ended_at=ended_at,
            ended_by=ended_by,
            stored=(on_art_since, ended, enrolled_at, ended_at, ended_by),
            **flags,
        )
        s.adopt(open_referrals)
        return s

    def adopt(self, open_referrals: Iterable[Referral]) -> None:
        """Open referrals read from the database; those this unit already holds stay as it has them."""
        for r in open_referrals:
            if r.id not in self.stored_ids:
                self.stored_ids.add(r.id)
                self.open[r.referral_service] = r

    def adopt_closed(self, closed_referrals: Iterable[Referral]) -> list[Referral]:
        """Closed referrals read (and locked) from the database, for a change of one (a withdrawal);
        those this unit already holds or changed stay as it has them. Returns them as held."""
        held: list[Referral] = []
        for r in closed_referrals:
            if r.id in self.changed:
                continue
            if r.id not in self.stored_ids:
                self.stored_ids.add(r.id)
                self.closed[r.id] = r
            if r.id in self.closed:
                held.append(self.closed[r.id])
        return held

    # --- state ---

    def set_state(self, **values: Any) -> None:
        """`on_art_since`, `ended` (None: active again) with `ended_at` and `ended_by`, `enrolled_at`;
        written as the unit commits if changed."""
        assert self.whole, "her state is not loaded"
        for name, value in values.items():
            setattr(self, name, value)

    @property
    def state_changed(self) -> bool:
        return self.whole and self.state != self.stored

    @property
    def state(self) -> tuple[Any, ...]:
        return (self.on_art_since, self.ended, self.enrolled_at, self.ended_at, self.ended_by)

    def ended_after(self, moment: datetime) -> bool:
        """Her follow-up ended (died, left), by a fact dated after `moment`: a fact of `moment`
        posted now does what it did before that end, and the end then closes what it opens."""
        return self.ended is not None and self.ended_at is not None and moment < self.ended_at

    def start_art_wait(self, wait: ArtWait) -> None:
        """Written as the unit commits, unless a wait from an earlier diagnosis is stored for her then
        (rules.earlier_diagnosis: the earliest stays, whichever arrived first)."""
        held = self.new_wait
        if (
            held is None
            or held.ended_at is not None
            or rules.earlier_diagnosis((wait.diagnosed_at, wait.reason_code), (held.diagnosed_at, held.reason_code))
        ):
            self.new_wait = wait

    # --- referrals ---

    def open_of(self, services: Collection[ReferralService] | None = None) -> list[Referral]:
        """Her open referrals (of `services`; None: of every one), in id order (their lock order)."""
        found = (r for s, r in self.open.items() if services is None or s in services)
        return sorted(found, key=lambda r: r.id)

    def open_referral(self, r: Referral, *, actor: str, note: str | None = None) -> Referral:
        """A new referral of hers (its need has none open): ReferralCreated."""
        assert self.whole and r.subject_id == self.subject_id
        assert r.referral_service not in self.open, "its need has one open already"
        self.open[r.referral_service] = r
        self._record(r, None, r.requested_at, actor, note)
        return r

    def act(
        self,
        r: Referral,
        action: Action,
        *,
        at: datetime,
        actor: str,
        outcome_code: str | None = None,
        note: str | None = None,
        cause: UUID | None = None,
    ) -> Referral:
        """Move one of her referrals on (rules.InvalidTransition if its status forbids it): its next
        version, and the event it raises. `cause`: the CloudEvent that closes it, if an event does.
        A closed one held by this unit (`closed`) may be withdrawn, or reopened if its need is free."""
        was_open = self.open.get(r.referral_service) == r
        assert self.locked and (was_open or self.closed.get(r.id) == r), "not a referral held by this unit"
        changed = r.transitioned(action, at, outcome_code, closed_by=cause)
        if not was_open:
            del self.closed[r.id]
            if changed.is_open:
                assert changed.referral_service not in self.open, "its need has one open already"
                self.open[changed.referral_service] = changed
        elif changed.is_open:
            self.open[r.referral_service] = changed
        else:
            del self.open[r.referral_service]
        self._record(changed, action, at, actor, note)
        return changed

    def reattribute(self, r: Referral, *, closed_by: UUID) -> Referral:
        """One of her closed referrals held by this unit is closed by another event than it was (the
        one that closed it was voided, another fact that meets its need stands): no new version, no
        event (`closed_by_event_id` is the service's own), written as the unit commits."""
        assert self.locked and self.closed.get(r.id) == r, "not a closed referral held by this unit"
        changed = r.model_copy(update={"closed_by_event_id": closed_by})
        self.closed[r.id] = changed
        self.changed[r.id] = changed
        return changed

    def _record(self, r: Referral, action: Action | None, at: datetime, actor: str, note: str | None) -> None:
        self.changed[r.id] = r
        self.history.append(HistoryEntry(r, action.value if action else "request", at, actor, note))
        self.raise_event(r.event(action, at))
