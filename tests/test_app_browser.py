"""The studio in headless Debian Chromium (Playwright) at 1280x800: the page opens on a loaded clip with its
prediction; Generate with nothing else done shows a prediction; the loop (frames, curve editor, Generate,
scores) needs no scrolling; the cursor scrubs in the browser and by keyboard; dragging a force point then
Generate shows the edit's effect and the world's own future with the control score; a reload keeps the
edits; an invalid upload shows a message and the next Generate works; no page errors.

One browser page is shared by the tests of this module, which run in file order (each picks up where the
previous left the page), so the suite pays for one page load and one studio start."""

from __future__ import annotations

import os
import time

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


@pytest.fixture(scope="module")
def session_page(url):
    """(page, page errors so far): one Chromium page on the studio for the whole module."""
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="domcontentloaded")
        yield page, errors
        browser.close()


@pytest.fixture
def page(session_page):
    page, errors = session_page
    yield page
    assert not errors, f"page errors: {errors}"


def _drag(page, selector, dy):
    # The editor may redraw between finding the point and measuring it (a late curves payload replaces its SVG):
    # a detached point has no box, so look it up again until one is measured.
    deadline = time.monotonic() + 30
    while True:
        point = page.locator(selector).first
        point.wait_for(timeout=30_000)
        box = point.bounding_box()
        if box is not None or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    assert box is not None, f"{selector} never stayed on screen long enough to be measured"
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + dy / 2, steps=3)
    page.mouse.move(x, y + dy, steps=3)
    page.mouse.up()


def _status_has(page, text, timeout=30_000):
    page.wait_for_function(f"document.querySelector('#status') && "
                           f"document.querySelector('#status').innerText.includes({text!r})", timeout=timeout)


LOOP = ("#viewer", "#generate", "#curve-editor", "#render-status", "#status")


def _loop_on_screen(page):
    for sel in LOOP:
        box = page.locator(sel).bounding_box()
        assert box and box["y"] >= 0 and box["y"] + min(box["height"], 60) <= VIEWPORT["height"], (sel, box)
    assert page.evaluate("window.scrollY") == 0


def _render_status(page) -> str:
    return page.locator("#render-status").inner_text()


def _wait_render(page, finals_before: int, timeout=120_000):
    """Until a render has finished: its frames, comparisons and scores are on the page."""
    page.wait_for_function(f"(window.__mmsim && window.__mmsim.finals || 0) > {finals_before} && "
                           "document.querySelector('#render-status').innerText.includes('Rendered')", timeout=timeout)


def _finals(page) -> int:
    """How many renders have completed on the page (the viewer counts them)."""
    return int(page.evaluate("window.__mmsim && window.__mmsim.finals || 0"))


def test_opens_on_a_loaded_clip_with_the_loop_on_one_screen(page):
    # Opens on a loaded clip with its prediction rendered; synthetic data and the model are labelled.
    page.wait_for_selector("#viewer figure[data-key='difference']", timeout=120_000)
    _wait_render(page, 0)
    _status_has(page, "#0")
    assert "synthetic" in page.locator("#header").inner_text()
    # The demo clips carry their world's oracle: the world's own future is shown with the control score.
    page.wait_for_selector("#viewer figure[data-key='world']", timeout=120_000)
    page.wait_for_function("document.querySelector('#render-status').innerText.includes('Control score')",
                           timeout=60_000)
    _loop_on_screen(page)


def _assert_prediction_drawn(page):
    """The prediction's tile holds drawn frames, not the grey placeholder."""
    lit = page.evaluate("""() => {
        const cv = document.querySelector("#viewer canvas.mm-tile[data-key='prediction']");
        const px = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
        let distinct = new Set();
        for (let i = 0; i < px.length; i += 4 * 97) distinct.add(px[i] + ',' + px[i + 1] + ',' + px[i + 2]);
        return distinct.size; }""")
    assert lit > 3, "the prediction tile shows a flat placeholder"


def test_generate_with_nothing_else_done_shows_a_prediction(page):
    n = _finals(page)
    page.locator("#generate").click()
    _wait_render(page, n)
    assert page.locator("#viewer figure[data-key='prediction'] figcaption").inner_text() == "prediction"
    _assert_prediction_drawn(page)


