"""The dashboard at `GET /`: server-rendered HTML with inline SVG charts, no scripts.

How a browser gets in: the dashboard needs a `reports:read` token like the API. A browser cannot
add an `Authorization` header by itself, so the sign-in page has a form that posts the token
(`POST /sign-in`, in the body: a token in an address ends in server logs and browser history);
the service verifies it, stores it in an HttpOnly, SameSite=Strict cookie and redirects to the
dashboard. Later requests use the cookie until the token expires; then the page asks for a new one.
An address never carries a token (`/?token=` is not read: a login portal posts the form too). A
reverse proxy that adds the header works as well.

What it shows, for a period (the last complete month unless one is chosen) and a place (a facility,
district, province or country; the narrowest chosen applies): the MER tiles, the cascade, the
facilities of the place sorted by their gap, today's overdue and lost-to-follow-up counts per
facility, the MER and programme tables, trends, the downloads, and (for a national token with
`reports:submit`) the DHIS2 push with the last import summary of the period. It is laid out for a
phone too: at 390 px every table row becomes a card, nothing scrolls sideways.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.auth import DeclaredBearer, Principal, current_principal
from servicekit.facilities import Facility, FacilityRegistry
from servicekit.problems import Problem

from . import charts, programme, programme_store, queries, submissions
from .indicators import (
    CASCADE,
    MTCT_EARLY,
    REFERRAL_COMPLETION,
    DataSet,
    Indicator,
    evaluate,
    of_data_set,
    percent,
    sum_counts,
)
from .periods import Period, PeriodKind, last_complete
from .settings import Settings

COOKIE = "pmtct_reports_token"
#: the cascade's stages about women (ANC1, known status, HIV-positive, on ART); the rest are infants
WOMEN_STAGES = 4
SCOPE = "reports:read"

templates = Environment(loader=PackageLoader("reporting", "templates"), autoescape=select_autoescape())


async def browser_principal(request: Request, _declared: DeclaredBearer = None) -> Principal:
    """The caller of a dashboard page: from the Authorization header, else the dashboard cookie.
    (`_declared`: the bearer token in /openapi.json, as `servicekit.auth.current_principal` has it.)"""
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


async def sign_in_form(request: Request, secure: bool) -> RedirectResponse:
    """`POST /sign-in`: the token typed or pasted into the sign-in form (never in an address), kept
    in the cookie; then the dashboard (`next`, a path of this site, or `/`)."""
    try:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    except ValueError as exc:  # more fields than the form has: not a sign-in (it was a 500)
        raise Problem(400, "malformed_form", "The sign-in form has two fields: token and next.") from exc
    token = (form.get("token") or [""])[0].strip()
    if not token:
        raise Problem(401, "unauthorized", "Paste a reports:read token into the form.")
    target = (form.get("next") or ["/"])[0]
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    return await _keep(request, token, secure, target)


async def _keep(request: Request, token: str, secure: bool, target: str) -> RedirectResponse:
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise Problem(503, "auth_not_configured", "This service has no token issuer configured.")
    principal = await verifier.principal(token)
    if SCOPE not in principal.scopes and "admin" not in principal.scopes:
        raise Problem(403, "insufficient_scope", f"The dashboard needs scope {SCOPE!r}.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")
    return response


def signed_out_page(detail: str, status: int) -> HTMLResponse:
    return HTMLResponse(templates.get_template("signed_out.html").render(detail=detail), status_code=status)


@dataclass(frozen=True)
class Filters:
    period: Period
    facility_id: str | None = None
    district: str | None = None
    province: str | None = None
    country: str | None = None
    #: no period was asked for: the last complete month
    period_defaulted: bool = False

    def narrowest(self) -> dict[str, str | None]:
        """The place the page shows: the narrowest one chosen (the form sends every select)."""
        for name in ("facility_id", "district", "province", "country"):
            value = getattr(self, name)
            if value:
                return {name: value}
        return {}

    def query(self, period: Period | None = None, **extra: str) -> str:
        return urlencode({"period": (period or self.period).id, **self.narrowest(), **extra})


@dataclass(frozen=True)
class FacilityRow:
    facility: Facility
    anc1: int
    known: int
    positive: int
    on_art: int
    overdue: int
    lost: int

    @property
    def gap(self) -> int:
        """Women who did not get through the cascade: no known status at ANC1, or HIV-positive and not on ART."""
        return (self.anc1 - self.known) + (self.positive - self.on_art)

    @property
    def known_pct(self) -> float | None:
        return percent(self.known, self.anc1)

    @property
    def art_pct(self) -> float | None:
        return percent(self.on_art, self.positive)


def may_push(principal: Principal, settings: Settings) -> bool:
    scopes = principal.scopes
    return bool(settings.dhis2_url) and principal.national and ("reports:submit" in scopes or "admin" in scopes)


async def page(
    session: AsyncSession,
    principal: Principal,
    registry: FacilityRegistry,
    filters: Filters,
    settings: Settings,
) -> str:
    """The whole page for the filters."""
    today = settings.clock.today()
    visible = [f for f in registry.all() if principal.may_act_for(f.facility_id)]
    scope = queries.resolve_scope(registry, principal, **filters.narrowest())
    per_facility = await queries.counts_by_facility(session, scope, filters.period)
    totals = sum_counts(per_facility.values())
    status = await queries.followup_status(session, scope.facility_ids)
    comparison = sorted(
        (
            FacilityRow(
                f,
                anc1=(c := per_facility[f.facility_id])["anc1"],
                known=c["stat_known"],
                positive=c["stat_pos"],
                on_art=c["art_total"],
                overdue=status.get(f.facility_id, (0, 0))[0],
                lost=status.get(f.facility_id, (0, 0))[1],
            )
            for f in scope.facilities
        ),
        key=lambda r: (-r.gap, -r.overdue - r.lost, r.facility.name),
    )
    series = await queries.monthly_totals(
        session, scope, filters.period.previous_months(settings.dashboard_trend_months)
    )

    def trend(indicator: Indicator) -> list[tuple[str, float | None]]:
        return [(m.start.strftime("%b %y"), evaluate(counts, [indicator])[0].value) for m, counts in series]

    def link(period: Period) -> str:
        return f"/?{filters.query(period)}"

    def export(path: str, data_set: str) -> str:
        return f"{path}?{filters.query(data_set=data_set)}"

    last_push = None
    if may_push(principal, settings):
        shown = await submissions.history_public(session, registry, settings, None, filters.period, limit=1)
        last_push = shown[0] if shown else None
    # the Mentor Mothers' own figures (reporting.programme), for the same place and period
    mentor = programme.figures(
        await programme_store.counts(session, scope.facility_ids, filters.period.start, filters.period.end),
        settings.programme_reached_contacts,
    )
    stages = [(label, totals[key]) for label, key in CASCADE]
    # each women's stage as a share of the one before (the same women, by their ANC1); the infant stages
    # follow births and samples of the period, another group, so they carry no percentage
    stage_rows = [
        (label, n, percent(n, stages[i - 1][1]) if 0 < i < WOMEN_STAGES else None)
        for i, (label, n) in enumerate(stages)
    ]
    quick = [
        ("last month", last_complete(today, PeriodKind.month)),
        ("last fiscal quarter", last_complete(today, PeriodKind.fiscal_quarter)),
        ("last fiscal year", last_complete(today, PeriodKind.fiscal_year)),
    ]
    return templates.get_template("dashboard.html").render(
        filters=filters,
        scope=scope,
        facilities=visible,
        districts=sorted({f.district for f in visible}),
        provinces=sorted({f.province for f in visible}),
        countries=sorted({f.country for f in visible}),
        mer=evaluate(totals, of_data_set(DataSet.mer)),
        programme=evaluate(totals, of_data_set(DataSet.programme)),
        cascade=charts.cascade_chart(stages),
        stage_rows=stage_rows,
        mentor=mentor,
        comparison=comparison,
        mtct_trend=charts.trend_chart(trend(MTCT_EARLY), "Early MTCT rate by month"),
        referral_trend=charts.trend_chart(trend(REFERRAL_COMPLETION), "Referral completion by month"),
        quick=quick,
        link=link,
        export=export,
        may_push=may_push(principal, settings),
        last_push=last_push,
        today=today,
    )
