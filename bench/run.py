"""`python -m bench`: start a platform of its own, measure the raw limits of this machine, load a
synthetic programme through the public APIs, measure ingestion, latency, end-to-end delay,
reads, memory and the reporting rebuild, and write `bench/results/latest.json` and `latest.md`.

Phases, in order (each figure is measured in the same run as the raw limits it is compared to):
 1. raw PostgreSQL and raw broker throughput, platform idle;
 2. ingestion: every mother event of a `--clients` programme posted to enrolment in batches of
    100 by many EMRs at once, then its infant events to follow-up once follow-up has the births;
 3. single-event latency at a moderate fixed rate;
 4. end to end at a fixed rate (see bench/e2e.py for the effects followed);
 5. worklist and indicator reads with everything loaded; resident memory of each service;
 6. the services stop; the topics are grown to at least `--replay-events` by cloning their content
    with fresh ids; `pmtct replay reporting` rebuilds the read model from them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform as host
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from emrsim.events import EmrEvent
from emrsim.posting import Endpoints
from emrsim.programme import ProgrammeParams, generate
from pmtct_tools.devrunner import Platform
from pmtct_tools.localinfra import stop_process

from . import e2e, ingest, queries, raw, rebuild, report, stage, topics

RESULTS = Path(__file__).parent / "results"
LOAD_SEED = 2026
COHORT_SEED = 2027
#: mother events per enrolled woman in a 24-month programme (emrsim defaults), to size cohorts
MOTHER_EVENTS_PER_CLIENT = 5.5


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=100_000, help="mothers in the loaded programme")
    p.add_argument(
        "--journeys",
        type=int,
        default=8_000,
        help="of those, mothers whose whole journey is loaded (the others: their ANC1 enrolment)",
    )
    p.add_argument("--facilities", type=int, default=20, help="facilities in the bench registry")
    p.add_argument("--raw-seconds", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight while ingesting")
    p.add_argument("--single-rate", type=float, default=20, help="single-event requests per second")
    p.add_argument("--single-seconds", type=float, default=15)
    p.add_argument("--e2e-rate", type=float, default=1000, help="events per second, end to end")
    p.add_argument("--e2e-seconds", type=float, default=60)
    p.add_argument(
        "--e2e-light-rate", type=float, default=200, help="events per second of a second, lighter end-to-end run"
    )
    p.add_argument("--e2e-light-seconds", type=float, default=30)
    p.add_argument("--reads", type=int, default=200, help="requests per read endpoint")
    p.add_argument("--replay-events", type=int, default=1_000_000, help="at least this many events replayed")
    p.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and latest.md go")
    p.add_argument("--keep", action="store_true", help="keep the platform's data directory")
    p.add_argument(
        "--quick", action="store_true", help="tiny sizes, to check the benchmark itself (figures mean nothing)"
    )
    args = p.parse_args(argv)
    if args.quick:
        if args.out == RESULTS:
            args.out = Path(tempfile.gettempdir()) / "pmtct-bench-quick"
        args.clients, args.journeys, args.raw_seconds, args.single_seconds = 1500, 500, 2, 3
        args.e2e_rate, args.e2e_seconds, args.reads, args.replay_events = 100, 5, 20, 20_000
        args.e2e_light_rate, args.e2e_light_seconds = 50, 3
    return args


class Log:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f}s] {message}", flush=True)

    def phase(self, name: str, since: float) -> None:
        self.phases[name] = round(time.perf_counter() - since, 1)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    log = Log()
    workdir = Path(tempfile.mkdtemp(prefix="pmtct-bench-"))
    figures: dict = {}
    try:
        figures = measure(args, workdir, log)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"platform data kept in {workdir}")
    figures["duration_s"] = round(time.perf_counter() - log.started, 1)
    figures["phases_s"] = log.phases
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = report.write(figures, args.out)
    log(f"wrote {json_path} and {md_path}")
    print(report.markdown(figures))
    return 0


def measure(args: argparse.Namespace, workdir: Path, log: Log) -> dict:
    today = date.today()
    t = time.perf_counter()
    log(f"starting the platform in {workdir} ({args.facilities} facilities)")
    platform, facility_ids = stage.start(workdir, args.facilities)
    log.phase("start", t)
    try:
        return asyncio.run(_measure(args, platform, facility_ids, today, log))
    finally:
        platform.stop()


@dataclass
class Run:
    """What the phases share: the platform, the generated programmes, and the figures so far."""

    args: argparse.Namespace
    platform: Platform
    facility_ids: tuple[str, ...]
    today: date
    log: Log
    out: dict = field(default_factory=dict)
    load: list[EmrEvent] = field(default_factory=list)
    cohort: list[EmrEvent] = field(default_factory=list)
    cohort_clients: int = 0
    infant_ids: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def mint(self):
        assert self.platform.issuer is not None
        return self.platform.issuer.mint

    @property
    def bootstrap(self) -> str:
        return self.platform.bootstrap_servers

    @property
    def admin_url(self) -> str:
        return self.platform.admin_url

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(self.platform.url("enrolment"), self.platform.url("followup"))


async def _measure(args, platform: Platform, facility_ids: tuple[str, ...], today: date, log: Log) -> dict:
    run = Run(args, platform, facility_ids, today, log)
    run.out.update(
        machine={
            "cpus": os.cpu_count(),
            "python": host.python_version(),
            "system": f"{host.system()} {host.release()}",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        parameters={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )
    phases = (raw_limits, load_programme, single_post, end_to_end, end_to_end_light, reads, rebuild_read_model)
    for phase in phases:
        started = time.perf_counter()
        try:
            await phase(run)
        except Exception as exc:
            run.out.setdefault("errors", {})[phase.__name__] = f"{type(exc).__name__}: {exc}"[:2000]
            log(f"{phase.__name__} failed: {exc!r}")
            if phase is load_programme:
                break  # nothing after it means anything without the programme loaded
        finally:
            log.phase(phase.__name__, started)
    return report.headline(run.out)


async def raw_limits(run: Run) -> None:
    sample = raw.sample_message()
    pg = await raw.raw_pg_rows_per_s(run.platform.admin_url, sample, seconds=run.args.raw_seconds)
    run.log(f"raw PostgreSQL: {pg['rows_per_s']:.0f} rows/s")
    broker = await raw.raw_broker_msgs_per_s(run.bootstrap, sample, seconds=run.args.raw_seconds)
    run.log(f"raw broker: {broker['msgs_per_s']:.0f} msgs/s ({broker['message_bytes']} bytes each)")
    run.out["raw_pg"], run.out["raw_broker"] = pg, broker


async def load_programme(run: Run) -> None:
    """Mother events to enrolment (the ingest figure), then infant events to follow-up once it has
    every birth, then wait until every consumer has processed everything."""
    args, log, out = run.args, run.log, run.out
    run.load = generate(ProgrammeParams(run.facility_ids, args.clients, 24, LOAD_SEED, run.today))
    run.cohort_clients = math.ceil(args.e2e_rate * args.e2e_seconds / MOTHER_EVENTS_PER_CLIENT * 1.1)
    run.cohort = generate(ProgrammeParams(run.facility_ids, run.cohort_clients, 24, COHORT_SEED, run.today))
    # every k-th mother: journeys spread over the whole period, as enrolments are
    stride = max(1, args.clients // max(1, args.journeys))
    journey = [e for e in run.load if _client_index(e) % stride == 0]
    booked = [e for e in run.load if _client_index(e) % stride and e.type == "ClientEnrolled" and e.why == "valid"]
    mothers = [e for e in journey if e.service == "enrolment"] + booked
    mothers.sort(key=lambda e: e.arrives_at)
    infants = [e for e in journey if e.service == "followup"]
    log(
        f"loading {args.clients} mothers: {args.journeys} whole journeys ({len(journey)} events,"
        f" {len(infants)} of them infant events) and {len(booked)} ANC1 enrolments"
    )
    out["load"] = {"journeys": args.journeys, "journey_events": len(journey), "enrolments_only": len(booked)}

    cpu_before = stage.cpu_seconds(run.platform)
    tally = await ingest.post_events(
        mothers, run.endpoints, run.mint, service="enrolment", concurrency=args.concurrency
    )
    run.infant_ids = tally.infant_ids
    out["ingest"] = ingest.throughput(tally)
    out["ingest"]["cpu_s"] = _cpu_delta(cpu_before, stage.cpu_seconds(run.platform))
    log(f"ingest (enrolment): {out['ingest']}")

    waited = await topics.wait_caught_up(
        run.bootstrap, run.admin_url, ["followup"], timeout_s=900, on_progress=_progress(log)
    )
    log(f"follow-up had every birth {waited:.0f}s after ingestion ended")
    tally = await ingest.post_events(
        infants,
        run.endpoints,
        run.mint,
        service="followup",
        concurrency=args.concurrency,
        infant_ids=run.infant_ids,
    )
    out["ingest_followup"] = ingest.throughput(tally)
    log(f"ingest (follow-up): {out['ingest_followup']}")
    drained = await topics.wait_caught_up(run.bootstrap, run.admin_url, timeout_s=900, on_progress=_progress(log))
    out["load_drain_s"] = round(drained, 1)
    # every process's CPU for the whole load, ingestion to the last consumer: where the cores went
    spent = _cpu_delta(cpu_before, stage.cpu_seconds(run.platform))
    out["load"]["cpu_ms_per_event"] = {k: round(v * 1000 / (len(mothers) + len(infants)), 2) for k, v in spent.items()}
    log(f"every consumer caught up {drained:.0f}s later")
    # The programme is backdated: the timers then announce what fell due in its past (overdue tests,
    # mothers lost to follow-up, ART waits over). The measurements below start once that is done,
    # so that they measure the platform at their own rate, not the load's aftermath.
    settled, still_due = await topics.wait_settled(run.bootstrap, run.admin_url, run.today, on_progress=_progress(log))
    out["load_settle_s"] = round(settled, 1)
    out["load_still_due"] = still_due
    log(f"the timers had announced everything due {settled:.0f}s later" + (f" but {still_due}" if still_due else ""))


async def single_post(run: Run) -> None:
    run.out["single_post"] = await ingest.single_post_latency(
        run.endpoints.events_url("enrolment"),
        run.facility_ids,
        run.mint,
        rate=run.args.single_rate,
        seconds=run.args.single_seconds,
    )
    run.log(f"single post: {run.out['single_post']}")


async def end_to_end(run: Run) -> None:
    """At the rate of issue 8 (the figures of record), then at a rate the platform keeps up with
    (`end_to_end_light`): latency with and without a queue in front of the consumers."""
    run.out["e2e"] = await e2e.run(
        run.bootstrap,
        run.admin_url,
        run.endpoints,
        run.mint,
        [e for e in run.cohort if e.service == "enrolment"],
        # the lighter run after it gets its own share of the infants
        result_candidates(run.load, run.infant_ids, run.today)[::2],
        rate=run.args.e2e_rate,
        seconds=run.args.e2e_seconds,
    )
    run.log(f"end to end: {run.out['e2e']}")


async def end_to_end_light(run: Run) -> None:
    args = run.args
    # as after the load: the first run's backdated cohort leaves timer work; it is done first
    settled, _ = await topics.wait_settled(run.bootstrap, run.admin_url, run.today, on_progress=_progress(run.log))
    run.log(f"the first run's timer work was done {settled:.0f}s after it")
    clients = math.ceil(args.e2e_light_rate * args.e2e_light_seconds / MOTHER_EVENTS_PER_CLIENT * 1.1)
    cohort = generate(ProgrammeParams(run.facility_ids, clients, 24, COHORT_SEED + 1, run.today))
    run.cohort_clients += clients
    run.out["e2e_light"] = await e2e.run(
        run.bootstrap,
        run.admin_url,
        run.endpoints,
        run.mint,
        [e for e in cohort if e.service == "enrolment"],
        result_candidates(run.load, run.infant_ids, run.today)[1::2],
        rate=args.e2e_light_rate,
        seconds=args.e2e_light_seconds,
    )
    run.log(f"end to end, lighter: {run.out['e2e_light']}")


async def reads(run: Run) -> None:
    """Reads with everything loaded; then the services' resident memory."""
    args, out = run.args, run.out
    out["clients_loaded"] = args.clients + run.cohort_clients + int(args.single_rate * args.single_seconds)
    out["worklist"] = await queries.worklist(
        run.platform.url("followup"), run.facility_ids, run.mint, requests=args.reads, as_of=run.today
    )
    run.log(f"worklist: {out['worklist']}")
    registry = stage.registry_rows(run.platform)
    scopes = (
        [{"facility_id": f} for f in run.facility_ids]
        + [{"district": d} for d in sorted({r["district"] for r in registry})]
        + [{"country": c} for c in sorted({r["country"] for r in registry})]
    )
    out["indicators"] = await queries.indicators(
        run.platform.url("reporting"), scopes, run.mint, requests=args.reads, period=f"{run.today:%Y-%m}"
    )
    run.log(f"indicators: {out['indicators']}")
    out["rss_mb"] = stage.rss_mb(run.platform)
    out["cpu_s_total"] = {k: round(v, 1) for k, v in stage.cpu_seconds(run.platform).items()}
    run.log(f"resident memory: {out['rss_mb']}")


