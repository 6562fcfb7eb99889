"""The studio in headless Debian Chromium (Playwright) at 1280x800: the page opens on a loaded clip with its
prediction; the loop (frames, curve editor, Generate, scores) needs no scrolling; the cursor scrubs in the
browser and by keyboard; dragging a force point then Generate shows the edit's effect; a reload keeps the
edits; an invalid upload shows a message and leaves the page working; no page errors."""

from __future__ import annotations

import os

import numpy as np
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

VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def url(studio):
    return studio[0]


def _drag(page, selector, dy):
    point = page.locator(selector).first
    point.wait_for(timeout=30_000)
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + dy / 2, steps=3)
    page.mouse.move(x, y + dy, steps=3)
    page.mouse.up()


def _status_has(page, text, timeout=30_000):
    page.wait_for_function(f"document.querySelector('#status') && "
                           f"document.querySelector('#status').innerText.includes({text!r})", timeout=timeout)


def test_loop_on_one_screen_edit_effect_reload_and_errors(url, tmp_path):
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="domcontentloaded")

        # Opens on a loaded clip with its prediction rendered; synthetic data and the model are labelled.
        page.wait_for_selector("#viewer figure[data-key='difference']", timeout=120_000)
        _status_has(page, "#0")
        assert "synthetic" in page.locator("#header").inner_text()

        # The loop is visible without scrolling.
        for sel in ("#viewer", "#generate", "#curve-editor", "#render-status", "#status"):
            box = page.locator(sel).bounding_box()
            assert box and box["y"] >= 0 and box["y"] + min(box["height"], 60) <= VIEWPORT["height"], (sel, box)
        assert page.evaluate("window.scrollY") == 0

        # The cursor: the scrub bar and the arrow keys move it in the browser.
        page.locator("#viewer input.mm-scrub").fill("6")
        page.wait_for_function("document.querySelector('#viewer .mm-step').innerText.startsWith('step 6')")
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.querySelector('#viewer .mm-step').innerText.startsWith('step 7')")

        # Edit hand force: drag the right hand's total up at step 8, then Generate (the G key).
        page.locator("#edit-modality input").click()
        page.get_by_role("option", name="hand_force", exact=True).click()
        page.wait_for_selector("#curve-editor svg[data-modality='hand_force']", timeout=30_000)
        _drag(page, "#curve-editor circle.mm-point[data-channel='right total'][data-step='8']", -60)
        _status_has(page, "1 edit")
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("g")
        page.wait_for_selector("#viewer figure[data-key='effect']", timeout=120_000)
        assert page.locator("#viewer figure[data-key='before']").count() == 1

        # Ctrl+Z undoes, Ctrl+Shift+Z redoes (each saved to the browser's storage).
        stored = "localStorage.getItem('mmsim-studio-v1')"
        saved = page.evaluate(stored)
        page.keyboard.press("Control+z")
        _status_has(page, "0 edit")
        page.wait_for_function(f"{stored} !== {saved!r}", timeout=30_000)
        saved = page.evaluate(stored)
        page.keyboard.press("Control+Shift+z")
        _status_has(page, "1 edit")
        page.wait_for_function(f"{stored} !== {saved!r}", timeout=30_000)

        # A reload keeps the clip and its edit.
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector("#viewer figure[data-key='difference']", timeout=120_000)
        _status_has(page, "1 edit")

        # An invalid upload: a message, the components stay, the next Generate works.
        bad = tmp_path / "bad.npz"
        np.savez(bad, emg=np.zeros((5, 2, 8), np.float32))
        page.get_by_role("tab", name="Clips").click()
        page.get_by_role("tab", name="Upload").click()
        page.locator("#upload-trajectories input[type=file]").set_input_files(str(bad))
        page.locator("#load-upload").click()
        page.wait_for_function("document.body.innerText.includes('upload 4 context images') || "
                               "document.body.innerText.includes('steps')", timeout=30_000)
        assert page.locator("#viewer figure[data-key='prediction']").count() == 1
        before = page.locator("#render-status").inner_text()
        page.locator("#generate").click()
        page.wait_for_function(f"document.querySelector('#render-status').innerText !== {before!r} && "
                               "document.querySelector('#render-status').innerText.includes('Rendered')",
                               timeout=120_000)
        browser.close()
    assert not errors, f"page errors: {errors}"
