"""Studio latency, in a real browser and in process.

    python benchmarks/bench_studio.py [--checkpoint examples/demo_checkpoint] [--repeats 7] [--threads 2]
                                      [--clients 8] [--no-browser]

Browser (Debian Chromium through Playwright, 1280x800, the studio served on localhost):
* click Generate -> the new prediction shown in the viewer (median; target <= 0.6 s);
* drag a curve point / apply a range edit -> the curve editor redrawn with the server's curves (<= 0.3 s);
* scrubbing: one cursor step in the viewer (<= 0.1 s);
* N concurrent gradio_client users (load, edit, generate): errors and wall time.
In process: edit + render, view refresh and MP4 writing, as before.
Uses the demo checkpoint, or an UNTRAINED mmsim-cpu pipeline when it is absent (same cost; said in the output).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def fmt(xs) -> str:
    return (f"median {statistics.median(xs) * 1000:7.1f} ms   min {min(xs) * 1000:7.1f} ms   "
            f"max {max(xs) * 1000:7.1f} ms   (n={len(xs)})")


def verdict(xs, target_s: float) -> str:
    return f"target <= {target_s * 1000:.0f} ms: {'OK' if statistics.median(xs) <= target_s else 'MISSED'}"


def in_process(engine, gallery, repeats: int) -> None:
    from mmsim.app import plots
    from mmsim.app.session import Session

    s = Session()
    s.set_clip(gallery.clip(0))
    mods = list(engine.modalities)
    engine.render(s.clip, mods, seed=0)  # warm-up
    render_t, view_t, out_t = [], [], []
    for r in range(repeats):
        s.edit({"op": "set_point", "modality": "emg", "channels": ["R2"], "step": 6 + r % 5, "value": 0.3 + 0.1 * r})
        t1 = time.perf_counter()
        s.finish_render(engine.render(s.clip, mods, seed=0))
        t2 = time.perf_counter()
        plots.editor_payload(s.clip, "emg", None, 6, stats=engine.stats)
        plots.viewer_payload(s.clip, s.prediction)
        t3 = time.perf_counter()
        s.write_video()
        t4 = time.perf_counter()
        render_t.append(t2 - t1)
        view_t.append(t3 - t2)
        out_t.append(t4 - t3)
    print(f"[in process] render 8 frames          {fmt(render_t)}")
    print(f"[in process] editor + viewer payloads {fmt(view_t)}")
    print(f"[in process] mp4                      {fmt(out_t)}")


def browser(url: str, repeats: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = b.new_page(viewport={"width": 1280, "height": 800})
        t0 = time.perf_counter()
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("#viewer figure[data-key='difference']", timeout=180_000)
        print(f"[browser] page open -> clip loaded and its prediction shown: {time.perf_counter() - t0:.2f} s")
        finals = "window.__mmsim.finals || 0"  # renders whose comparisons, world view and scores are in
        page.wait_for_function(f"({finals}) > 0", timeout=180_000)
        print(f"[browser] page open -> ... its comparisons, world view and scores shown: "
              f"{time.perf_counter() - t0:.2f} s")

        builds = "window.__mmsim.builds || 0"
        gen, full, model = [], [], []
        for _ in range(repeats):
            n, m = page.evaluate(builds), page.evaluate(finals)
            t = time.perf_counter()
            page.locator("#generate").click()
            page.wait_for_function(f"({builds}) > {n}", timeout=60_000)
            gen.append(time.perf_counter() - t)
            # The server's own timing of the model call, from the render report ("Rendered 8 frames in X s").
            found = re.search(r"Rendered \d+ frames in ([0-9.]+) s", page.locator("#render-status").inner_text())
            model.append(float(found.group(1)) if found else float("nan"))
            page.wait_for_function(f"({finals}) > {m}", timeout=60_000)  # the follow-up of this click
            full.append(time.perf_counter() - t)
        rest = [g - r for g, r in zip(gen, model)]
        print(f"[browser] click Generate -> new prediction shown {fmt(gen)}   {verdict(gen, 0.6)}")
        print(f"[browser]   of which the model's render          {fmt(model)}")
        print(f"[browser]   the rest (queue, views, transport, page) {fmt(rest)}")
        print(f"[browser]   ... -> references, world view, scores {fmt(full)}")

        draws = "window.__mmsim.editorDraws || 0"
        drag = []
        for r in range(repeats):
            point = page.locator(f"#curve-editor circle.mm-point[data-step='{5 + r % 6}']").first
            box = point.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x, y - 10, steps=2)
            n = page.evaluate(draws)
            t = time.perf_counter()
            page.mouse.up()
            page.wait_for_function(f"({draws}) > {n}", timeout=30_000)
            drag.append(time.perf_counter() - t)
            page.wait_for_timeout(400)
        print(f"[browser] drag release -> curves redrawn   {fmt(drag)}   {verdict(drag, 0.3)}")
        rng = []
        for _ in range(repeats):
            n = page.evaluate(draws)
            t = time.perf_counter()
            page.locator("#apply-range").click()
            page.wait_for_function(f"({draws}) > {n}", timeout=30_000)
            rng.append(time.perf_counter() - t)
            page.wait_for_timeout(400)
        print(f"[browser] range edit -> curves redrawn     {fmt(rng)}   {verdict(rng, 0.3)}")

        # Scrubbing: each step measured in the page (input event -> frames painted on the next animation frame).
        per_step = page.evaluate("""async () => {
            const el = document.querySelector('#viewer input.mm-scrub');
            const out = [];
            for (let k = 0; k < 3 * (+el.max + 1); k++) {
                const t = performance.now();
                el.value = String(k % (+el.max + 1));
                el.dispatchEvent(new Event('input', {bubbles: true}));
                await new Promise(r => requestAnimationFrame(() => r()));
                out.push((performance.now() - t) / 1000);
            }
            return out;
        }""")
        print(f"[browser] scrub one step (to paint)     {fmt(per_step)}   {verdict(per_step, 0.1)}")
        b.close()


def clients(url: str, n: int) -> None:
    from gradio_client import Client

    def user(i):
        t = time.perf_counter()
        c = Client(url, verbose=False)
        c.predict(clip=i % 16, modality="hand_force", channels=["left total"], api_name="/load_clip")
        c.predict(modality="hand_force", channels=["left total"], cursor=0, start=4, end=11, operation="scale",
                  amount=2.0, api_name="/range_edit")
        report = c.predict(api_name="/generate")[2]
        assert "Rendered 8 frames" in report, report
        return time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(user, i) for i in range(n)]
    times, errors = [], []
    for f in futures:
        try:
            times.append(f.result())
        except Exception as e:  # noqa: BLE001 - counted and shown
            errors.append(f"{type(e).__name__}: {e}")
    print(f"[clients] {n} concurrent users (load, edit, generate): {len(errors)} errors, wall "
          f"{time.perf_counter() - t0:.1f} s, per user median {statistics.median(times) if times else float('nan'):.1f} s")
    for e in errors[:3]:
        print(f"          {e}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", default=str(REPO / "examples" / "demo_data"))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--no-browser", action="store_true")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mmsim.app.cli import create_app, launch

    demo, engine = create_app(args.checkpoint, args.data)
    print(f"model: {engine.info.source}{'' if engine.info.trained else '  (UNTRAINED: demo checkpoint absent; same cost)'}")
    print(f"torch threads: {torch.get_num_threads()}, sampler steps: {engine.default_steps}, "
          f"CPUs: {os.cpu_count()}, load average (1 min) {os.getloadavg()[0]:.1f}: figures scale with other load")
    from mmsim.app.session import Gallery

    gallery = Gallery.load(args.data, limit=4)
    gallery.adopt_stats(engine.stats)  # as the studio does
    in_process(engine, gallery, args.repeats)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True)
    url = f"http://127.0.0.1:{port}/"
    if not args.no_browser:
        if Path(CHROMIUM).exists():
            browser(url, args.repeats)
        else:
            print(f"[browser] skipped: {CHROMIUM} missing")
    clients(url, args.clients)
    demo.close()
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
