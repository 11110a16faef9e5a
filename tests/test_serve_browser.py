"""The web page in a real browser: Playwright drives Debian's chromium (``apt-get install -y
chromium``; .ci/run installs it) against the real server. The page picks and drops images,
asks for the API key when the server wants one, and shows score, expected score and
reasoning; it splits a pick into requests within the server's limits, gives every file its
row and says how many were scored and how many failed; it wraps long names outside their
extension; it loads nothing from anywhere but the server.

Without /usr/bin/chromium these tests fail (they do not skip): set
``QPONDER_SKIP_BROWSER=1`` to skip them knowingly on a machine without a browser.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from serve_support import (
    BRIGHT_SCORE,
    DARK_SCORE,
    answering_model,
    image,
    padded_png,
    png_bytes,
    start_server,
)

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
KEY = "browser-key-5678"
MAX_IMAGES = 4
MAX_BODY = 1024 * 1024  # --max-body-mb 1


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
        "--max-images", str(MAX_IMAGES), "--max-body-mb", "1",
        "--set", "eval.max_new_tokens=40", env={"QPONDER_BROWSER_KEY": KEY},
    )  # fmt: skip


# Records what each upload of the page holds: its files and the size of its body as the
# browser serialises it (Chromium reports neither for a body of files).
_RECORD_UPLOADS = """
window.qponderUploads = [];
const realFetch = window.fetch;
window.fetch = async function (url, options) {
    if (options && options.body instanceof FormData) {
        const bytes = (await new Response(options.body).arrayBuffer()).byteLength;
        const files = options.body.getAll("files").map(f => f.name);
        window.qponderUploads.push({bytes: bytes, files: files});
    }
    return realFetch.apply(this, arguments);
};
"""


@dataclass
class Browser:
    """A page of the server in chromium, and the errors it logged."""

    page: Any
    console_errors: list[str] = field(default_factory=list)


@contextmanager
def browser_page(chromium: Path, server, **context) -> Iterator[Browser]:
    """A chromium page on the server's page (``context``: Playwright's page options) that
    records its uploads in ``window.qponderUploads``. On leaving, checks that it loaded
    nothing from elsewhere and logged no errors."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            seen = Browser(browser.new_page(**context))

            seen.page.add_init_script(_RECORD_UPLOADS)
            seen.page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith((server.url, "blob:", "data:"))
                    else outside.append(r.url)
                ),
            )
            seen.page.on(
                "console",
                lambda m: seen.console_errors.append(m.text) if m.type == "error" else None,
            )
            seen.page.goto(f"{server.url}/")
            assert seen.page.title().startswith("qponder")
            yield seen
        finally:
            browser.close()
    assert outside == [], "the page must load nothing from elsewhere"
    assert seen.console_errors == []


def _finished(page) -> str:
    """Wait until the page has answered a pick; its state then, ``done`` or ``error``."""
    page.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=90_000)
    return page.get_attribute("body", "data-state")


def _pick(page, files: list[Path]) -> str:
    """Pick ``files`` in the file dialog; the page's state once it has answered."""
    page.evaluate("document.body.dataset.state = ''")
    page.set_input_files("#file-input", [str(f) for f in files])
    return _finished(page)


def _rows(page) -> list[dict]:
    """Each result row, top to bottom: its file, state, status line, score and error."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll("#results-body tr")).map(tr => ({
            id: tr.dataset.id, state: tr.dataset.state,
            line: tr.querySelector(".file-status").textContent,
            score: tr.querySelector(".score").textContent,
            error: tr.querySelector(".error").textContent}))"""
    )


def _lines(page, row: str) -> list[str]:
    """The file name of ``row`` (e.g. ``result-0``) as the browser wrapped it, line by line."""
    chars = page.evaluate(
        """(id) => {
            const name = document.querySelector("#" + id + " .name");
            const walker = document.createTreeWalker(name, NodeFilter.SHOW_TEXT);
            const out = [];
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                for (let i = 0; i < node.length; i++) {
                    const range = document.createRange();
                    range.setStart(node, i);
                    range.setEnd(node, i + 1);
                    out.push([node.data[i], range.getBoundingClientRect().top]);
                }
            }
            return out;
        }""",
        row,
    )
    lines: list[str] = []
    last_top = None
    for char, top in chars:
        if last_top is None or top > last_top + 1:
            lines.append("")
        lines[-1] += char
        last_top = top
    return lines


