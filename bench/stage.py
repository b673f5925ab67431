"""The benchmark's own platform: embedded PostgreSQL, the Tansu broker and the four services on
free ports in a temporary directory, with a facility registry sized for the load."""

from __future__ import annotations

import csv
from pathlib import Path

import psutil

from pmtct_tools.devrunner import Platform
from pmtct_tools.localinfra import free_port
from servicekit.settings import SERVICES

COUNTRIES = (
    ("ZA", ("Cape Town Metro", "Western Cape"), ("eThekwini", "KwaZulu-Natal")),
    ("KE", ("Kisumu", "Kisumu"), ("Homa Bay", "Homa Bay")),
    ("MW", ("Lilongwe", "Central"), ("Blantyre", "Southern")),
    ("UG", ("Kampala", "Central"), ("Gulu", "Northern")),
)


def write_registry(path: Path, count: int) -> tuple[str, ...]:
    """`count` facilities spread over four countries and two districts each."""
    rows = []
    for n in range(count):
        country, *districts = COUNTRIES[n % len(COUNTRIES)]
        district, province = districts[(n // len(COUNTRIES)) % 2]
        number = n // len(COUNTRIES) + 1
        rows.append(
            {
                "facility_id": f"FAC-{country}-B{number:02d}",
                "name": f"Bench {district} Clinic {number}",
                "district": district,
                "province": province,
                "country": country,
                "dhis2_org_unit": f"Bn{country}{number:07d}",
            }
        )
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tuple(r["facility_id"] for r in rows)


def start(workdir: Path, facilities: int) -> tuple[Platform, tuple[str, ...]]:
    registry = workdir / "facilities.csv"
    workdir.mkdir(parents=True, exist_ok=True)
    facility_ids = write_registry(registry, facilities)
    platform = Platform(
        data_dir=workdir / "platform",
        ports={s: free_port() for s in SERVICES},
        broker_port=free_port(),
        extra_env={"PMTCT_FACILITIES": str(registry)},
    )
    platform.start_infrastructure()
    platform.migrate()
    for service in SERVICES:
        platform.start_service(service)
    platform.wait_ready(timeout_s=120)
    return platform, facility_ids


def rss_mb(platform: Platform) -> dict[str, float]:
    """Resident memory of each service process (and its children, if any)."""
    out = {}
    for service, proc in platform.processes.items():
        p = psutil.Process(proc.pid)
        total = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
        out[service] = round(total / 2**20, 1)
    return out


def cpu_seconds(platform: Platform) -> dict[str, float]:
    """CPU time (user + system) used so far by each service, PostgreSQL (all its processes), the
    broker and this benchmark process: where the machine's cores went."""
    out = {}
    for service, proc in platform.processes.items():
        out[service] = _cpu(psutil.Process(proc.pid))
    postmaster = platform.data_dir / "postgres" / "postmaster.pid"
    if postmaster.exists():
        pg = psutil.Process(int(postmaster.read_text().splitlines()[0]))
        # children_* of the postmaster: the backends that have exited
        ended = pg.cpu_times().children_user + pg.cpu_times().children_system
        out["postgres"] = _cpu(pg) + ended + sum(_cpu(c) for c in pg.children(recursive=True))
    if platform.broker is not None and platform.broker.proc is not None:
        out["broker"] = _cpu(psutil.Process(platform.broker.proc.pid))
    out["bench"] = _cpu(psutil.Process())
    return out


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return t.user + t.system


def registry_rows(platform: Platform) -> list[dict[str, str]]:
    with Path(platform.extra_env["PMTCT_FACILITIES"]).open(newline="") as f:
        return list(csv.DictReader(f))
