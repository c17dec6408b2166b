"""What a user does in the Prefect UI, in a real browser: find the deployments, run them, see
their logs and artifacts, get a clear refusal for bad input, log in where auth is on, and
switch a schedule off, which plan shows as drift until apply."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from tests.browser.ui import PrefectUi
from tests.live_stack import run_artifacts, unique, wait_until
from tests.plan_cli import applied, changes, plan_json

# The runs through the UI on the stack `make up` starts by default: PostgreSQL, here with basic
# auth on as in production (the `ui` fixture logs in). The login test runs on both stacks.
on_the_make_up_stack = pytest.mark.parametrize("live_stack", ["postgres"], indirect=True)


def _runs_of(api, full_name: str) -> list:
    deployment = api.read_deployment_by_name(full_name)
    return api.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    )


@on_the_make_up_stack
def test_deployments_page_shows_the_five_minute_schedule(ui: PrefectUi) -> None:
    ui.open("/deployments")
    greeting_row = ui.page.locator("tr", has_text="greeting-schedule")
    expect(greeting_row).to_contain_text("say-hello")
    expect(greeting_row).to_contain_text("Every 5 minutes")
    expect(ui.page.locator("tr", has_text="compute-squares")).to_be_visible()
    ui.shot("deployments")

    ui.open_deployment("say-hello", "greeting-schedule")
    # The deployment page labels a schedule by its slug and says what it is on hover. (Matching
    # any "Every 5 minutes" text here could hit the list page still shown while it loads.)
    schedule_card = ui.page.locator(".deployment-schedule-card")
    expect(schedule_card).to_have_count(1)
    expect(schedule_card).to_contain_text("every-5-minutes")
    schedule_card.get_by_text("every-5-minutes").hover()
    expect(ui.page.get_by_role("tooltip")).to_contain_text("Every 5 minutes")
    ui.shot("greeting-schedule")


@on_the_make_up_stack
def test_custom_run_greets_browser_in_its_logs(ui: PrefectUi, api) -> None:
    run_name = unique("browser-run")
    ui.open_deployment("say-hello", "greeting-schedule")
    ui.choose_run("Custom run")
    ui.page.locator(".flow-run-name-input input").fill(run_name)
    ui.page.locator(".schema-form-property-string textarea").fill("Browser")
    ui.shot("custom-run-form")
    run_id = ui.create_run(ui.page.get_by_role("button", name="Submit").click)
    expect(ui.page.get_by_text(run_name).first).to_be_visible()
    ui.expect_run_state("Completed")
    # Logs reach the server in batches after the run ends: the UI shows them once they arrive.
    greeting_line = ui.page.get_by_text("Hello, Browser!").first
    expect(greeting_line).to_be_visible(timeout=60_000)
    greeting_line.scroll_into_view_if_needed()
    ui.shot("completed-with-logs")

    ui.open_tab("Artifacts")
    expect(ui.page.get_by_text("greeting", exact=True)).to_be_visible()
    ui.shot("artifacts")

    run = api.read_flow_run(run_id)
    assert (run.name, run.parameters) == (run_name, {"name": "Browser"})
    assert "Hello, Browser!" in run_artifacts(api, run.id)["greeting"].data


@on_the_make_up_stack
def test_quick_run_of_compute_squares_completes_with_artifacts(ui: PrefectUi, api) -> None:
    ui.open_deployment("compute-squares", "compute-squares")
    # No parameter is required (numbers or a range), so a quick run starts at once with the
    # deployment's default numbers, [2, 4, 6].
    run_id = ui.create_run(lambda: ui.choose_run("Quick run"))
    ui.expect_run_state("Completed")
    ui.open_tab("Artifacts")
    expect(ui.page.get_by_text("squares-table", exact=True)).to_be_visible()
    expect(ui.page.get_by_text("squares-summary", exact=True)).to_be_visible()
    ui.shot("completed-with-artifacts")

    ui.page.get_by_text("squares-summary", exact=True).click()
    expect(ui.page.get_by_text("sum", exact=True)).to_be_visible()
    expect(ui.page.get_by_text("56", exact=True)).to_be_visible()
    ui.shot("summary-artifact")

    run = api.read_flow_run(run_id)
    assert run.state.is_completed()
    table = json.loads(run_artifacts(api, run.id)["squares-table"].data)
    assert [row["square"] for row in table] == [4, 16, 36]


@on_the_make_up_stack
def test_a_word_for_a_number_is_refused_and_creates_no_run(ui: PrefectUi, api) -> None:
    runs_before = {run.id for run in _runs_of(api, "compute-squares/compute-squares")}
    ui.open_deployment("compute-squares", "compute-squares")
    ui.choose_run("Custom run")
    ui.use_json_parameters(json.dumps({"numbers": ["two", 4]}))
    ui.page.get_by_role("button", name="Submit").click()

    # numbers may be a list of integers or null: the UI names the field and both alternatives.
    refusal = ui.page.get_by_text("['two', 4] is not valid under any of the given schemas")
    expect(refusal).to_be_visible()
    expect(ui.page.get_by_text("numbers", exact=True)).to_be_visible()
    ui.shot("refused")
    expect(ui.page).to_have_url(re.compile(r"/run(\?|$)"))  # still on the form
    assert ui.posted_to("/create_flow_run") == []
    runs_after = {run.id for run in _runs_of(api, "compute-squares/compute-squares")}
    assert runs_after == runs_before


def test_the_ui_asks_for_credentials_only_when_auth_is_on(anonymous_ui: PrefectUi, live_stack):
    ui = anonymous_ui
    ui.open("/deployments")
    if not live_stack.auth_string:
        # The embedded stack of `make up` runs without auth: the UI opens directly.
        expect(ui.page.locator("tr", has_text="greeting-schedule")).to_be_visible()
        expect(ui.page).not_to_have_url(re.compile(r"/login"))
        return

    expect(ui.page).to_have_url(re.compile(r"/login"))
    ui.shot("login")
    user = live_stack.auth_string.split(":", 1)[0]
    ui.log_in(f"{user}:wrong-password")
    expect(ui.page.get_by_text("Authentication failed").first).to_be_visible()
    expect(ui.page).to_have_url(re.compile(r"/login"))
    ui.shot("wrong-password")

    ui.log_in(live_stack.auth_string)
    expect(ui.page).to_have_url(re.compile(r"/deployments"))
    expect(ui.page.locator("tr", has_text="greeting-schedule")).to_be_visible()
    ui.shot("after-login")


@on_the_make_up_stack
def test_a_schedule_switched_off_in_the_ui_is_drift_until_apply(ui: PrefectUi, live_stack) -> None:
    """The user's edit in the UI is what plan shows as drift, and apply switches it back on."""
    ui.open_deployment("say-hello", "greeting-schedule")
    switch = ui.page.locator(".deployment-schedule-card").get_by_role("switch")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(switch).to_have_attribute("aria-checked", "false")
    ui.shot("schedule-switched-off")

    def drifted_schedules() -> dict | None:
        code, plan = plan_json(live_stack)
        update = changes(plan, "update").get("say-hello/greeting-schedule")
        fields = {f["field"]: f for f in (update or {}).get("fields", [])}
        return fields.get("schedules") if code == 2 else None

    schedules = wait_until(drifted_schedules, 60, "plan to show the schedule switched off")
    assert schedules["drift"] and [s["active"] for s in schedules["server"]] == [False]

    applied(live_stack)
    ui.page.reload()
    expect(switch).to_have_attribute("aria-checked", "true")
    ui.shot("schedule-switched-on-by-apply")
