"""The API requests the Prefect UI makes for a page, timed by the browser: Debian's Chromium,
headless, through Playwright, as tests/browser drives it. The list of requests is whatever the UI
asks for; nothing here names them."""

from __future__ import annotations

import shutil

from playwright.sync_api import Request, sync_playwright


def api_request_seconds(ui_url: str, pages: dict[str, str], loads: int) -> dict[str, list[dict]]:
    """For each page (name: path under `ui_url`), loaded `loads` times until the network is
    idle: each API request it made (method and path) and its seconds from start to the response's
    last byte, as Chromium timed it."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("the UI's requests are timed in Chromium: apt-get install chromium")
    timed: dict[str, list[dict]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page()
            for name, path in pages.items():
                requests: list[Request] = []

                def finished(request: Request, requests: list[Request] = requests) -> None:
                    requests.append(request)

                page.on("requestfinished", finished)
                for _ in range(loads):
                    page.goto(f"{ui_url}{path}", wait_until="networkidle", timeout=120_000)
                page.remove_listener("requestfinished", finished)
                timed[name] = [
                    {
                        "request": f"{r.method} {r.url.removeprefix(ui_url).partition('?')[0]}",
                        "seconds": r.timing["responseEnd"] / 1000,
                    }
                    for r in requests
                    if "/api/" in r.url and r.timing["responseEnd"] >= 0
                ]
        finally:
            browser.close()
    return timed
