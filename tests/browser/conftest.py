"""A real browser (Debian's Chromium, driven by Playwright) against the live stack."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from deployments.settings import REPO_ROOT
from stack.local import LocalStack
from tests.browser.ui import PrefectUi
from tests.requirements import require

# Playwright's assertions wait 5 s by default. The UI's reads share two cores with the other
# xdist worker's stacks (make test), and on SQLite they can wait for the database's write lock.
expect.set_options(timeout=20_000)

# Git-ignored: every step of every browser test leaves a screenshot here.
SCREENSHOT_DIR = REPO_ROOT / "results" / "screenshots"


# Module scope, not session: Playwright's sync API keeps an event loop in the main thread while
# it runs, and Prefect's sync calls (State.result()) in later test modules would see it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's own browser download needs the internet; the system Chromium does not.
    chromium = shutil.which("chromium")
    require(chromium is not None, "Chromium", "apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if report.when == "call":
        item.call_failed = report.failed  # read by the fixtures below, for a failure screenshot
    return report


def _new_ui(browser: Browser, stack: LocalStack, request: pytest.FixtureRequest):
    context = browser.new_context(base_url=stack.ui_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    test_name = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    return context, PrefectUi(context.new_page(), SCREENSHOT_DIR / test_name)


@pytest.fixture
def anonymous_ui(browser: Browser, live_stack: LocalStack, request) -> Iterator[PrefectUi]:
    """A fresh browser profile that has not logged in."""
    context, ui = _new_ui(browser, live_stack, request)
    try:
        yield ui
    finally:
        if getattr(request.node, "call_failed", False):
            ui.shot("failure")
        context.close()


@pytest.fixture
def ui(anonymous_ui: PrefectUi, live_stack: LocalStack) -> PrefectUi:
    """The UI as a user sees it after logging in where the server asks for credentials."""
    if live_stack.auth_string:
        anonymous_ui.open("/login")
        anonymous_ui.log_in(live_stack.auth_string)
        anonymous_ui.page.wait_for_url(re.compile(r"^(?!.*/login)"))
    return anonymous_ui
