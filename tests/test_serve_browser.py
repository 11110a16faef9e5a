"""The web page in a real browser: Playwright drives Debian's chromium (``apt-get install -y
chromium``; .ci/run installs it) against the real server. The page picks and drops images,
asks for the API key when the server wants one, and shows score, expected score and
reasoning; it loads nothing from anywhere but the server.

Without /usr/bin/chromium this test fails (it does not skip): set
``QPONDER_SKIP_BROWSER=1`` to skip it knowingly on a machine without a browser.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from serve_support import (
    BRIGHT_SCORE,
    DARK_SCORE,
    answering_model,
    image,
    png_bytes,
    start_server,
)

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
KEY = "browser-key-5678"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if os.environ.get("QPONDER_SKIP_BROWSER") == "1":
        pytest.skip("QPONDER_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y chromium (or QPONDER_SKIP_BROWSER=1)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def server(request, chromium, tmp_path_factory):
    model = answering_model(tmp_path_factory.getbasetemp())
    log = tmp_path_factory.mktemp("serve-browser") / "server.log"
    return start_server(
        request, model, log, "--api-key-env", "QPONDER_BROWSER_KEY",
        "--set", "eval.max_new_tokens=40", env={"QPONDER_BROWSER_KEY": KEY},
    )  # fmt: skip


def test_the_page_scores_picked_and_dropped_images(server, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    dark.write_bytes(png_bytes(image("dark", seed=21)))
    bright.write_bytes(png_bytes(image("bright", seed=22)))
    outside: list[str] = []
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page()
            page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith((server.url, "blob:", "data:"))
                    else outside.append(r.url)
                ),
            )
            page.on(
                "console", lambda m: console_errors.append(m.text) if m.type == "error" else None
            )
            page.goto(f"{server.url}/")
            assert page.title().startswith("qponder")

            # without the key: the page says what is missing
            page.set_input_files("#file-input", str(dark))
            page.wait_for_selector("body[data-state=error]", timeout=30_000)
            assert "API key" in page.inner_text("#status")
            console_errors.clear()  # the browser logs the 401 itself

            # with the key: picked files
            page.fill("#api-key", KEY)
            page.set_input_files("#file-input", [str(dark), str(bright)])
            page.wait_for_selector("body[data-state=done]", timeout=60_000)
            assert page.get_attribute("#result-0", "data-id") == "dark.png"
            assert float(page.inner_text("#result-0-score")) == DARK_SCORE
            assert float(page.inner_text("#result-1-score")) == BRIGHT_SCORE
            assert 1 <= float(page.inner_text("#result-0-expected")) <= 5
            assert "dark" in page.inner_text("#result-0-reasoning")
            assert "bright" in page.inner_text("#result-1-reasoning")
            assert page.inner_text("#result-0-error") == ""
            assert page.locator("#result-0 img.thumb").count() == 1

            # a dropped file
            page.evaluate("document.body.dataset.state = ''")
            data = base64.b64encode(bright.read_bytes()).decode()
            transfer = page.evaluate_handle(
                """(b64) => {
                    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
                    return dt;
                }""",
                data,
            )
            page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
            page.wait_for_selector("body[data-state=done]", timeout=60_000)
            assert page.get_attribute("#result-2", "data-id") == "dropped.png"
            assert float(page.inner_text("#result-2-score")) == BRIGHT_SCORE
            # newest first
            rows = page.locator("#results-body tr")
            assert [rows.nth(k).get_attribute("id") for k in range(3)] == [
                "result-2",
                "result-0",
                "result-1",
            ]
        finally:
            browser.close()
    assert outside == [], "the page must load nothing from elsewhere"
    assert console_errors == []