def test_cursor_scrubs_in_the_browser_and_by_keyboard(page):
    page.locator("#viewer input.mm-scrub").fill("6")
    page.wait_for_function("document.querySelector('#viewer .mm-step').innerText.startsWith('step 6')")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelector('#viewer .mm-step').innerText.startsWith('step 7')")


def test_drag_a_force_point_then_generate_shows_edit_effect_and_world(page):
    # Edit hand force: drag the right hand's total up at step 8, then Generate (the G key).
    page.locator("#edit-modality input").click()
    page.get_by_role("option", name="hand_force", exact=True).click()
    page.wait_for_selector("#curve-editor svg[data-modality='hand_force']", timeout=30_000)
    _drag(page, "#curve-editor circle.mm-point[data-channel='right total'][data-step='8']", -60)
    _status_has(page, "1 edit")
    n = _finals(page)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("g")
    _wait_render(page, n)
    page.wait_for_selector("#viewer figure[data-key='effect']", timeout=10_000)
    assert page.locator("#viewer figure[data-key='before']").count() == 1
    # Beside the prediction: the world's own future for the edited actions, and the live control score
    # with the edit's gain and delta-cosine.
    page.wait_for_selector("#viewer figure[data-key='world']", timeout=120_000)
    assert "edited actions" in page.locator("#viewer figure[data-key='world'] figcaption").get_attribute("title")
    page.wait_for_function("document.querySelector('#render-status').innerText.includes('gain')", timeout=60_000)
    text = _render_status(page)
    assert "Control score" in text and "cosine" in text, text
    # Six tiles in one row: the loop still fits the screen after an edit.
    _loop_on_screen(page)


def test_undo_redo_and_a_reload_keep_the_edits(page):
    # Ctrl+Z undoes, Ctrl+Shift+Z redoes (each saved to the browser's storage).
    stored = "localStorage.getItem('mmsim-studio-v1')"
    saved = page.evaluate(stored)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+z")
    _status_has(page, "0 edit")
    page.wait_for_function(f"{stored} !== {saved!r}", timeout=30_000)
    saved = page.evaluate(stored)
    page.keyboard.press("Control+Shift+z")
    _status_has(page, "1 edit")
    page.wait_for_function(f"{stored} !== {saved!r}", timeout=30_000)

    # A reload keeps the clip and its edit, rendered again with the edit's effect and the world beside it.
    page.reload(wait_until="domcontentloaded")
    page.wait_for_selector("#viewer figure[data-key='difference']", timeout=120_000)
    _wait_render(page, 0)
    _status_has(page, "1 edit")
    page.wait_for_selector("#viewer figure[data-key='effect']", timeout=120_000)
    page.wait_for_selector("#viewer figure[data-key='world']", timeout=120_000)


def test_invalid_upload_shows_a_message_and_the_next_generate_works(page, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, emg=np.zeros((5, 2, 8), np.float32))
    page.get_by_role("tab", name="Clips").click()
    page.get_by_role("tab", name="Upload").click()
    page.locator("#upload-trajectories input[type=file]").set_input_files(str(bad))
    page.locator("#load-upload").click()
    page.wait_for_function("document.body.innerText.includes('upload 4 context images') || "
                           "document.body.innerText.includes('steps')", timeout=30_000)
    # Every component stays: the viewer, the editor and the last clip.
    assert page.locator("#viewer figure[data-key='prediction']").count() == 1
    assert page.locator("#curve-editor svg[data-modality]").count() == 1
    n = _finals(page)
    before = _render_status(page)
    page.locator("#generate").click()
    page.wait_for_function(f"document.querySelector('#render-status').innerText !== {before!r} && "
                           "document.querySelector('#render-status').innerText.includes('Rendered')",
                           timeout=120_000)
    _wait_render(page, n)


def test_export_tab_shows_the_video_of_the_last_render(page):
    # The MP4 is written when the Export tab is shown (not on every render) and follows each render there.
    page.get_by_role("tab", name="Export").click()
    page.wait_for_selector("#video video", timeout=60_000)
    first = page.locator("#video video").get_attribute("src")
    page.get_by_label("seed").fill("1")  # another future, so another MP4
    page.locator("#generate").click()
    page.wait_for_function(f"document.querySelector('#video video') && "
                           f"document.querySelector('#video video').getAttribute('src') !== {first!r}",
                           timeout=120_000)


