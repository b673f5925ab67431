"""Where the local runner's data is, found the same way by every `pmtct` command wherever it runs.

`pmtct dev` keeps PostgreSQL's data, the dev issuer's key and each service's log in a data
directory, and while it runs it writes `runner.json` there: the broker's address and the services'
URLs; once it has fed the demo programme, `demo.json` (it is not fed again). `pmtct token`,
`simulate`, `replay` and `dlq` find it, in this order:

1. `--data-dir DIR`;
2. `PMTCT_DATA_DIR`;
3. the nearest `.pmtct` directory in the current directory or one above it (as git finds `.git`);
4. `.pmtct` at the root of the repository this package is installed from (`make install`).

`pmtct dev` uses the same order, creating the directory if none exists (in the repository when it
is run from a checkout, else in the current directory). A command that needs what is not there (a
dev issuer, a running runner) says so and what to pass, instead of making up a new key whose
tokens every service would reject.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

NAME = ".pmtct"
RUNNER_FILE = "runner.json"
#: written when `pmtct dev` has fed the demo programme into this data directory's platform
DEMO_FILE = "demo.json"


class DataDirNotFound(RuntimeError):
    """No local runner data directory where the commands look (see the module docstring)."""


def repository_root() -> Path | None:
    """The checkout this package runs from (the workspace's pyproject.toml), if it runs from one."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "tools" / "pmtct_tools").is_dir():
            return parent
    return None


def candidates(explicit: Path | None = None, cwd: Path | None = None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    if os.environ.get("PMTCT_DATA_DIR"):
        return [Path(os.environ["PMTCT_DATA_DIR"])]
    here = (cwd or Path.cwd()).resolve()
    found = [p / NAME for p in (here, *here.parents)]
    root = repository_root()
    if root is not None:
        found.append(root / NAME)
    return found


def for_runner(explicit: Path | None = None, cwd: Path | None = None) -> Path:
    """Where `pmtct dev` keeps its data: an existing data directory found as above, else a new one
    in the repository (run from a checkout) or the current directory."""
    options = candidates(explicit, cwd)
    if explicit is not None or os.environ.get("PMTCT_DATA_DIR"):
        return options[0].resolve()
    for path in options:
        if path.is_dir():
            return path.resolve()
    root = repository_root()
    return (root / NAME) if root is not None else (cwd or Path.cwd()).resolve() / NAME


def existing(explicit: Path | None = None, cwd: Path | None = None, needs: str = "issuer") -> Path:
    """The data directory that holds `needs` (the dev issuer, by default), or `DataDirNotFound`
    saying where it looked and what to pass."""
    looked = candidates(explicit, cwd)
    for path in looked:
        if (path / needs).exists():
            return path.resolve()
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    raise DataDirNotFound(
        f"no local runner data (`{needs}`) in {where}: start the platform with `make run` (pmtct dev),"
        " or pass --data-dir DIR (or set PMTCT_DATA_DIR) to the directory `pmtct dev --data-dir` was given"
    )


@dataclass(frozen=True)
class Runner:
    """What a running `pmtct dev` wrote in its data directory."""

    pid: int
    bootstrap_servers: str
    urls: dict[str, str]

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def write_runner(data_dir: Path, bootstrap_servers: str, urls: dict[str, str]) -> Path:
    path = data_dir / RUNNER_FILE
    body = {"pid": os.getpid(), "bootstrap_servers": bootstrap_servers, "urls": urls}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def clear_runner(data_dir: Path) -> None:
    path = data_dir / RUNNER_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def running(data_dir: Path) -> Runner | None:
    """The runner of `data_dir` if one is running now."""
    try:
        body = json.loads((data_dir / RUNNER_FILE).read_text())
        runner = Runner(int(body["pid"]), str(body["bootstrap_servers"]), dict(body["urls"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return runner if runner.alive else None


def find_running(explicit: Path | None = None, cwd: Path | None = None) -> Runner | None:
    """The running local runner where the commands look, if any."""
    for path in candidates(explicit, cwd):
        runner = running(path)
        if runner is not None:
            return runner
    return None


def demo_loaded(data_dir: Path) -> dict | None:
    """What `mark_demo_loaded` wrote, if the demo was fed into this data directory's platform."""
    try:
        body = json.loads((data_dir / DEMO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def mark_demo_loaded(data_dir: Path, loaded_on: str, seed: int, events: int) -> Path:
    path = data_dir / DEMO_FILE
    body = {"loaded_on": loaded_on, "seed": seed, "events": events}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path
