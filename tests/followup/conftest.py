"""The follow-up service in-process, one per test module (see `followup_support`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from followup_support import FollowupService, service_settings

from followup.main import build_app
from pmtct_tools.testing import Infra, TestIssuer


@pytest.fixture(scope="module")
async def followup(migrated: Infra, issuer: TestIssuer) -> AsyncIterator[FollowupService]:
    settings = service_settings(migrated, issuer)
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://followup", timeout=60) as http:
            sim = settings.model_copy(update={"timer_settle_s": 0.0})
            yield FollowupService(http, settings, sim, app.state.runtime.sessions, issuer, migrated)
