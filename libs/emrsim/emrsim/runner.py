"""`pmtct simulate` and the demo feed of `pmtct dev`: generate a programme, post it, summarise."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from servicekit import facilities

from .desk import DeskRates, ReferralDesk
from .events import OUTCOMES, EmrEvent
from .posting import Endpoints, Poster, Tally, Tokens
from .programme import ProgrammeParams, generate

Mint = Callable[[str, str, list[str]], str]


async def post_programme(
    events: list[EmrEvent],
    endpoints: Endpoints,
    mint: Mint,
    *,
    rate: float | None = None,
    batch_size: int = 100,
    concurrency: int = 4,
    window: timedelta | None = timedelta(days=30),
    on_answered: Callable[[EmrEvent, dict], None] | None = None,
    attempts: int = 5,
) -> Tally:
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
        poster = Poster(
            client,
            endpoints,
            Tokens(mint),
            batch_size=batch_size,
            concurrency=concurrency,
            rate=rate,
            on_answered=on_answered,
            attempts=attempts,
        )
        return await poster.post_all(events, window)


def simulate(
    params: ProgrammeParams,
    endpoints: Endpoints,
    mint: Mint,
    *,
    rate: float | None = None,
    window: timedelta | None = timedelta(days=30),
    referrals_url: str | None = None,
    console: Console | None = None,
    desk_rates: DeskRates = DeskRates(),
) -> Tally:
    """Generate the programme, post it with a progress bar, print the summary. `window`: see
    `emrsim.posting` (None: every mother event, then every infant event). With `referrals_url`,
    Mentor Mothers then work referrals (emrsim.desk)."""
    console = console or Console()
    events = generate(params)
    console.print(
        f"Simulating {params.clients} mothers at {len(params.facilities)} facilities over {params.months} months "
        f"up to {params.anchor} (seed {params.seed}): {len(events)} EMR events"
    )
    with Progress(
        TextColumn("posting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("posting", total=len(events))
        tally = asyncio.run(
            post_programme(
                events, endpoints, mint, rate=rate, window=window, on_answered=lambda e, r: progress.advance(task, 1)
            )
        )
    console.print(summary(tally))
    if referrals_url and tally.nothing_new:
        # the desk worked this programme when it was first posted: referring its mothers by hand
        # again would make each of those referrals twice
        console.print("Referral desk: nothing to do (the programme was posted before)")
    elif referrals_url:
        done = asyncio.run(work_referrals(params, tally, referrals_url, mint, desk_rates))
        console.print(
            "Referral desk: " + (", ".join(f"{n} {what}" for what, n in sorted(done.items())) or "nothing to do")
        )
    return tally


async def work_referrals(
    params: ProgrammeParams, tally: Tally, referrals_url: str, mint: Mint, rates: DeskRates = DeskRates()
) -> Counter[str]:
    """Mentor Mothers refer some of the programme's mothers by hand, then work the open referrals
    of every facility; returns what they did."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
        desk = ReferralDesk(client, referrals_url, mint, params.seed, params.anchor, rates)
        await desk.refer_by_hand((f, ref, cid) for (f, ref), cid in tally.client_ids.items())
        await desk.work_open_referrals(params.facilities)
        return desk.done


def summary(tally: Tally) -> Table:
    table = Table(title=f"{tally.requests} requests in {tally.seconds:.1f}s")
    table.add_column("answer")
    table.add_column("intended", justify="right")
    table.add_column("answered", justify="right")
    for outcome in OUTCOMES:
        table.add_row(outcome, str(tally.intended[outcome]), str(tally.answered[outcome]))
    other = sum(tally.intended.values()) - sum(tally.answered.values())
    if other:
        table.add_row("[red]no answer / refused[/red]", "0", str(other))
    for code, n in tally.codes.most_common():
        table.add_row(f"  rejected: {code}", "", str(n))
    before = tally.posted_before()
    if before:
        table.add_row("  duplicate: posted before", "", str(len(before)))
    # a resend of a programme posted before is all duplicates: that is what it should answer
    expected = {id(s) for s in before}
    unexpected = Counter(
        (e.type, e.why, e.expect, answer, code)
        for e, answer, code, _ in (s for s in tally.surprises if id(s) not in expected)
    )
    for (event_type, why, expect, answer, code), n in unexpected.most_common(12):
        table.add_row(f"[yellow]unexpected[/yellow] {event_type} ({why})", expect, f"{n} × {answer} {code or ''}")
    return table


def registry_facilities(count: int | None = None) -> tuple[str, ...]:
    """The first `count` facilities of the registry the services run with (`PMTCT_FACILITIES`)."""
    path = os.environ.get("PMTCT_FACILITIES")
    ids = tuple(f.facility_id for f in facilities.load(Path(path) if path else None).all())
    return ids[:count] if count else ids


def demo_seed(today: date) -> int:
    return int(f"{today:%Y%m%d}")


def simulate_demo(endpoints: Endpoints, referrals_url: str, mint: Mint, today: date | None = None) -> Tally:
    """The demo feed of `pmtct dev`: a small programme over the two years up to `today`, its seed
    `today`'s date (`pmtct dev` feeds it once per data directory). Posted again the same day, it is
    answered `duplicate` (the summary says "posted before", and the referral desk does nothing).
    Mother events first, then infant events: one wait for follow-up to have the births, instead
    of one per month of the programme, so the platform is ready sooner."""
    today = today or date.today()
    params = ProgrammeParams(registry_facilities(), clients=300, months=24, seed=demo_seed(today), anchor=today)
    return simulate(params, endpoints, mint, window=None, referrals_url=referrals_url)
