"""Token validation through the issuer's JWKS, as Keycloak serves it in compose: a local JWKS HTTP
server whose key set the test rotates, and a service built by the platform's app factory, in
process, with a short key cache. Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import jwt
from fastapi import APIRouter

from pmtct_tools.devissuer import DevIssuer, JwksServer
from reporting.settings import Settings
from servicekit.app import create_app
from servicekit.auth import Principal, require

CACHE_SECONDS = 1
router = APIRouter()


@router.get("/v1/whoami")
async def whoami(principal: Principal = require("reports:read")) -> dict:
    return {"client_id": principal.client_id}


def publish_keys(jwks_path: Path, *issuers: DevIssuer) -> None:
    keys = [key for issuer in issuers for key in json.loads(issuer.jwks_path.read_text())["keys"]]
    jwks_path.write_text(json.dumps({"keys": keys}))


def bearer(issuer: DevIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint('ministry-dashboard', 'reports:read', ['*'])}"}


async def after_the_cache_expires() -> None:
    await asyncio.sleep(CACHE_SECONDS + 0.2)


async def test_tokens_follow_the_issuers_key_rotation_without_a_restart(settings_env, monkeypatch, tmp_path):
    settings_env("reporting")
    old, new = DevIssuer(tmp_path / "old").ensure(), DevIssuer(tmp_path / "new").ensure()
    jwks_path = tmp_path / "jwks.json"
    publish_keys(jwks_path, old)
    server = JwksServer(jwks_path).start()
    monkeypatch.setenv("PMTCT_AUTH_JWKS_URL", server.url)
    monkeypatch.setenv("PMTCT_AUTH_JWKS_CACHE_SECONDS", str(CACHE_SECONDS))
    app = create_app(Settings(), title="reporting (auth probe)", description="", routers=[router])
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
        ):
            assert (await client.get("/v1/whoami", headers=bearer(old))).status_code == 200
            refused = await client.get("/v1/whoami", headers=bearer(new))
            assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"

            forged = jwt.encode(  # the old key's kid, signed by another key
                jwt.decode(bearer(old)["Authorization"][7:], options={"verify_signature": False}),
                new._private_key(),
                algorithm="RS256",
                headers={"kid": old.kid},
            )
            assert (await client.get("/v1/whoami", headers={"Authorization": f"Bearer {forged}"})).status_code == 401

            publish_keys(jwks_path, old, new)  # the issuer rotates a new key in
            await after_the_cache_expires()
            assert (await client.get("/v1/whoami", headers=bearer(new))).status_code == 200
            assert (await client.get("/v1/whoami", headers=bearer(old))).status_code == 200

            publish_keys(jwks_path, new)  # ... and the old one out
            await after_the_cache_expires()
            rotated_out = await client.get("/v1/whoami", headers=bearer(old))
            assert rotated_out.status_code == 401
            assert "signing key" in rotated_out.json()["detail"]
            assert (await client.get("/v1/whoami", headers=bearer(new))).status_code == 200

            server.stop()  # the issuer goes down: keys already fetched keep working
            await after_the_cache_expires()
            assert (await client.get("/v1/whoami", headers=bearer(new))).status_code == 200
            assert (await client.get("/v1/whoami", headers=bearer(old))).status_code == 401
    finally:
        server.stop()