async def rebuild_read_model(run: Run) -> None:
    """Services stopped, so that nothing but the rebuild reads the grown topics."""
    for proc in run.platform.processes.values():
        stop_process(proc, 15)
    sizes = await topics.topic_sizes(run.bootstrap)
    copies = max(0, math.ceil(run.args.replay_events / max(1, sum(sizes.values()))) - 1)
    cloned = await topics.clone(run.bootstrap, copies) if copies else 0
    run.out["replay_corpus"] = {"from_the_run": sizes, "cloned": cloned, "copies": copies}
    run.log(f"replay corpus: {sum(sizes.values())} events from the run + {cloned} cloned")
    run.out["rebuild"] = rebuild.replay_reporting(run.platform)
    run.log(f"rebuild: {run.out['rebuild']}")


def result_candidates(
    load: list[EmrEvent], infant_ids: dict[tuple[str, str], str], today: date
) -> list[tuple[str, str]]:
    """Infants follow-up has, born 1-9 months ago, with no positive result or outcome yet: a
    positive NAT for them is news, and opens an infant-ART referral."""
    exposed = e2e.exposed_infants(load)
    born: dict[tuple[str, str], date] = {}
    done: set[tuple[str, str]] = set()
    for e in load:
        if e.type == "DeliveryRecorded":
            for i in e.body["data"]["infants"]:
                born[(e.facility_id, i["infant_ref"])] = e.occurred_at.date()
        elif e.type == "InfantOutcomeRecorded" or (
            e.type == "InfantTestResulted" and e.body["data"]["result"] != "negative"
        ):
            done.add((e.facility_id, e.body["infant_ref"]))
    window = (today - timedelta(days=270), today - timedelta(days=30))
    return [
        (key[0], infant_ids[key])
        for key in sorted(exposed - done)
        if key in infant_ids and window[0] <= born[key] <= window[1]
    ]


def _client_index(event: EmrEvent) -> int:
    """The generator's number for the mother behind an event (`S<seed>-<index>[-B1|-T...]`)."""
    ref = event.body.get("client_ref") or event.body["infant_ref"]
    return int(ref.split("-")[1])


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 1) for k in after}


def _progress(log: Log):
    last = [0.0]

    def show(remaining: dict[str, int]) -> None:
        if time.perf_counter() - last[0] > 15:
            last[0] = time.perf_counter()
            log(f"  still to do: {remaining}")

    return show
