"""Bearer JWT auth (OAuth2 client credentials): scopes and facility claims.

Keys come from the issuer's JWKS (`PMTCT_AUTH_JWKS_URL`, http or https). The key set is cached for
`auth_jwks_cache_seconds`; an unknown `kid` triggers a refetch (at most one per few seconds), so a
rotated-in key works at once and a rotated-out key stops working when the cache expires. While the
issuer is unreachable the last key set fetched stays in use, so an identity-provider outage does
not stop clinics that hold valid tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

import anyio
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .problems import Problem

log = logging.getLogger(__name__)

SCOPES = (
    "events:write",
    "clients:read",
    "worklist:read",
    "caseload:read",
    "contacts:write",
    "referrals:write",
    "referrals:read",
    "reports:read",
    "reports:submit",
    "admin",
)
#: scopes that read personal data (names, phone numbers, national ids): `admin` does not imply them,
#: so an operator's token reads them only if it was granted them by name
PERSONAL_DATA_SCOPES = frozenset({"clients:read", "caseload:read"})
ALL_FACILITIES = "*"


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    scopes: frozenset[str]
    facilities: frozenset[str] = field(default_factory=frozenset)
    #: the token's `sub`: for a staff member's app, her staff id (servicekit.staff)
    subject: str | None = None

    @property
    def national(self) -> bool:
        return ALL_FACILITIES in self.facilities

    def may_act_for(self, facility_id: str) -> bool:
        return self.national or facility_id in self.facilities

    def require_facility(self, facility_id: str) -> None:
        if not self.may_act_for(facility_id):
            raise Problem(403, "facility_forbidden", f"This client may not act for facility {facility_id!r}.")


class IssuerKeys(jwt.PyJWKClient):
    """The issuer's JWKS with one time-bounded cache. (PyJWT's `cache_keys` would add a per-`kid`
    cache that never expires, which keeps a rotated-out key valid until restart.)"""

    def __init__(self, jwks_url: str, cache_seconds: int) -> None:
        # The cooldown bounds refetches caused by unknown `kid`s, so forged tokens cannot flood the issuer.
        super().__init__(jwks_url, lifespan=cache_seconds, timeout=5, cooldown_duration=min(5, cache_seconds))
        self._last_good: jwt.PyJWKSet | None = None

    def get_jwk_set(self, refresh: bool = False) -> jwt.PyJWKSet:
        try:
            keys = super().get_jwk_set(refresh)
        except jwt.PyJWKClientConnectionError as exc:
            if self._last_good is None or self.jwk_set_cache is None:
                raise
            log.warning("issuer keys unreachable (%s); using the last key set for another cache period", exc)
            self.jwk_set_cache.put(self._last_good)  # retry after a cache period, not on every request
            return self._last_good
        self._last_good = keys
        return keys


class TokenVerifier:
    def __init__(self, jwks_url: str, issuer: str | None, audience: str | None, cache_seconds: int = 300) -> None:
        self.jwks = IssuerKeys(jwks_url, cache_seconds)
        self.issuer = issuer
        self.audience = audience

    def _verify(self, token: str) -> dict:
        key = self.jwks.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iat"], "verify_aud": self.audience is not None},
            leeway=30,
        )

    async def principal(self, token: str) -> Principal:
        try:
            claims = await anyio.to_thread.run_sync(self._verify, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Problem(503, "issuer_unreachable", f"Cannot fetch the issuer's keys: {exc}") from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            if isinstance(exc, jwt.DecodeError) and not isinstance(exc, jwt.InvalidSignatureError):
                # its message can be a codec's ("'utf-8' codec can't decode byte ..."): say it plainly
                raise _unauthorized("Invalid token: not a well-formed JWT.") from exc
            raise _unauthorized(f"Invalid token: {exc}") from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict) -> Principal:
    scope = claims.get("scope") or claims.get("scp") or ""
    scopes = scope.split() if isinstance(scope, str) else list(scope)
    facilities = claims.get("facilities") or []
    if isinstance(facilities, str):
        facilities = facilities.split()
    client_id = claims.get("azp") or claims.get("client_id") or claims.get("sub") or "unknown"
    subject = claims.get("sub")
    return Principal(
        client_id=str(client_id),
        scopes=frozenset(scopes),
        facilities=frozenset(map(str, facilities)),
        subject=str(subject) if subject is not None else None,
    )


def _unauthorized(detail: str) -> Problem:
    problem = Problem(401, "unauthorized", detail)
    problem.headers = {"WWW-Authenticate": 'Bearer realm="pmtct"'}
    return problem


#: declares the bearer token in /openapi.json (`security`); the header is read and checked below
_BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="A JWT from the programme's issuer.")


#: a dependency that only declares the bearer token (what a route reading the token itself takes)
DeclaredBearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


async def current_principal(request: Request, _declared: DeclaredBearer = None) -> Principal:
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("A bearer token is required (Authorization: Bearer <JWT>).")
    if verifier is None:
        raise Problem(503, "auth_not_configured", "This service has no token issuer configured.")
    return await verifier.principal(token.strip())


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def bearer_token(request: Request) -> str:
    """The caller's bearer token as sent (checked by `require` on the same route): what a service
    passes on when it forwards the caller's request to another service, which authorises it itself."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


BearerToken = Annotated[str, Depends(bearer_token)]


def require(*scopes: str):
    """Dependency: the caller holds every one of `scopes`; `admin` stands for any of them except
    the personal-data scopes (`PERSONAL_DATA_SCOPES`), which must be granted by name."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        missing = [s for s in scopes if s not in principal.scopes]
        if "admin" in principal.scopes:
            missing = [s for s in missing if s in PERSONAL_DATA_SCOPES]
        if missing:
            raise Problem(403, "insufficient_scope", f"This operation needs scope {' '.join(missing)!r}.")
        return principal

    return Depends(dependency)
