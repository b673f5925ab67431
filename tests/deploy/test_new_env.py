"""`deploy/new_env.py`: the first step of an installation writes every secret, in a form each
consumer accepts, and never overwrites an existing configuration."""

from __future__ import annotations

import base64
import importlib.util
import re
import stat
from pathlib import Path

from enrolment.personal_data import decode_key

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def new_env():
    spec = importlib.util.spec_from_file_location("new_env", DEPLOY / "new_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(text: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in text.splitlines() if not line.startswith("#"))
    return {k: v for k, sep, v in pairs if sep}


def test_every_empty_entry_gets_a_fresh_value_each_consumer_accepts(tmp_path):
    example = parse((DEPLOY / ".env.example").read_text())
    out = tmp_path / ".env"
    assert new_env().main(["--output", str(out), "--tls-dir", str(tmp_path / "tls")]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    written = parse(out.read_text())

    assert set(written) == set(example)
    for name, value in example.items():
        if value:
            assert written[name] == value, f"{name} was set in the example and must be kept"
        else:
            assert written[name], f"{name} is still empty"
    decode_key(written["PMTCT_PII_KEY"])  # what enrolment checks at start-up
    assert len(base64.urlsafe_b64decode(written["PMTCT_HMAC_KEY"])) == 32
    assert len(base64.urlsafe_b64decode(written["KAFKA_CLUSTER_ID"] + "==")) == 16  # a KRaft cluster id
    for name in [n for n in written if "PASSWORD" in n or "SECRET" in n]:
        assert re.fullmatch(r"[0-9a-f]{48}", written[name]), f"{name} must be safe inside a URL"

    second = tmp_path / "again"
    new_env().main(["--output", str(second), "--tls-dir", str(tmp_path / "tls")])
    assert parse(second.read_text())["PMTCT_PII_KEY"] != written["PMTCT_PII_KEY"]


def test_an_existing_configuration_is_never_overwritten(tmp_path):
    out = tmp_path / ".env"
    out.write_text("PMTCT_PII_KEY=the-key-in-use\n")
    assert new_env().main(["--output", str(out), "--tls-dir", str(tmp_path / "tls")]) == 1
    assert out.read_text() == "PMTCT_PII_KEY=the-key-in-use\n"
