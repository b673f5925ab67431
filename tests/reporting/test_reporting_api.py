"""The reporting API's answers to bad input and to a browser: problem+json, never a 500."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
async def api(cohort_platform):
    async with httpx.AsyncClient(base_url=cohort_platform.url("reporting"), timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    "query, status, code",
    [
        ("period=2026-13", 422, "invalid_period"),
        ("period=last-month", 422, "invalid_period"),
        ("district=Atlantis", 404, "unknown_district"),
        ("facility_id=FAC-XX-999", 404, "unknown_facility"),
        ("country=ZZ", 404, "unknown_country"),
        ("facility_id=FAC-ZA-001&district=Kisumu", 422, "ambiguous_scope"),
    ],
)
async def test_bad_indicator_queries_get_a_specific_problem(api, issuer, query: str, status: int, code: str) -> None:
    reply = await api.get(f"/v1/indicators?{query}", headers=issuer.headers("reports:read", ["*"]))
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == code


async def test_reports_need_a_token_with_the_reports_scope(api, issuer) -> None:
    anonymous = await api.get("/v1/indicators")
    writer = await api.get("/v1/exports/dhis2", headers=issuer.headers("events:write", ["*"]))
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
    assert (writer.status_code, writer.json()["code"]) == (403, "insufficient_scope")


async def test_the_dashboard_without_a_token_explains_how_to_get_one(api) -> None:
    reply = await api.get("/")
    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("text/html")
    assert "reports:read" in reply.text and "pmtct token" in reply.text


async def test_a_token_in_the_address_is_not_read(api, issuer) -> None:
    """`/?token=` once signed a browser in; a token in an address ends in logs and browser history,
    so the address is not read: the sign-in page, and no cookie."""
    token = issuer.token("reports:read", ["FAC-KE-001"], client_id="kisumu-clinic")
    reply = await api.get(f"/?period=2026Q4&token={token}")
    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/sign-in">' in reply.text
    assert "set-cookie" not in reply.headers
    assert token not in reply.text
    page = await api.get("/?period=2026Q4", cookies={"pmtct_reports_token": token})
    assert page.status_code == 200
    assert "Kisumu County Referral Hospital" in page.text and "Gugulethu" not in page.text


async def test_the_dashboards_pages_declare_their_sign_in_page_and_the_api_its_problems(api, issuer) -> None:
    """What a browser page answers without a usable token is the sign-in page (text/html), and the
    OpenAPI document says so; the API's 401 / 403 stay problem+json, as the API answers them."""
    spec = (await api.get("/openapi.json")).json()
    for path, method in (("/", "get"), ("/sign-in", "post"), ("/push", "post")):
        responses = spec["paths"][path][method]["responses"]
        for status in ("401", "403"):
            assert set(responses[status]["content"]) == {"text/html"}, (path, status)
        assert "token" not in [p["name"] for p in spec["paths"][path][method].get("parameters", [])], path
    indicators = spec["paths"]["/v1/indicators"]["get"]
    for status in ("401", "403"):
        assert set(indicators["responses"][status]["content"]) == {"application/problem+json"}, status
    pushed = await api.post(
        "/push", content=b"period=2026-01", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert pushed.status_code == 401 and pushed.headers["content-type"].startswith("text/html")
    reader = issuer.token("reports:read", ["*"], client_id="programme-manager")
    not_a_submitter = await api.post(
        "/push",
        content=b"period=2026-01",
        headers={"content-type": "application/x-www-form-urlencoded"},
        cookies={"pmtct_reports_token": reader},
    )
    assert not_a_submitter.status_code == 403 and not_a_submitter.headers["content-type"].startswith("text/html")
    assert "reports:submit" in not_a_submitter.text


async def test_the_dashboard_signs_in_by_a_form_so_no_token_is_in_an_address(api, issuer) -> None:
    """`make run` prints the dashboard's address without a token (a token in an address ends in
    logs and browser history): the sign-in page posts it in a form and the cookie keeps it."""
    page = await api.get("/")
    assert '<form method="post" action="/sign-in">' in page.text and 'type="password"' in page.text
    token = issuer.token("reports:read", ["FAC-KE-001"], client_id="kisumu-clinic")
    signed_in = await api.post(
        "/sign-in",
        content=f"token={token}&next=/?period=2026Q4",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/?period=2026Q4"
    assert token not in signed_in.headers["location"]
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert (await api.get("/?period=2026Q4", cookies={"pmtct_reports_token": token})).status_code == 200
    elsewhere = await api.post(
        "/sign-in",
        content=f"token={token}&next=//evil.example",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert elsewhere.headers["location"] == "/"  # only a path of this site
    wrong = await api.post(
        "/sign-in",
        content=f"token={issuer.token('events:write', ['*'])}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert wrong.status_code == 403 and "reports:read" in wrong.text


async def test_a_token_without_the_reports_scope_does_not_open_the_dashboard(api, issuer) -> None:
    reply = await api.get("/", cookies={"pmtct_reports_token": issuer.token("events:write", ["*"])})
    assert reply.status_code == 403
    assert reply.headers["content-type"].startswith("text/html")
    assert "reports:read" in reply.text
