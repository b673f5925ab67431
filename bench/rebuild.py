"""Rebuilding the reporting read model from the topics: `pmtct replay reporting`, as an operator
runs it, timed from start to exit."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from pmtct_tools.devrunner import Platform


def replay_reporting(platform: Platform, timeout_s: float = 900) -> dict:
    command = [sys.executable, "-m", "pmtct_tools.cli", "replay", "reporting"]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        env={**platform.service_env("reporting"), "COLUMNS": "120", "TERM": "dumb"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    elapsed = time.perf_counter() - started
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"pmtct replay reporting exited with {done.returncode}:\n{output[-3000:]}")
    read = re.search(r"read (\d+) events", output)
    if read is None:
        raise RuntimeError(f"pmtct replay reporting did not say how many events it read:\n{output[-3000:]}")
    events = int(read.group(1))
    return {
        "events_per_s": round(events / elapsed, 1),
        "events": events,
        "seconds": round(elapsed, 1),
        "summary": output.strip().splitlines()[-1][:300],
    }
