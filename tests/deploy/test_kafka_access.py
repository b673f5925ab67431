"""The broker's listeners for systems outside the host, checked without a Docker engine: the
ministry listener is TLS with SASL SCRAM, the plaintext ones are reachable only inside (the
compose network, this host's loopback), the authorizer denies what no ACL allows, and the ACLs
the kafka-access job writes let the ministry principal read pmtct.referrals.v1 in its own
consumer group and nothing else. The runbook's consumer configurations say the same."""

from __future__ import annotations

import re
import shlex
import ssl
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from pmtct_events import REFERRALS_TOPIC

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GUIDE = ROOT / "docs" / "ministry-integration.md"


def kafka_property(env_name: str) -> str:
    """The server.properties name an apache/kafka image variable sets: KAFKA_ off, then ___ is -,
    __ is _ and _ is . (docker/examples/README.md of apache/kafka)."""
    name = env_name.removeprefix("KAFKA_").lower()
    return name.replace("___", "\0").replace("__", "\1").replace("_", ".").replace("\0", "-").replace("\1", "_")


@pytest.fixture(scope="module")
def compose() -> dict:
    return YAML(typ="safe", pure=True).load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def broker(compose: dict) -> dict[str, str]:
    """The broker's properties as its environment sets them."""
    env = compose["services"]["kafka"]["environment"]
    return {kafka_property(k): str(v) for k, v in env.items() if k.startswith("KAFKA_") and k != "KAFKA_HEAP_OPTS"}


def listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(","))


def test_the_variable_names_are_the_properties_meant() -> None:
    assert kafka_property("KAFKA_LISTENER_NAME_MINISTRY_SCRAM___SHA___512_SASL_JAAS_CONFIG") == (
        "listener.name.ministry.scram-sha-512.sasl.jaas.config"
    )
    assert kafka_property("KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND") == "allow.everyone.if.no.acl.found"


