"""Write deploy/.env from deploy/.env.example with a fresh random value for every empty entry,
and the Kafka TLS certificates of the ministry listener.

    python3 deploy/new_env.py [--output deploy/.env] [--tls-dir deploy/kafka/tls]

Passwords and client secrets become hex (safe inside connection URLs), `*_KEY` entries the urlsafe
base64 of 32 random bytes, KAFKA_CLUSTER_ID a KRaft cluster id. Values already set in the example
are kept. Refuses to overwrite an existing file: rotating a key is a procedure, not a re-run
(docs/operations.md, "Rotate keys").

The TLS directory gets a certificate authority (`ca.crt`, given to ministry systems to trust the
broker; `ca.key`, kept to sign a renewal) and the broker's key and certificate for
KAFKA_EXTERNAL_HOST (`broker.pem`: PKCS#8 key, certificate, CA certificate, as Kafka's PEM
keystore reads it). Made with the `openssl` command; an existing `broker.pem` is kept. Standard
library only otherwise: runs on the Docker host as it is.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fresh_value(name: str) -> str:
    if name == "KAFKA_CLUSTER_ID":
        return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if name.endswith("_KEY"):
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_hex(24)


def render(example: str) -> str:
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and not value.strip():
            line = f"{name}={fresh_value(name.strip())}"
        lines.append(line)
    return "\n".join(lines) + "\n"


#: the user the apache/kafka image runs the broker as, who must read the broker's key
KAFKA_UID = 1000


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_tls(directory: Path, host: str, days: int = 825) -> bool:
    """The ministry listener's CA and broker certificate for `host`; False if they exist already."""
    if (directory / "broker.pem").exists():
        return False
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is needed to make the Kafka TLS certificates (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        san = f"IP:{ipaddress.ip_address(host)}"
    except ValueError:
        san = f"DNS:{host}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _openssl(
            "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-sha256", "-days", "3650",
            "-subj", "/CN=PMTCT Kafka CA", "-keyout", str(work / "ca.key"), "-out", str(work / "ca.crt"),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        _openssl(
            "req", "-newkey", "rsa:3072", "-nodes", "-sha256", "-subj", f"/CN={host}",
            "-keyout", str(work / "broker.key"), "-out", str(work / "broker.csr"),
        )  # fmt: skip
        (work / "ext.cnf").write_text(
            f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        )
        _openssl(
            "x509", "-req", "-sha256", "-days", str(days), "-in", str(work / "broker.csr"),
            "-CA", str(work / "ca.crt"), "-CAkey", str(work / "ca.key"), "-CAcreateserial",
            "-extfile", str(work / "ext.cnf"), "-out", str(work / "broker.crt"),
        )  # fmt: skip
        pem = b"".join((work / name).read_bytes() for name in ("broker.key", "broker.crt", "ca.crt"))
        for name, data, mode in (
            ("ca.crt", (work / "ca.crt").read_bytes(), 0o644),
            ("ca.key", (work / "ca.key").read_bytes(), 0o600),
            ("broker.crt", (work / "broker.crt").read_bytes(), 0o644),
            ("broker.pem", pem, 0o600),
        ):
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
    if os.geteuid() == 0:
        os.chown(directory / "broker.pem", KAFKA_UID, KAFKA_UID)
    elif os.geteuid() != KAFKA_UID:
        print(f"the broker runs as uid {KAFKA_UID}: sudo chown {KAFKA_UID} {directory / 'broker.pem'}")
    return True


def _value(env: str, name: str) -> str:
    for line in env.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=HERE / ".env.example")
    parser.add_argument("--output", type=Path, default=HERE / ".env")
    parser.add_argument("--tls-dir", type=Path, default=HERE / "kafka" / "tls")
    args = parser.parse_args(argv)
    if args.output.exists():
        print(f"{args.output} exists; not overwriting it (move it away first if you mean it)", file=sys.stderr)
        return 1
    env = render(args.example.read_text())
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(env)
    print(f"wrote {args.output} (mode 600); review its non-secret values, then `make up`")
    host = _value(env, "KAFKA_EXTERNAL_HOST") or "localhost"
    if make_tls(args.tls_dir, host):
        print(f"wrote the Kafka TLS certificates for {host} to {args.tls_dir}; give ministry systems ca.crt")
    else:
        print(f"kept the Kafka TLS certificates in {args.tls_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
