"""The dashboard of the MER cohort (`mer_cohort.py`) in headless Chromium: it opens on the last complete
month, the filters change the figures, facilities are sorted by their gap with today's overdue and
lost counts, an EID coverage above 100 % is explained, the push shows its import summary, and at
390 px nothing scrolls sideways. Screenshots at 1400 px and 390 px go to tests/artifacts/.

Figures are the hand counts of `test_mer_cohort.py` (FY2026), by facility:
A (FAC-LS-001): ANC1 M1 10 + M2 6 + M3 4 + M14 2 = 22, known 20 (M14's results are late), HIV+ M2 6 + M3 4
   = 10, on ART 10: gap 2 + 0 = 2; overdue: one M2 mother's viral load; lost: F8
B (FAC-LS-002): ANC1 M4 5 + M5 3 + M6 3 = 11, known 6, HIV+ 0: gap 5; overdue: one M4 mother's ANC1 HIV test
   (an M5 mother's, tested after it, is not)
C (FAC-LS-003): ANC1 M7 4 + M8 3 + M9 3 + M10 2 + M19 2 = 14, known 11, HIV+ M9 3 + M10 2 + M19 2 = 7, on ART
   M10 2 + M19 2 = 4: gap 3 + 3 = 6; overdue: M10's two infants
D (FAC-SZ-001): ANC1 M13 4, known 4: gap 0; lost: an M12 mother
"""

from __future__ import annotations

import asyncio
import json

import mer_cohort as cohort
import pytest
from browser import headless

pytestmark = pytest.mark.e2e


def tile(browser, code: str) -> str:
    return browser.evaluate(f"document.querySelector('#tile-{code} .fig').textContent.trim()")


def rows(browser) -> list[list[str]]:
    return browser.evaluate(
        "[...document.querySelectorAll('#comparison tbody tr')].map(r => [r.id.replace('facility-', ''),"
        " ...[...r.querySelectorAll('td.num')].map(td => td.textContent.trim())])"
    )


#: the words of the tables' headers that the browser broke over two lines ("Numerat" / "or")
BROKEN_HEADER_WORDS = """
[...document.querySelectorAll('thead th')].flatMap(th => [...th.childNodes]
  .filter(n => n.nodeType === Node.TEXT_NODE)
  .flatMap(n => [...n.textContent.matchAll(/\\S+/g)].map(m => {
    const r = document.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
    return [m[0], r.getClientRects().length];
  })))
  .filter(([, lines]) => lines > 1).map(([word]) => word)
"""


def choose(browser, name: str, value: str) -> None:
    """Pick a value in one select of the filter form, clear the others, and submit it as a user would."""
    browser.submit(
        "(() => { const f = document.querySelector('#filters');"
        " for (const s of f.querySelectorAll('select')) s.value = '';"
        f" f.querySelector('[name={name}]').value = {value!r}; f.querySelector('button').click(); }})()"
    )


def _browse(served, profile, artifacts) -> dict:
    token = served.issuer.token("reports:read reports:submit", ["*"], client_id="programme-manager")
    seen: dict = {}
    with headless(profile) as browser:
        # signed in as a person does: the sign-in page, the token pasted into its form
        browser.open(f"{served.url}/", 1400)
        seen["sign_in"] = browser.evaluate("document.querySelector('h2').textContent")
        browser.submit(f"document.querySelector('#token').value = {json.dumps(token)}; document.forms[0].submit()")
        seen["opened"] = browser.evaluate("document.querySelector('#showing').textContent")
        seen["url"] = browser.evaluate("location.pathname + location.search")
        browser.open(f"{served.url}/?period=FY2026", 1400)
        seen["all"] = (tile(browser, "PMTCT_STAT"), tile(browser, "PMTCT_ART"), tile(browser, "PMTCT_EID"))
        seen["eid_note"] = browser.evaluate("document.querySelector('#note-PMTCT_EID')?.textContent ?? ''")
        seen["rows"] = rows(browser)
        seen["comparison_head"] = browser.evaluate(
            "[...document.querySelectorAll('#comparison thead th')].map(th => th.textContent.trim())"
        )
        seen["overdue_note"] = browser.evaluate("document.querySelector('#overdue-note').textContent")
        seen["broken_words"] = browser.evaluate(BROKEN_HEADER_WORDS)
        seen["mentor"] = browser.evaluate(
            "['#mm-interactions', '#mm-reached'].map(id => document.querySelector(id).textContent)"
        )
        browser.screenshot(artifacts / "dashboard-1400.png")
        choose(browser, "district", "Leribe")
        seen["leribe"] = (tile(browser, "PMTCT_STAT"), tile(browser, "PMTCT_ART"), [r[0] for r in rows(browser)])
        choose(browser, "country", "SZ")
        seen["eswatini"] = (tile(browser, "PMTCT_STAT"), [r[0] for r in rows(browser)])
        choose(browser, "province", "Central")
        seen["central"] = (tile(browser, "PMTCT_STAT"), [r[0] for r in rows(browser)])
        browser.open(f"{served.url}/?period=FY2026", 390, 844)
        seen["phone_width"] = browser.evaluate("document.documentElement.scrollWidth")
        seen["phone_table"] = browser.evaluate("getComputedStyle(document.querySelector('#comparison thead')).display")
        seen["phone_stages"] = browser.evaluate(
            "[...document.querySelectorAll('#cascade ol.stages li')]"
            ".map(li => li.textContent.replace(/\\s+/g, ' ').trim())"
        )
        seen["phone_chart"] = browser.evaluate("getComputedStyle(document.querySelector('#cascade svg')).display")
        browser.screenshot(artifacts / "dashboard-390.png")
        # the push, a dry run, from the page
        browser.open(f"{served.url}/?period=FY2026", 1400)
        browser.submit("document.querySelector('#push button').click()")
        seen["pushed"] = browser.evaluate("document.querySelector('#last-push').textContent")
    return seen