def test_the_page_scores_picked_and_dropped_images(server, chromium, tmp_path):
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    dark.write_bytes(png_bytes(image("dark", seed=21)))
    bright.write_bytes(png_bytes(image("bright", seed=22)))
    with browser_page(chromium, server) as seen:
        page = seen.page
        # without the key: the page says what is missing
        assert _pick(page, [dark]) == "error"
        assert "API key" in page.inner_text("#status")
        seen.console_errors.clear()  # the browser logs the 401 itself

        # with the key: picked files
        page.fill("#api-key", KEY)
        assert _pick(page, [dark, bright]) == "done"
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
        assert _finished(page) == "done"
        assert page.get_attribute("#result-2", "data-id") == "dropped.png"
        assert float(page.inner_text("#result-2-score")) == BRIGHT_SCORE
        # newest first
        rows = page.locator("#results-body tr")
        assert [rows.nth(k).get_attribute("id") for k in range(3)] == [
            "result-2",
            "result-0",
            "result-1",
        ]


def test_a_pick_over_the_servers_limits_is_split_and_every_file_gets_its_row(
    server, chromium, tmp_path
):
    # phone photos: each fits the server's 1 MB, all together do not, one fits in no request;
    # seven files for a server that takes four per request
    picked = [
        ("PXL_20240611_183457123_dark.jpg", padded_png(image("dark", seed=31), 300_000)),
        ("PXL_20240611_183502456_bright.jpg", padded_png(image("bright", seed=32), 300_000)),
        ("PXL_20240611_183500999_huge.jpg", padded_png(image("bright", seed=33), 1_200_000)),
        ("PXL_20240611_183511789_dark.jpg", padded_png(image("dark", seed=34), 300_000)),
        ("PXL_20240611_183519012_bright.jpg", padded_png(image("bright", seed=35), 300_000)),
        ("small.png", png_bytes(image("dark", seed=36))),
        ("empty.jpg", b""),
    ]
    files = []
    for name, data in picked:
        files.append(tmp_path / name)
        files[-1].write_bytes(data)
    assert len(files) > MAX_IMAGES and sum(len(d) for _, d in picked) > MAX_BODY
    with browser_page(chromium, server) as seen:
        page = seen.page
        page.fill("#api-key", KEY)
        assert _pick(page, files) == "done", page.inner_text("#status")
        rows = _rows(page)
        assert [r["id"] for r in rows] == [name for name, _ in picked]
        scored = [(r["id"], float(r["score"])) for r in rows if r["state"] == "scored"]
        assert scored == [
            ("PXL_20240611_183457123_dark.jpg", DARK_SCORE),
            ("PXL_20240611_183502456_bright.jpg", BRIGHT_SCORE),
            ("PXL_20240611_183511789_dark.jpg", DARK_SCORE),
            ("PXL_20240611_183519012_bright.jpg", BRIGHT_SCORE),
            ("small.png", DARK_SCORE),
        ]
        assert all(r["line"] == "scored" and r["error"] == "" for r in rows if r["score"] != "—")
        huge, empty = rows[2], rows[6]
        assert huge["state"] == "failed" and huge["line"] == "not sent: too large"
        assert huge["error"] == "too_large: 1.1 MB; this server takes at most 1.0 MB per request"
        assert empty["state"] == "failed" and empty["line"] == "not scored"
        assert empty["error"] == "bad_image:empty"
        status = page.inner_text("#status")
        assert status.startswith("7 images: 5 scored, 2 failed"), status
        # requests within the server's limits that hold every file but the huge one, once
        uploads = page.evaluate("window.qponderUploads")
        assert max(u["bytes"] for u in uploads) <= MAX_BODY, uploads
        assert max(len(u["files"]) for u in uploads) <= MAX_IMAGES, uploads
        sent = [name for u in uploads for name in u["files"]]
        assert sent == [name for name, _ in picked if "huge" not in name]


def test_the_status_counts_failures_and_long_names_wrap_outside_the_extension(
    server, chromium, tmp_path
):
    names = [
        "IMG_20240611_183457_HDR_beach-sunset_panorama_final.jpg",
        "holidayphotosfromthebeachatsunsetwithfriends.jpeg",
        "notes.txt",
    ]
    contents = [png_bytes(image("dark", seed=41)), png_bytes(image("bright", seed=42)), b"hi"]
    files = [tmp_path / n for n in names]
    for f, data in zip(files, contents, strict=True):
        f.write_bytes(data)
    with browser_page(chromium, server, viewport={"width": 390, "height": 844}) as seen:
        page = seen.page  # a phone's width: names must wrap
        page.fill("#api-key", KEY)
        assert _pick(page, files) == "done"
        status = page.inner_text("#status")
        assert status.startswith("3 images: 2 scored, 1 failed"), status
        assert [r["line"] for r in _rows(page)] == ["scored", "scored", "not scored"]

        separated = _lines(page, "result-0")
        assert "".join(separated) == names[0] and len(separated) > 1, separated
        for line in separated[:-1]:  # broken only after a separator
            assert line[-1] in "_-. ", separated
        for k, name in enumerate(names[:2]):
            lines = _lines(page, f"result-{k}")
            extension = name[name.rindex(".") :]
            assert "".join(lines) == name and lines[-1].endswith(extension), lines
        unseparated = _lines(page, "result-1")
        assert len(unseparated) > 1, unseparated  # a long run wraps where it must
