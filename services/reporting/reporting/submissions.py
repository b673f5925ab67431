"""DHIS2 submission: `POST /api/dataValueSets` of one data set for one period, every import summary kept.

A push sends the data set's counts for every facility of the registry (national: one org unit per
facility, zeros included, so a revision overwrites what was sent), with the mapping's id scheme and
`dryRun` when asked, authenticated by a personal access token (`Authorization: ApiToken ...`) or
basic authentication. A transient failure (no connection, a timeout, 502/503/504) is retried with
doubling waits up to `dhis2_retry_attempts`; any other answer is final. Whatever happens, the
submission is recorded (`dhis2_submissions`): what was sent, DHIS2's import summary (imported,
updated, ignored, deleted, each conflict's object and reason) or the failure.

Revisions: the history compares what the last accepted (not dry-run) push sent with what the same
push would send now; when late facts changed a submitted period, it lists each changed value, and
the next push (by hand, or the scheduled one) sends the revision. The scheduled push, on
`dhis2_push_day` of each month, pushes the month before, and again whenever it changed since; and
the revision of any period DHIS2 accepted before whose values changed since (a correction voided a
fact of it, or late facts landed in it), so a correction reaches DHIS2 without anyone asking.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from servicekit.facilities import FacilityRegistry

from . import dhis2, queries, repository
from .indicators import DataSet
from .models import SubmissionRow
from .periods import Period, last_complete, parse_period
from .schemas import ChangedValue, DataValueSet, SubmissionPublic
from .settings import Settings

log = logging.getLogger(__name__)

TRANSIENT = {502, 503, 504}
#: submission outcomes: DHIS2's import summary status, or why there is none
SUCCESS, WARNING, ERROR, FAILED = "SUCCESS", "WARNING", "ERROR", "FAILED"
#: a push whose values DHIS2 took (all, or all but the conflicts)
ACCEPTED = (SUCCESS, WARNING)


class NotConfigured(Exception):
    """No DHIS2 URL or credentials in the settings."""


def value_key(v: dict[str, Any]) -> str:
    return "|".join(
        str(v.get(k) or "") for k in ("dataElement", "categoryOptionCombo", "orgUnit", "attributeOptionCombo")
    )


def _values(document: DataValueSet) -> dict[str, str]:
    return {value_key(v.model_dump()): v.value for v in document.dataValues}


async def document(
    session: AsyncSession, registry: FacilityRegistry, settings: Settings, data_set: DataSet, period: Period
) -> DataValueSet:
    """What a push of `data_set` for `period` sends: every facility of the registry."""
    scope = queries.Scope("all", None, registry.all())
    return await queries.dhis2_export(session, scope, period, dhis2.mapping_for(settings, data_set))


def _auth(settings: Settings) -> dict[str, Any]:
    if settings.dhis2_token is not None:
        return {"headers": {"Authorization": f"ApiToken {settings.dhis2_token.get_secret_value()}"}}
    if settings.dhis2_username and settings.dhis2_password is not None:
        return {"auth": (settings.dhis2_username, settings.dhis2_password.get_secret_value())}
    raise NotConfigured("Set PMTCT_DHIS2_TOKEN, or PMTCT_DHIS2_USERNAME and PMTCT_DHIS2_PASSWORD.")


@dataclass
class Answer:
    outcome: str
    http_status: int | None
    attempts: int
    counts: dict[str, int]
    conflicts: list[dict[str, Any]]
    description: str | None


def _summary(body: Any) -> dict[str, Any]:
    """The ImportSummary of an answer: wrapped in a web message (DHIS2 2.38+) or bare (older)."""
    if isinstance(body, dict) and isinstance(body.get("response"), dict):
        return body["response"]
    return body if isinstance(body, dict) else {}


async def _send(settings: Settings, body: dict, params: dict[str, str], sleep=asyncio.sleep) -> Answer:
    auth = _auth(settings)
    assert settings.dhis2_url
    url = settings.dhis2_url.rstrip("/") + "/api/dataValueSets"
    wait = settings.dhis2_retry_initial_s
    last: str | None = None
    status: int | None = None
    async with httpx.AsyncClient(timeout=settings.dhis2_timeout_s, **auth) as client:
        for attempt in range(1, settings.dhis2_retry_attempts + 1):
            try:
                reply = await client.post(url, json=body, params=params)
            except httpx.TransportError as exc:
                last, status = f"{type(exc).__name__}: {exc}", None
            else:
                status = reply.status_code
                if status not in TRANSIENT:
                    try:
                        parsed = reply.json()
                    except ValueError:
                        parsed = {}
                    summary = _summary(parsed)
                    counts = summary.get("importCount") or {}
                    outcome = summary.get("status") or (SUCCESS if reply.is_success else ERROR)
                    if not reply.is_success and outcome == SUCCESS:
                        outcome = ERROR
                    return Answer(
                        outcome=str(outcome),
                        http_status=status,
                        attempts=attempt,
                        counts={k: int(counts.get(k, 0)) for k in ("imported", "updated", "ignored", "deleted")},
                        conflicts=[
                            {
                                "object": c.get("object"),
                                "value": c.get("value"),
                                "errorCode": c.get("errorCode"),
                                "property": c.get("property"),
                            }
                            for c in summary.get("conflicts") or []
                        ],
                        description=summary.get("description") or parsed.get("message")
                        if isinstance(parsed, dict)
                        else None,
                    )
                last = f"HTTP {status}"
            if attempt < settings.dhis2_retry_attempts:
                log.warning("DHIS2 push attempt %d failed (%s); retrying in %.1f s", attempt, last, wait)
                await sleep(wait)
                wait *= 2
    return Answer(
        FAILED,
        status,
        settings.dhis2_retry_attempts,
        dict.fromkeys(("imported", "updated", "ignored", "deleted"), 0),
        [],
        last,
    )


async def push(
    sessions: async_sessionmaker[AsyncSession],
    registry: FacilityRegistry,
    settings: Settings,
    data_set: DataSet,
    period: Period,
    *,
    dry_run: bool = False,
    trigger: str = "manual",
) -> SubmissionRow:
    """Push one data set for one period to DHIS2 and record the submission (also when it failed)."""
    if not settings.dhis2_url:
        raise NotConfigured("Set PMTCT_DHIS2_URL to the DHIS2 instance to push to.")
    _auth(settings)
    mapping = dhis2.mapping_for(settings, data_set)
    requested = settings.clock.now()
    async with sessions() as session:
        sent = await document(session, registry, settings, data_set, period)
    body = sent.model_dump(exclude_none=True)
    answer = await _send(settings, body, dhis2.import_params(mapping, dry_run))
    row = SubmissionRow(
        data_set=data_set.value,
        period=period.id,
        dry_run=dry_run,
        trigger=trigger,
        requested_at=requested,
        finished_at=settings.clock.now(),
        outcome=answer.outcome,
        http_status=answer.http_status,
        attempts=answer.attempts,
        imported=answer.counts["imported"],
        updated=answer.counts["updated"],
        ignored=answer.counts["ignored"],
        deleted=answer.counts["deleted"],
        conflicts=answer.conflicts,
        description=answer.description,
        data_values=_values(sent),
    )
    async with sessions() as session, session.begin():
        await repository.add_submission(session, row)
    log.info(
        "DHIS2 push of %s %s%s: %s (%d imported, %d updated, %d ignored, %d conflicts)",
        data_set.value,
        period.id,
        " (dry run)" if dry_run else "",
        row.outcome,
        row.imported,
        row.updated,
        row.ignored,
        len(row.conflicts),
    )
    return row


async def history(
    session: AsyncSession, data_set: DataSet | None = None, period: str | None = None, limit: int = 100
) -> list[SubmissionRow]:
    return await repository.submissions(session, data_set.value if data_set else None, period, limit)


async def last_accepted(session: AsyncSession, data_set: DataSet, period: Period) -> SubmissionRow | None:
    return await repository.last_accepted_submission(session, data_set.value, period.id, ACCEPTED)


@dataclass(frozen=True)
class Change:
    dataElement: str
    categoryOptionCombo: str
    orgUnit: str
    attributeOptionCombo: str | None
    sent: str | None
    now: str | None


def changes(sent: dict[str, str], now: dict[str, str]) -> list[Change]:
    """Each value that differs between what was sent and what would be sent now."""
    found = []
    for key in sorted(set(sent) | set(now)):
        if sent.get(key) != now.get(key):
            de, coc, ou, aoc = key.split("|")
            found.append(Change(de, coc, ou, aoc or None, sent.get(key), now.get(key)))
    return found


async def changed_since(
    session: AsyncSession, registry: FacilityRegistry, settings: Settings, data_set: DataSet, period: Period
) -> tuple[SubmissionRow | None, list[Change]]:
    """The last accepted push of the period, and what changed since (nothing if never pushed)."""
    last = await last_accepted(session, data_set, period)
    if last is None:
        return None, []
    now = _values(await document(session, registry, settings, data_set, period))
    return last, changes(last.data_values, now)


async def history_public(
    session: AsyncSession,
    registry: FacilityRegistry,
    settings: Settings,
    data_set: DataSet | None = None,
    period: Period | None = None,
    limit: int = 100,
) -> list[SubmissionPublic]:
    """The history, newest first: each push with its revision number, and on the latest accepted push
    of each data set and period, what changed since."""
    rows = await history(session, data_set, period.id if period else None, limit)
    accepted = await repository.accepted_submissions(session, ACCEPTED)
    revision: dict[int, int] = {}
    latest: dict[tuple[str, str], int] = {}
    counter: dict[tuple[str, str], int] = {}
    for rid, ds, pe in accepted:
        counter[(ds, pe)] = counter.get((ds, pe), 0) + 1
        revision[rid] = counter[(ds, pe)]
        latest[(ds, pe)] = rid
    shown = []
    for row in rows:
        assert row.id is not None
        changed = None
        if latest.get((row.data_set, row.period)) == row.id:
            now = _values(await document(session, registry, settings, DataSet(row.data_set), parse_period(row.period)))
            changed = [ChangedValue(**vars(c)) for c in changes(row.data_values, now)]
        shown.append(
            SubmissionPublic(
                **row.model_dump(exclude={"data_values"}),
                dhis2_period=parse_period(row.period).dhis2,
                values_sent=len(row.data_values),
                revision=revision.get(row.id),
                changed_since=changed,
            )
        )
    return shown


async def scheduled_push(
    sessions: async_sessionmaker[AsyncSession], registry: FacilityRegistry, settings: Settings
) -> list[SubmissionRow]:
    """One pass of the monthly schedule: from `dhis2_push_day`, the last complete month of each
    scheduled data set, unless it was accepted already and nothing changed since; then every other
    period of that data set DHIS2 accepted before (a month, a quarter, a fiscal year, pushed by hand
    or by the schedule) whose values changed since (a correction, a late fact): its revision."""
    today = settings.clock.today()
    if not settings.dhis2_url or settings.dhis2_push_day == 0 or today.day < settings.dhis2_push_day:
        return []
    latest = last_complete(today)
    done = []
    for name in settings.dhis2_push_data_sets:
        data_set = DataSet(name)
        async with sessions() as session:
            # one replica pushes: the others skip while it holds the lock (released with the transaction)
            async with session.begin():
                if not await repository.try_push_lock(session):
                    return done
                submitted = {
                    pe for _, ds, pe in await repository.accepted_submissions(session, ACCEPTED) if ds == data_set.value
                }
                for period in (latest, *(parse_period(pe) for pe in sorted(submitted - {latest.id}))):
                    last, changed = await changed_since(session, registry, settings, data_set, period)
                    if (last is not None or period is not latest) and not changed:
                        continue
                    done.append(await push(sessions, registry, settings, data_set, period, trigger="scheduled"))
    return done


async def run(rt) -> None:
    """The background loop of the scheduled push (every `interval`, cheap when there is nothing to do)."""
    while True:
        try:
            await scheduled_push(rt.sessions, rt.registry, rt.settings)
        except NotConfigured as exc:
            log.warning("scheduled DHIS2 push not configured: %s", exc)
        await asyncio.sleep(rt.settings.dhis2_schedule_interval_s)


async def _push_once(settings: Settings, data_set: DataSet, period: Period, dry_run: bool) -> SubmissionRow:
    from servicekit import facilities
    from servicekit.db import create_engine, sessionmaker

    engine = create_engine(settings.database_url, settings.schema, pool_size=1)
    try:
        registry = facilities.load(settings.facilities_path)
        return await push(sessionmaker(engine), registry, settings, data_set, period, dry_run=dry_run)
    finally:
        await engine.dispose()


def main(period: str, data_set: str = "mer", dry_run: bool = False, data_dir=None, echo=print) -> int:
    """`pmtct dhis2 push`: settings from the environment as for the service (PMTCT_DATABASE_URL,
    PMTCT_DHIS2_URL, PMTCT_DHIS2_TOKEN or _USERNAME/_PASSWORD, ...), or the database of a running local
    runner's data directory. Exit 0 when DHIS2 imported everything, 1 on conflicts or errors, 2 when
    not configured."""
    from servicekit import bootstrap

    from .periods import PeriodError
    from .replay import postgres_socket_url

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["database_url"] = bootstrap.service_url(
            postgres_socket_url(data_dir), "reporting", password=bootstrap.local_role_password(data_dir, "reporting")
        )
    settings = Settings(**overrides)
    try:
        wanted = parse_period(period)
    except PeriodError as exc:
        echo(f"pmtct dhis2 push: {exc}")
        return 2
    try:
        row = asyncio.run(_push_once(settings, DataSet(data_set), wanted, dry_run))
    except NotConfigured as exc:
        echo(f"pmtct dhis2 push: {exc}")
        return 2
    echo(
        f"{data_set} {wanted.id} ({wanted.dhis2}){' dry run' if dry_run else ''}: {row.outcome}"
        f" (HTTP {row.http_status}, {row.attempts} attempt(s)) - imported {row.imported}, updated {row.updated},"
        f" ignored {row.ignored}, deleted {row.deleted}; {len(row.data_values)} values sent; submission {row.id}"
    )
    for c in row.conflicts:
        echo(f"  conflict: {c.get('object')}: {c.get('value')} ({c.get('errorCode')})")
    if row.outcome == FAILED:
        echo(f"  DHIS2 did not answer: {row.description}")
    return 0 if row.outcome == SUCCESS else 1
