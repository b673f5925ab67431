"""The local runner's token issuer: an RSA key generated at run time in the data directory (never
committed), its JWKS served over HTTP on loopback like a real issuer's, and `mint`."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "pmtct-dev-issuer"
AUDIENCE = "pmtct"


class DevIssuer:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.key_path = self.directory / "issuer-key.pem"
        self.jwks_path = self.directory / "jwks.json"

    def ensure(self) -> DevIssuer:
        if not self.key_path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            self.key_path.write_bytes(pem)
            self.key_path.chmod(0o600)
        self.write_jwks()
        return self

    def _private_key(self):
        return serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)

    @property
    def kid(self) -> str:
        public = (
            self._private_key()
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return uuid.uuid5(uuid.NAMESPACE_OID, public.hex()).hex[:16]

    def write_jwks(self) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._private_key().public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        self.jwks_path.write_text(json.dumps({"keys": [jwk]}, indent=2))

    def mint(
        self,
        client_id: str,
        scopes: list[str] | str,
        facilities: list[str],
        ttl_s: int = 12 * 3600,
        subject: str | None = None,
    ) -> str:
        """`subject`: the token's `sub` (a staff member's staff id); the client id when not given."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject or client_id,
            "azp": client_id,
            "iat": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            "scope": scopes if isinstance(scopes, str) else " ".join(scopes),
            "facilities": list(facilities),
        }
        return jwt.encode(claims, self._private_key(), algorithm="RS256", headers={"kid": self.kid})


class JwksServer:
    """Serves a JWKS file at `/jwks.json` on loopback, re-read on every request (so a test or an
    operator can rotate keys by rewriting the file)."""

    def __init__(self, jwks_path: Path, port: int = 0) -> None:
        path = Path(jwks_path)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.split("?")[0] not in ("/jwks.json", "/.well-known/jwks.json"):
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="jwks")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/jwks.json"

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