def test_signals_tab_draws_its_plots_when_shown(page):
    # The signal plots are drawn when their tab is shown (not on every edit while hidden).
    page.get_by_role("tab", name="Signals").click()
    page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot')].filter(e => e.offsetParent).length >= 4",
                           timeout=60_000)


# ----------------------------------------------------------------------------------------------
# Propose actions (a studio of its own, with an untrained tiny action proposer)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def propose_url(demo_tiny_checkpoint, tmp_path_factory):
    import torch

    from conftest import DEMO_DATA, _free_port
    from mmsim.app.cli import create_app, launch
    from mmsim.training.proposer import WIDTHS
    from mmsim_core.data import ClipDataset
    from mmsim_core.policies.proposer import ActionProposalPipeline

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("proposer") / "tiny"
    stats = ClipDataset(DEMO_DATA, split="test").stats
    ActionProposalPipeline.untrained(stats, **WIDTHS["tiny"]).save_pretrained(folder)
    demo, _ = create_app(str(demo_tiny_checkpoint), str(DEMO_DATA), proposer=str(folder))
    port = _free_port()
    launch(demo, "127.0.0.1", port, concurrency=4, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


CURVES = "[...document.querySelectorAll('#curve-editor circle.mm-point')].map(c => c.getAttribute('cy')).join(',')"


def test_propose_actions_fills_the_curves_and_generate_renders_them(session_page, propose_url):
    errors: list[str] = []
    browser = session_page[0].context.browser  # one Playwright per process: a second page of the module's browser
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(propose_url, wait_until="domcontentloaded")
        # The page opens on clip #0 with its prediction; the curves are the recorded actions.
        page.wait_for_selector("#viewer figure[data-key='prediction']", timeout=120_000)
        _wait_render(page, 0)
        _status_has(page, "0 edit")
        page.wait_for_selector("#curve-editor circle.mm-point", timeout=30_000)
        recorded = page.evaluate(CURVES)

        page.get_by_role("tab", name="Propose actions").click()
        assert "Proposer" in page.locator("#propose-status").inner_text()
        page.locator("#propose-text textarea, #propose-text input").first.fill("lift the cup")
        page.locator("#propose-btn").click()
        # The first sample is in the trajectories: one edit per modality, curves redrawn.
        _status_has(page, "4 edit", timeout=60_000)
        page.wait_for_function(f"{CURVES} !== {recorded!r}", timeout=30_000)
        page.wait_for_function("document.querySelector('#propose-report').innerText.includes('4 proposal(s)')",
                               timeout=30_000)
        assert page.locator("#propose-pick input[type=radio]").count() == 4
        first = page.evaluate(CURVES)
        # Another sample replaces it (still one proposal in the history).
        page.locator("#propose-pick label").nth(2).click()
        page.wait_for_function(f"{CURVES} !== {first!r}", timeout=30_000)
        _status_has(page, "4 edit")
        assert "prediction is from before the last edit" in page.locator("#status").inner_text()

        # Generate renders the proposal.
        n = _finals(page)
        page.locator("#generate").click()
        _wait_render(page, n)
        page.wait_for_function("!document.querySelector('#status').innerText.includes('from before the last edit')",
                               timeout=60_000)
        _assert_prediction_drawn(page)
        # Undo takes the whole proposal back: the recorded curves again.
        page.locator("#undo").click()
        _status_has(page, "0 edit")
        page.wait_for_function(f"{CURVES} === {recorded!r}", timeout=30_000)

        # With a goal frame the samples are rendered and ranked by the bundled learned goal scorer.
        page.locator("#propose-goal-recorded").click()
        page.wait_for_selector("#propose-goal img", timeout=30_000)
        page.locator("#propose-btn").click()
        page.wait_for_function("document.querySelector('#propose-report').innerText.includes("
                               "'ranked by the learned goal scorer')", timeout=120_000)
        page.wait_for_selector("#propose-grid img", timeout=30_000)
        assert "score" in page.locator("#propose-pick").inner_text()
    finally:
        page.close()
    assert not errors, f"page errors: {errors}"
