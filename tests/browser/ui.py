"""The Prefect UI driven the way a user drives it, with a screenshot of every step."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.reports import RESULTS_DIR

# A run goes from "scheduled" to a final state through the worker's polling and a new process.
RUN_TIMEOUT_MS = 120_000


class PrefectUi:
    def __init__(self, page: Page, screenshot_dir: Path) -> None:
        self.page = page
        self.screenshot_dir = screenshot_dir
        self.requests: list[str] = []
        page.on("request", lambda request: self.requests.append(f"{request.method} {request.url}"))

    def shot(self, step: str) -> Path:
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.screenshot_dir / f"{step}.png"
        self.page.screenshot(path=path)
        return path

    def open(self, path: str) -> None:
        self.page.goto(path, wait_until="domcontentloaded")

    def log_in(self, auth_string: str) -> None:
        """Answer the UI's login form, as a user with the server's basic-auth credentials."""
        self.page.get_by_placeholder("admin:pass").fill(auth_string)
        self.page.get_by_role("button", name="Login").click()

    def open_deployment(self, flow_name: str, deployment_name: str) -> None:
        """From the deployments list, open a deployment the way a user finds it."""
        self.open("/deployments")
        row = self.page.locator("tr", has_text=deployment_name).filter(has_text=flow_name)
        # The row also links to the flow, whose name can equal the deployment's: pick the
        # link that leads to a deployment page.
        deployment_link = row.locator("a[href*='/deployments/deployment/']")
        deployment_link.filter(
            has_text=re.compile(rf"^\s*{re.escape(deployment_name)}\s*$")
        ).click()
        expect(self.page).to_have_url(re.compile(r"/deployments/deployment/[0-9a-f-]+"))

    def choose_run(self, kind: str) -> None:
        """The deployment page's Run menu: "Quick run" or "Custom run"."""
        self.page.get_by_role("button", name="Run", exact=True).click()
        self.page.get_by_text(kind, exact=True).click()

    def create_run(self, action: Callable[[], None]) -> str:
        """Do `action` (Submit, Quick run), follow the "View run" link of the toast that confirms
        the new run, and return the run id.

        On embedded SQLite the server sometimes answers the create call with 503 (another writer
        held the database: see "Embedded SQLite under load" in docs/reliability.md). Prefect's
        client retries that by itself; the UI shows "Something went wrong" instead, and a user
        clicks again. So does this helper, once, and counts it in results/ui-create-retries.json.
        """
        action()
        # The UI mounts two toast containers; the visible toast is the last one.
        view_run = self.page.locator(".toast-flow-run-create__button").last
        went_wrong = self.page.get_by_text("Something went wrong").last
        expect(view_run.or_(went_wrong)).to_be_visible(timeout=30_000)
        if not view_run.is_visible():
            self.shot("create-refused-503")
            _count_create_retry()
            self.page.keyboard.press("Escape")
            action()
        view_run.click()
        expect(self.page).to_have_url(re.compile(r"/runs/flow-run/[0-9a-f-]+"))
        return self.page.url.rsplit("/", 1)[-1].split("?")[0]

    def expect_run_state(self, state: str) -> None:
        badge = self.page.locator(".state-badge").first
        expect(badge).to_have_text(state, timeout=RUN_TIMEOUT_MS)

    def open_tab(self, name: str) -> None:
        self.page.get_by_text(name, exact=True).click()

    def use_json_parameters(self, parameters_json: str) -> None:
        """Switch the run form's parameters to JSON input and type `parameters_json`."""
        self.page.locator(".flow-run-create-form-v2__header .p-icon-button-menu button").click()
        self.page.get_by_text("Use JSON input").first.click()
        self.page.locator("textarea.p-code-input__textarea").fill(parameters_json)

    def posted_to(self, url_part: str) -> list[str]:
        return [r for r in self.requests if r.startswith("POST") and url_part in r]


def _count_create_retry() -> None:
    path = RESULTS_DIR / "ui-create-retries.json"
    count = json.loads(path.read_text())["retries"] if path.exists() else 0
    RESULTS_DIR.mkdir(exist_ok=True)
    path.write_text(json.dumps({"retries": count + 1}) + "\n")