@pytest.fixture(scope="module")
async def browsed(mer_served, tmp_path_factory, artifacts):
    profile = tmp_path_factory.mktemp("chromium")
    return await asyncio.to_thread(_browse, mer_served, profile, artifacts)


def test_it_opens_on_the_last_complete_month_without_the_token_in_the_address(browsed) -> None:
    assert browsed["sign_in"] == "A reports token is needed"
    # the service's today is 2026-10-15
    assert "2026-09 (2026-09-01 to 2026-09-30, the last complete month)" in browsed["opened"]
    assert browsed["url"] == "/"


def test_the_filters_change_the_figures(browsed) -> None:
    # all: PMTCT_STAT 41 / 51, PMTCT_ART 14 / 17, PMTCT_EID 27 / 23
    assert browsed["all"] == ("41 / 51", "14 / 17", "27 / 23")
    # Leribe is C: known 11 of 14, on ART 4 of 7
    assert browsed["leribe"] == ("11 / 14", "4 / 7", [cohort.C])
    # Eswatini is D: 4 of 4
    assert browsed["eswatini"] == ("4 / 4", [cohort.D])
    # Central is A and B: known 20 + 6 of 22 + 11; B's gap 5 before A's 2
    assert browsed["central"] == ("26 / 33", [cohort.B, cohort.A])


def test_facilities_are_sorted_by_gap_with_todays_overdue_and_lost(browsed) -> None:
    # columns: gap, ANC1, known (%), HIV+, on ART (%), overdue, lost
    assert browsed["rows"] == [
        [cohort.C, "6", "14", "11 (78.6%)", "7", "4 (57.1%)", "2", "0"],
        [cohort.B, "5", "11", "6 (54.5%)", "0", "0", "1", "0"],
        [cohort.A, "2", "22", "20 (90.9%)", "10", "10 (100.0%)", "1", "1"],
        [cohort.D, "0", "4", "4 (100.0%)", "0", "0", "0", "1"],
    ]


def test_the_overdue_column_says_it_counts_overdue_tests_not_a_worklists_items(browsed) -> None:
    # the newcomer read "Overdue 3" for FAC-ZA-001 beside a worklist of 47 overdue items for 20 clients
    assert browsed["comparison_head"][6] == "Overdue tests*"
    note = " ".join(browsed["overdue_note"].split())
    assert note.startswith(
        "* Overdue tests: infants with an infant HIV test (NAT, antibody test), and mothers with an HIV test or"
        " retest or a viral load"
    )
    assert "each counted once" in note and "A Mentor Mother's worklist counts items, and more kinds of them" in note


def test_no_table_header_breaks_a_word_at_1400_px(browsed) -> None:
    assert browsed["broken_words"] == []


def test_a_coverage_above_100_percent_is_explained(browsed) -> None:
    assert "Above 100 %" in browsed["eid_note"] and "proxy" in browsed["eid_note"]


def test_on_a_phone_nothing_scrolls_sideways(browsed, artifacts) -> None:
    assert browsed["phone_width"] <= 390
    assert browsed["phone_table"] == "none"  # rows are cards
    assert browsed["phone_chart"] == "none"  # too small to read: the stage list says it
    # the cascade as a list: ANC1 51, known 41 (80.4 %), HIV+ 17 of 41 (41.5 %), on ART 14 of 17 (82.4 %); HEI born
    # in FY2026: M2 7 + M3 5 + M9 3 + M10 2 + M7 4 + M13 1 = 22 (M11's infant was born before follow-up, in FY2026
    # too: 23); first NAT by 2 months 23
    assert browsed["phone_stages"] == [
        "ANC1 51",
        "Known status 41 (80.4% of the stage before)",
        "HIV-positive 17 (41.5% of the stage before)",
        "On ART in pregnancy 14 (82.4% of the stage before)",
        "HIV-exposed infants born 23",
        "First NAT by 2 months 23",
    ]
    for name in ("dashboard-1400.png", "dashboard-390.png"):
        assert (artifacts / name).stat().st_size > 20_000


def test_the_push_shows_its_import_summary(browsed) -> None:
    # a dry run of FY2026's MER data set: 156 values at each of the 4 facilities
    text = " ".join(browsed["pushed"].split())
    assert "Last push of FY2026 (mer, dry run): SUCCESS" in text and "imported 624" in text


def test_the_mentor_mothers_figures_are_in_the_programme_section(browsed) -> None:
    # the cohort's clinics recorded no Mentor Mother contacts (docs/mentor-mothers.md): none counted
    assert browsed["mentor"] == ["0", "0"]
