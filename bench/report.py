"""The benchmark's figures of record: the headline fields, the targets of issue 8, JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

#: (field, comparison, target, unit): reported, never asserted
TARGETS = (
    ("ingest_events_per_s", ">=", 10_000, "events/s"),
    ("e2e_p99_ms", "<=", 1_000, "ms"),
    ("rebuild_events_per_s", ">=", 20_000, "events/s"),
    ("worklist_p95_ms", "<=", 100, "ms"),
    ("indicators_p95_ms", "<=", 100, "ms"),
    ("rss_mb_max", "<=", 200, "MB"),
)


def headline(out: dict) -> dict:
    """The flat fields of issue 8 first, the details after. A phase that failed leaves its fields
    None (its error is in `details.errors`)."""

    def get(*path: str):
        value = out
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    raw_pg, raw_broker = get("raw_pg", "rows_per_s"), get("raw_broker", "msgs_per_s")
    ingest, e2e_throughput = get("ingest", "events_per_s"), get("e2e", "throughput_events_per_s")
    raw_limit = min(raw_pg, raw_broker) if raw_pg and raw_broker else None
    rss = out.get("rss_mb")
    fields = {
        "raw_pg_rows_per_s": round(raw_pg, 1) if raw_pg else None,
        "raw_broker_msgs_per_s": round(raw_broker, 1) if raw_broker else None,
        "ingest_events_per_s": ingest,
        "single_post_p50_ms": get("single_post", "p50_ms"),
        "single_post_p99_ms": get("single_post", "p99_ms"),
        "e2e_p50_ms": get("e2e", "p50_ms"),
        "e2e_p99_ms": get("e2e", "p99_ms"),
        "e2e_throughput_events_per_s": e2e_throughput,
        "rebuild_events_per_s": get("rebuild", "events_per_s"),
        "worklist_p95_ms": get("worklist", "p95_ms"),
        "indicators_p95_ms": get("indicators", "p95_ms"),
        "rss_mb": rss,
        "rss_mb_max": max(rss.values()) if rss else None,
        "clients_loaded": out.get("clients_loaded"),
        "ratios": {
            "ingest_over_raw_pg": round(ingest / raw_pg, 3) if ingest and raw_pg else None,
            "e2e_throughput_over_raw_limit": round(e2e_throughput / raw_limit, 3)
            if e2e_throughput and raw_limit
            else None,
        },
    }
    fields["targets"] = {
        name: {"target": f"{op} {value} {unit}", "met": _met(fields[name], op, value)}
        for name, op, value, unit in TARGETS
    }
    return {**fields, "details": out}


def _met(value: float | None, op: str, target: float) -> bool | None:
    if value is None:
        return None
    return value >= target if op == ">=" else value <= target


def write(figures: dict, directory: Path) -> tuple[Path, Path]:
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps(figures, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(figures))
    return json_path, md_path


def markdown(f: dict) -> str:
    if "details" not in f:
        return "# Benchmark\n\nThe run did not complete; see its output.\n"
    d = f["details"]
    p = d["parameters"]
    rows = [
        ("raw PostgreSQL, outbox-shaped rows", f["raw_pg_rows_per_s"], "rows/s", ""),
        ("raw broker, acks=all", f["raw_broker_msgs_per_s"], "msgs/s", ""),
        ("ingest, POST /v1/events (batches of 100)", f["ingest_events_per_s"], "events/s", "≥ 10,000"),
        ("single event per POST, p50", f["single_post_p50_ms"], "ms", ""),
        ("single event per POST, p99", f["single_post_p99_ms"], "ms", ""),
        (f"end to end at {p['e2e_rate']:.0f} events/s, p50", f["e2e_p50_ms"], "ms", ""),
        (f"end to end at {p['e2e_rate']:.0f} events/s, p99", f["e2e_p99_ms"], "ms", "≤ 1,000"),
        ("end-to-end throughput", f["e2e_throughput_events_per_s"], "events/s", ""),
        (f"end to end at {p['e2e_light_rate']:.0f} events/s, p50", _light(d, "p50_ms"), "ms", ""),
        (f"end to end at {p['e2e_light_rate']:.0f} events/s, p99", _light(d, "p99_ms"), "ms", ""),
        ("rebuild (pmtct replay reporting)", f["rebuild_events_per_s"], "events/s", "≥ 20,000"),
        (f"worklist p95, {_fmt(f['clients_loaded'])} clients", f["worklist_p95_ms"], "ms", "≤ 100"),
        (f"indicators p95, {_fmt(f['clients_loaded'])} clients", f["indicators_p95_ms"], "ms", "≤ 100"),
        ("resident memory, largest service", f["rss_mb_max"], "MB", "≤ 200 each"),
    ]
    lines = [
        "# Benchmark: figures of record",
        "",
        f"`make bench` on {d['machine']['cpus']} CPUs ({d['machine']['system']}, Python {d['machine']['python']}),"
        f" {d['machine']['when']}; whole run {f.get('duration_s', '?')} s. Targets are reported, not asserted.",
        "",
        "| figure | value | unit | target |",
        "|---|---:|---|---|",
        *[f"| {name} | {_fmt(value)} | {unit} | {target} |" for name, value, unit, target in rows],
        "",
        "| service | resident memory (MB) | CPU seconds used in the run |",
        "|---|---:|---:|",
        *[f"| {svc} | {mb} | {d.get('cpu_s_total', {}).get(svc, '')} |" for svc, mb in (f["rss_mb"] or {}).items()],
        "",
        "Ratios: ingest / raw PostgreSQL = "
        f"**{f['ratios']['ingest_over_raw_pg']}**; end-to-end throughput / raw limit (the lower of the two raw"
        f" figures) = **{f['ratios']['e2e_throughput_over_raw_limit']}**.",
        "",
        "Targets: " + "; ".join(f"`{k}` {v['target']}: {_verdict(v['met'])}" for k, v in f["targets"].items()),
        "",
        "## How each figure is measured",
        "",
        *how_measured(d),
        "",
        *[f"- **{phase} failed**: {error}" for phase, error in d.get("errors", {}).items()],
        "",
        f"Phases (s): {f.get('phases_s', {})}",
        "",
    ]
    return "\n".join(lines)


def how_measured(d: dict) -> list[str]:
    """One bullet per phase that ran."""
    p = d["parameters"]
    bullets = [
        lambda: (
            f"- Raw PostgreSQL: {d['raw_pg']['connections']} connections insert rows of the platform's own message"
            " into a copy of the outbox table (indexes and NOTIFY trigger included),"
            f" {d['raw_pg']['rows_per_transaction']} rows per transaction, cluster durability"
            f" `{d['raw_pg']['durability']}`."
        ),
        lambda: (
            f"- Raw broker: aiokafka producer, `acks=all`, linger 5 ms, {d['raw_broker']['message_bytes']}-byte"
            " messages (a ClientEnrolled CloudEvent with its headers), 5,000 sends in flight."
        ),
        lambda: (
            f"- Ingest: {p['clients']:,} mothers of a 24-month synthetic programme (emrsim) —"
            f" {d['load']['journeys']:,} with their whole journey ({d['load']['journey_events']:,} events), the"
            f" others their ANC1 enrolment ({d['load']['enrolments_only']:,} events) — mother events posted to"
            f" enrolment by {p['facilities']} facility EMRs, {p['concurrency']} requests in flight, batches of"
            f" 100; accepted events per second over the whole posting ({d['ingest']['events']:,} events,"
            f" {d['ingest']['seconds']} s). The other services' consumers run at the same time on the same cores;"
            f" CPU seconds per service during it: {d['ingest']['cpu_s']}."
        ),
        lambda: (
            f"- Then the programme's infant events to follow-up: {d['ingest_followup']['events_per_s']} events/s"
            f" ({d['ingest_followup']['events']:,} events); every consumer caught up {d['load_drain_s']} s after,"
            f" and the durable timers had announced what the backdated programme left due"
            f" {d.get('load_settle_s', '?')} s later"
            + (f" (still due then: {d['load_still_due']})" if d.get("load_still_due") else "")
            + "; the phases below start after that."
        ),
        lambda: (
            "- Where the cores went during the load (CPU milliseconds per posted EMR event, ingestion until the"
            f" last consumer caught up): {d['load']['cpu_ms_per_event']}."
        ),
        lambda: (
            f"- Single event per POST: a new ANC1 enrolment per request, {p['single_rate']:.0f} requests/s open"
            f" loop, {d['single_post']['requests']} requests, latency as the EMR sees it."
        ),
        lambda: (
            "- End to end: mother events of a new cohort to enrolment plus positive infant NATs to follow-up,"
            f" together {p['e2e_rate']:.0f} events/s for {p['e2e_seconds']:.0f} s (posted at"
            f" {d['e2e']['posted_rate_per_s']}/s). Latency from the POST's answer to the effect on the topics other"
            " systems read: for an HIV-exposed birth, InfantFollowUpStarted on `pmtct.followup.v1` (enrolment →"
            " relay → follow-up → relay); for a positive infant NAT, the infant-ART ReferralCreated on the ministry"
            " feed `pmtct.referrals.v1` (follow-up → relay → referrals → relay). Follow-up started:"
            f" {_effect(d['e2e']['follow_up_started'])}; referral opened: {_effect(d['e2e']['referral_opened'])}."
            " Throughput = accepted events / time until every consumer had processed everything."
        ),
        lambda: (
            f"- End to end again, lighter: {p['e2e_light_rate']:.0f} events/s for {p['e2e_light_seconds']:.0f} s"
            f" (posted at {d['e2e_light']['posted_rate_per_s']}/s), a new cohort, the same effects: follow-up"
            f" started: {_effect(d['e2e_light']['follow_up_started'])}; referral opened:"
            f" {_effect(d['e2e_light']['referral_opened'])}."
        ),
        lambda: (
            f"- Reads: {p['reads']} sequential requests each; the worklist of each facility as of today"
            f" ({d['worklist']['items_per_facility_sample']} items in the first), indicators of this month per"
            " facility, district and country."
        ),
        lambda: (
            "- Rebuild: services stopped; the topics"
            f" ({sum(d['replay_corpus']['from_the_run'].values()):,} events from the run) grown by"
            f" {d['replay_corpus']['copies']} clone(s) with fresh ids (+{d['replay_corpus']['cloned']:,});"
            f" `pmtct replay reporting` timed from start to exit: {d['rebuild']['events']:,} events in"
            f" {d['rebuild']['seconds']} s."
        ),
    ]
    out = []
    for bullet in bullets:
        try:
            out.append(bullet())
        except (KeyError, TypeError):
            continue
    return out


def _effect(e: dict) -> str:
    return f"{e['seen']} of {e['markers']} seen, p50 {_fmt(e['p50_ms'])} ms, p99 {_fmt(e['p99_ms'])} ms"


def _light(d: dict, key: str):
    return d.get("e2e_light", {}).get(key)


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "**not met**"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
