"""The dashboard at `GET /`: server-rendered HTML with inline SVG charts, no scripts.

How a browser gets in: the dashboard needs a `reports:read` token like the API. A browser cannot
add an `Authorization` header by itself, so the page also takes the token once as `?token=` (from
`pmtct token --scope reports:read ...`, or handed over by a login portal), verifies it, stores it
in an HttpOnly, SameSite=Strict cookie and redirects to the same address without it, so the token
does not linger in the address bar or history. Later requests use the cookie until the token
expires; then the page asks for a new one. A reverse proxy that adds the header works as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.auth import Principal, current_principal
from servicekit.facilities import FacilityRegistry
from servicekit.problems import Problem

from . import charts, queries
from .indicators import CASCADE, COUNTS, INDICATORS, MTCT_EARLY, REFERRAL_COMPLETION, Indicator, evaluate, sum_counts
from .periods import Period

COOKIE = "pmtct_reports_token"
SCOPE = "reports:read"

templates = Environment(loader=PackageLoader("reporting", "templates"), autoescape=select_autoescape())


async def browser_principal(request: Request) -> Principal:
    """The caller of a dashboard page: from the Authorization header, else the dashboard cookie."""
    token = request.cookies.get(COOKIE)
    if "authorization" not in request.headers and token:
        verifier = getattr(request.app.state, "token_verifier", None)
        if verifier is None:
            raise Problem(503, "auth_not_configured", "This service has no token issuer configured.")
        principal = await verifier.principal(token)
    else:
        principal = await current_principal(request)
    if SCOPE not in principal.scopes and "admin" not in principal.scopes:
        raise Problem(403, "insufficient_scope", f"The dashboard needs scope {SCOPE!r}.")
    return principal


async def sign_in(request: Request, token: str, secure: bool) -> RedirectResponse:
    """Check a token handed over in the address, keep it in a cookie, and drop it from the address."""
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise Problem(503, "auth_not_configured", "This service has no token issuer configured.")
    principal = await verifier.principal(token)
    if SCOPE not in principal.scopes and "admin" not in principal.scopes:
        raise Problem(403, "insufficient_scope", f"The dashboard needs scope {SCOPE!r}.")
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    target = request.url.path + (f"?{'&'.join(f'{k}={v}' for k, v in rest)}" if rest else "")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")
    return response


def signed_out_page(detail: str, status: int) -> HTMLResponse:
    return HTMLResponse(templates.get_template("signed_out.html").render(detail=detail), status_code=status)


@dataclass(frozen=True)
class Filters:
    facility_id: str | None
    district: str | None
    period: Period


async def page(
    session: AsyncSession,
    principal: Principal,
    registry: FacilityRegistry,
    filters: Filters,
    trend_months: int,
    today: date,
) -> str:
    """The whole page for the filters: the cascade, every indicator, and trends up to the period's end."""
    visible = [f for f in registry.all() if principal.may_act_for(f.facility_id)]
    scope = queries.resolve_scope(registry, principal, facility_id=filters.facility_id, district=filters.district)
    cells = await queries.counts_by_cell(session, scope.facility_ids, filters.period.start, filters.period.end)
    totals = sum_counts(cells.values())
    series = await queries.monthly_totals(session, scope, filters.period.previous_months(trend_months))

    def trend(indicator: Indicator) -> list[tuple[str, float | None]]:
        return [(m.start.strftime("%b %y"), evaluate(counts, [indicator])[0].value) for m, counts in series]

    stages = [(label, totals[key]) for label, key in CASCADE]
    return templates.get_template("dashboard.html").render(
        filters=filters,
        scope=scope,
        districts=sorted({f.district for f in visible}),
        facilities=visible,
        values=evaluate(totals, INDICATORS),
        labels={key: count.label for key, count in COUNTS.items()},
        cascade=charts.cascade_chart(stages),
        stages=stages,
        mtct_trend=charts.trend_chart(trend(MTCT_EARLY), "Early MTCT rate by month"),
        referral_trend=charts.trend_chart(trend(REFERRAL_COMPLETION), "Referral completion by month"),
        today=today,
    )
