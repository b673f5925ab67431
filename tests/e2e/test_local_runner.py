"""`pmtct dev` as a newcomer runs it (`make run`): all four services ready, service logins with
generated passwords (they had none), data that survives a restart, and a clean stop on SIGTERM that
leaves no process behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from pmtct_tools.localinfra import port_is_free
from servicekit.settings import PORTS, SERVICES

pytestmark = pytest.mark.e2e


def pick_offset() -> int:
    for _ in range(50):
        offset = random.randrange(10_000, 40_000, 10)
        if all(port_is_free(p + offset) for p in [*PORTS.values(), 9092]):
            return offset
    raise RuntimeError("no free port range")


def start(data_dir: Path, offset: int) -> tuple[subprocess.Popen, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pmtct_tools.cli",
            "dev",
            "--no-demo",
            "--data-dir",
            str(data_dir),
            "--port-offset",
            str(offset),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return proc, lines
    proc.kill()
    raise AssertionError("pmtct dev did not come up:\n" + "".join(lines))


def stop(proc: subprocess.Popen) -> list[str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out.splitlines()


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def sql(data_dir: Path, statement: str) -> str:
    """Run SQL as the superuser over the embedded server's socket, from another process."""
    script = (
        "import asyncio, asyncpg, sys\n"
        "async def main():\n"
        f"    c = await asyncpg.connect(host={str(data_dir / 'postgres')!r}, user='postgres', database='pmtct')\n"
        f"    print(await c.fetchval({statement!r}))\n"
        "    await c.close()\n"
        "asyncio.run(main())\n"
    )
    return subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout.strip()


def login_error(data_dir: Path, role: str, password: str | None) -> str:
    """Log in as `role` over the embedded server's socket, from another process: '' or the error's name."""
    script = (
        "import asyncio, asyncpg\n"
        "async def main():\n"
        "    try:\n"
        f"        c = await asyncpg.connect(host={str(data_dir / 'postgres')!r}, user={role!r},"
        f" password={password!r}, database='pmtct')\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
        "        return\n"
        "    await c.close()\n"
        "asyncio.run(main())\n"
    )
    return subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout.strip()


