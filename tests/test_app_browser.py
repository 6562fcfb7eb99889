"""The studio in headless Debian Chromium (Playwright): load the page, pick a clip from the
gallery, drag a point on an EMG curve, press Generate, see a video; no page errors."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (`apt-get install -y chromium`)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing: `pip install playwright` "
                                                              "(never `playwright install`)")


@pytest.fixture(scope="module")
def url(studio):
    return studio[0]


def test_pick_drag_generate(url):
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#gallery img", timeout=60_000)

        # Pick clip #2 from the gallery.
        page.locator("#gallery img").nth(2).click()
        page.wait_for_function("document.querySelector('#status') && "
                               "document.querySelector('#status').innerText.includes('#2')", timeout=60_000)

        # Drag an EMG point (the editor shows EMG by default) upwards by 60 px.
        point = page.locator("#curve-editor circle.mm-point[data-step='7']").first
        point.wait_for(timeout=30_000)
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x, y - 30, steps=4)
        page.mouse.move(x, y - 60, steps=4)
        page.mouse.up()
        page.wait_for_function("document.querySelector('#status').innerText.includes('1 edit')", timeout=30_000)

        # Generate and wait for the video.
        page.locator("#generate").click()
        page.wait_for_selector("#video video", timeout=120_000)
        src = page.locator("#video video").get_attribute("src") or ""
        page.wait_for_function("document.querySelector('#render-status').innerText.includes('Rendered')",
                               timeout=60_000)
        browser.close()
    assert src, "the video element has no source"
    assert not errors, f"page errors: {errors}"