def test_only_the_ministry_listener_is_published_beyond_this_host_and_it_is_tls_with_scram(compose, broker) -> None:
    protocols = dict(item.split(":") for item in broker["listener.security.protocol.map"].split(","))
    assert protocols == {
        "INTERNAL": "PLAINTEXT",
        "CONTROLLER": "PLAINTEXT",
        "HOST": "PLAINTEXT",
        "MINISTRY": "SASL_SSL",
    }
    bound = {name: addr.rsplit(":", 1)[1] for name, addr in listeners(broker["listeners"]).items()}
    published = {}
    for mapping in compose["services"]["kafka"]["ports"]:
        host, container = mapping.rsplit(":", 1)
        published[container] = host
    by_listener = {name: published.get(port) for name, port in bound.items()}
    assert by_listener["INTERNAL"] is None and by_listener["CONTROLLER"] is None
    assert by_listener["HOST"] == "127.0.0.1:9092"  # this host's tools only
    assert by_listener["MINISTRY"] == "${KAFKA_MINISTRY_PORT:-9094}"  # every interface
    advertised = listeners(broker["advertised.listeners"])
    assert advertised["MINISTRY"] == "${KAFKA_EXTERNAL_HOST:-localhost}:${KAFKA_MINISTRY_PORT:-9094}"

    ministry = {k.removeprefix("listener.name.ministry."): v for k, v in broker.items() if ".ministry." in k}
    assert ministry["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert (
        ministry["scram-sha-512.sasl.jaas.config"]
        == "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    )
    assert ministry["ssl.keystore.type"] == "PEM"
    assert set(ministry["ssl.enabled.protocols"].split(",")) == {"TLSv1.3", "TLSv1.2"}
    volumes = compose["services"]["kafka"]["volumes"]
    assert "./kafka/tls:/etc/kafka/tls:ro" in volumes and ministry["ssl.keystore.location"].startswith(
        "/etc/kafka/tls/"
    )
    # the apache/kafka image's own SSL and SASL set-up (which wants JKS files and a JAAS file) keys on
    # `SSL://` and `SASL_...://` in the advertised listeners: the listener names keep out of its way
    assert "SSL://" not in broker["advertised.listeners"] and "SASL_" not in broker["advertised.listeners"]


def test_the_authorizer_allows_nothing_no_acl_allows_but_to_the_inside_listeners(broker) -> None:
    assert broker["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert broker["allow.everyone.if.no.acl.found"] == "false"
    # the anonymous principal is what the plaintext listeners give; the SASL listener never does
    assert broker["super.users"] == "User:ANONYMOUS"


def acl_commands() -> list[list[str]]:
    script = (DEPLOY / "kafka" / "ministry-access.sh").read_text().replace("\\\n", " ")
    return [shlex.split(line) for line in script.splitlines() if "kafka-acls.sh" in line and "--add" in line]


def test_the_ministry_principal_may_read_the_referral_topic_in_its_group_and_nothing_else(compose) -> None:
    grants = []
    for words in acl_commands():
        assert "--deny-principal" not in words and "--allow-host" not in words
        principal = words[words.index("--allow-principal") + 1]
        operations = {words[i + 1] for i, w in enumerate(words) if w == "--operation"}
        assert words[words.index("--resource-pattern-type") + 1] == "literal"
        resource = next((w, words[i + 1]) for i, w in enumerate(words) if w in ("--topic", "--group", "--cluster"))
        grants.append((principal, resource, operations))
    topic = "pmtct.referrals.v1"
    assert topic == REFERRALS_TOPIC
    assert grants == [
        ("User:$KAFKA_MINISTRY_USER", ("--topic", "$TOPIC"), {"Read", "Describe"}),
        ("User:$KAFKA_MINISTRY_USER", ("--group", "$KAFKA_MINISTRY_GROUP"), {"Read"}),
    ]
    assert re.search(rf"^TOPIC={re.escape(topic)}$", (DEPLOY / "kafka" / "ministry-access.sh").read_text(), re.M)
    job = compose["services"]["kafka-access"]
    assert job["environment"]["KAFKA_MINISTRY_PASSWORD"].startswith("${KAFKA_MINISTRY_PASSWORD:?")
    assert job["environment"]["KAFKA_MINISTRY_GROUP"] == "${KAFKA_MINISTRY_GROUP:-ministry-referrals}"
    assert "./kafka/ministry-access.sh:/etc/kafka/setup/ministry-access.sh:ro" in job["volumes"]
    assert (
        compose["services"]["referrals"]["depends_on"]["kafka-access"]["condition"] == "service_completed_successfully"
    )


def test_the_guide_s_consumer_configurations_match_the_listener() -> None:
    guide = GUIDE.read_text()
    java = re.search(r"```properties\n(.*?)```", guide, re.S).group(1)
    props = dict(line.split("=", 1) for line in java.splitlines() if line and not line.startswith("#"))
    assert props["security.protocol"] == "SASL_SSL" and props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["group.id"] == "ministry-referrals" and props["bootstrap.servers"].endswith(":9094")
    assert "ScramLoginModule required" in props["sasl.jaas.config"]
    assert props["ssl.truststore.type"] == "PEM"
    python = re.search(r"```python\n(.*?KafkaConsumer.*?)```", guide, re.S).group(1)
    for needed in ('security_protocol="SASL_SSL"', 'sasl_mechanism="SCRAM-SHA-512"', 'group_id="ministry-referrals"'):
        assert needed in python


def test_new_env_makes_a_broker_certificate_its_ca_signs_for_the_external_host(tmp_path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("new_env", DEPLOY / "new_env.py")
    new_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(new_env)
    tls = tmp_path / "tls"
    assert new_env.make_tls(tls, "kafka.ministry.example.org") is True
    assert new_env.make_tls(tls, "kafka.ministry.example.org") is False  # kept, not made again
    assert (tls / "broker.pem").stat().st_mode & 0o077 == 0 and (tls / "ca.key").stat().st_mode & 0o077 == 0
    # a client that trusts ca.crt accepts the broker's chain for that name (the TLS handshake's checks)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls / "broker.pem")  # the key matches the certificate
    client = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with client.wrap_socket(raw, server_hostname="kafka.ministry.example.org") as s:
            assert s.getpeercert()["subjectAltName"] == (("DNS", "kafka.ministry.example.org"),)
            s.send(b"x")
    thread.join(5)
    listener.close()