def test_make_run_brings_every_service_to_ready_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "pmtct"
    offset = pick_offset()
    proc, lines = start(data_dir, offset)
    try:
        ready_line = next(line for line in lines if line.startswith("ready in"))
        assert float(ready_line.split()[2].rstrip("s")) < 60
        token = next(lines[i + 1].strip() for i, line in enumerate(lines) if line.startswith("Dev token"))
        # the dashboard's address is printed without the token (it would end in logs and history)
        [dashboard] = [line for line in lines if line.strip().startswith("dashboard")]
        assert "token" not in dashboard.split("(")[0] and token not in dashboard
        for service in SERVICES:
            base = f"http://127.0.0.1:{PORTS[service] + offset}"
            assert base in "".join(lines)
            assert httpx.get(base + "/readyz", timeout=5).json()["status"] == "ready"
        assert token.count(".") == 2
        children = psutil.Process(proc.pid).children(recursive=True)
        pg = postmaster_pid(data_dir)
        assert len(children) >= 5  # four services and the broker
        # service logins are not open to whoever reaches the socket: each needs the password the
        # runner generated into its data directory (never in the repository)
        for service in SERVICES:
            password = (data_dir / "keys" / f"db-{service}.password").read_text().strip()
            assert len(password) >= 24
            assert login_error(data_dir, f"pmtct_{service}", None) == "InvalidPasswordError"
            assert login_error(data_dir, f"pmtct_{service}", "not-" + password) == "InvalidPasswordError"
            assert login_error(data_dir, f"pmtct_{service}", password) == ""
        sql(data_dir, "CREATE TABLE IF NOT EXISTS public.restart_marker (v int)")
        sql(data_dir, "INSERT INTO public.restart_marker VALUES (42)")
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
    assert out[-1] == "stopped."
    time.sleep(1)
    alive = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"orphans left behind: {alive}"
    assert not psutil.pid_exists(pg) or psutil.Process(pg).status() == psutil.STATUS_ZOMBIE
    # each service's log is JSON from its first line: uvicorn's own lines came before the app's
    # lifespan set the JSON formatter up, and were plain text ("INFO:     Started server process")
    for service in SERVICES:
        log = [line for line in (data_dir / f"{service}.log").read_text().splitlines() if line.strip()]
        plain = [line for line in log if not line.startswith("{")]
        assert plain == [], f"{service}.log: {plain[:3]}"
        first = json.loads(log[0])
        assert (first["logger"], first["msg"].split(" [")[0]) == ("uvicorn.error", "Started server process")

    proc, _ = start(data_dir, offset)
    try:
        assert sql(data_dir, "SELECT sum(v) FROM public.restart_marker") == "42"
    finally:
        stop(proc)
    assert proc.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_make_runs_job_stops_each_child_once_without_a_traceback(tmp_path: Path, signum: int) -> None:
    """A newcomer's Ctrl-C (or SIGTERM to `make run`'s job) reaches the whole process group: the
    services stopped on their own while the runner stopped them again, the guardian stopped
    PostgreSQL under them (referrals' push worker printed a traceback when its database went) and
    the runner stopped it a second time. Now only the runner hears it, and stops each child once."""
    data_dir = tmp_path / "pmtct"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    command = [sys.executable, "-m", "pmtct_tools.cli", "dev", "--no-demo", "--data-dir", str(data_dir)]
    command += ["--port-offset", str(pick_offset())]
    # its own session and process group, as a terminal runs a job
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (lines and lines[-1].startswith("Ctrl-C stops everything")):
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
    if not (lines and lines[-1].startswith("Ctrl-C stops everything")):
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("pmtct dev did not come up:\n" + "".join(lines) + proc.communicate(timeout=30)[0])
    children = psutil.Process(proc.pid).children(recursive=True)
    # the terminal's signal reaches the job's process group: the runner only, none of its children
    assert [c.pid for c in children if os.getpgid(c.pid) == proc.pid] == []
    pg = postmaster_pid(data_dir)
    os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=90)

    assert proc.returncode == 0, out
    assert "Traceback" not in out and "Failed to stop server" not in out, out
    for service in SERVICES:
        assert "Traceback" not in (data_dir / f"{service}.log").read_text(), service
    # stopped by the runner after the services, once: a second stop of a stopped server is the
    # library's "Failed to stop server" (above)
    assert not psutil.pid_exists(pg) or psutil.Process(pg).status() == psutil.STATUS_ZOMBIE
    time.sleep(1)
    alive = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left behind: {alive}"


def test_the_demo_is_fed_once_per_data_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    """A restart of `make run` with its data kept posted the demo again (every event a duplicate,
    the referral desk's hand-made referrals made twice): it is fed once, and a later start says so.
    (The platform is faked: what is checked is the runner's decision; the resend itself is
    tests/emrsim/test_simulate_against_the_platform.py.)"""
    from collections import Counter
    from datetime import date
    from types import SimpleNamespace

    import emrsim.runner
    from emrsim.posting import Tally
    from pmtct_tools import devrunner

    fed: list[date | None] = []

    def simulate_demo(endpoints, referrals_url, mint, today=None) -> Tally:
        fed.append(today)
        return Tally(intended=Counter(accepted=700, rejected=95), answered=Counter(accepted=700, rejected=95))

    monkeypatch.setattr(emrsim.runner, "simulate_demo", simulate_demo)
    platform = SimpleNamespace(
        data_dir=tmp_path, url=lambda service: f"http://localhost/{service}", issuer=SimpleNamespace(mint=None)
    )

    devrunner.feed_demo(platform)
    devrunner.feed_demo(platform)

    assert fed == [date.today()]
    said = capsys.readouterr().out
    assert f"demo already loaded (795 EMR events on {date.today().isoformat()}," in said
    assert "--no-demo to skip this message" in said
