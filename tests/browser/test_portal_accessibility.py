"""axe-core on every step of the portal, and on the 404 page: no serious or critical violation.

axe-core comes bundled in the ``axe-playwright-python`` package (no network, no npm); it runs
inside the page through Playwright, which the page's Content-Security-Policy does not restrict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Server
from tests.browser.steps import (
    UPLOAD_TIMEOUT_MS,
    accept,
    open_portal,
    record,
    screenshot,
    wait_for_camera,
    wait_for_step,
)

pytestmark = pytest.mark.slow

BLOCKING = ("serious", "critical")


def assert_accessible(page: Any, where: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations = [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + ", ".join(str(node["target"]) for node in violation["nodes"])
        for violation in results.response["violations"]
        if violation["impact"] in BLOCKING
    ]
    assert not violations, f"axe on the {where}:\n" + "\n".join(violations)
    # No horizontal scrolling on a 360 px wide phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360, where


def test_every_portal_step_passes_axe(server: Server, page: Any, artifacts: Path) -> None:
    collector_id = server.collector(
        # A very light brand colour: the hardest case for button text and focus rings.
        brand={"name": "Lemon & Co", "primary_color": "#FFF9C4"},
        script=[{"key": "taste", "prompt": "How does it taste?", "max_seconds": 5}],
    )
    invitation = server.invite(collector_id, name="Chidi")

    open_portal(page, invitation["link"])
    wait_for_step(page, "welcome")
    assert_accessible(page, "welcome step")

    page.get_by_role("button", name="Get started").click()
    wait_for_step(page, "consent")
    page.get_by_role("button", name="Agree and continue").click()  # with its error showing
    page.locator("#consent-error").wait_for(state="visible")
    assert_accessible(page, "consent step")
    page.get_by_label("I have read and agree to the text above.").check()
    page.get_by_role("button", name="Agree and continue").click()

    wait_for_step(page, "record")
    wait_for_camera(page)
    page.get_by_role("button", name="Upload a file instead").click()  # the fallback too
    assert_accessible(page, "recording step")
    record(page, stop_after_ms=1500)
    assert_accessible(page, "recording step, reviewing the take")

    # Hold the upload back so the upload step stays on screen while axe looks at it.
    page.route("**/uploads/**", lambda route: route.abort("internetdisconnected"))
    accept(page)
    wait_for_step(page, "upload")
    page.locator("#upload-list li[data-state='retrying']").wait_for(timeout=30_000)
    assert_accessible(page, "upload step")
    screenshot(page, artifacts, "10-upload-retrying")
    page.unroute("**/uploads/**")
    page.evaluate("window.dispatchEvent(new Event('online'))")  # cut the retry wait short

    wait_for_step(page, "thanks", timeout=UPLOAD_TIMEOUT_MS)
    assert_accessible(page, "thank-you step")
    page.get_by_role("button", name="Withdraw my consent").click()
    wait_for_step(page, "withdraw")
    assert_accessible(page, "withdraw step")
    page.get_by_role("button", name="Withdraw and delete my videos").click()
    wait_for_step(page, "withdrawn")
    assert_accessible(page, "withdrawn step")
    assert server.submission(invitation["submission"]["id"])["status"] == "withdrawn"
    # The link stops working: a reload shows the neutral 404 page.
    response = page.reload()
    assert response is not None and response.status == 404


def test_the_not_found_page_passes_axe(server: Server, page: Any, artifacts: Path) -> None:
    response = page.goto(f"{server.base_url}/r/no-such-invite-token")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", name="This link doesn't work").is_visible()
    assert_accessible(page, "404 page")
    screenshot(page, artifacts, "11-not-found")
