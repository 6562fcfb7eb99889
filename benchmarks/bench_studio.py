"""Studio latency: edit a curve and re-render the 8 future frames, as the Generate button does.

    python benchmarks/bench_studio.py [--checkpoint examples/demo_checkpoint] [--repeats 5] [--threads 2]

Uses the demo checkpoint, or an UNTRAINED mmsim-cpu pipeline when it is absent (same architecture and cost;
said in the output). Target on a 2-core CPU: edit + render <= 2 s. Also times the view refresh (plotly
figures + curve-editor payload) that follows every edit, and the mp4/filmstrip written after a render.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", default=str(REPO / "examples" / "demo_data"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mmsim.app import plots
    from mmsim.app.cli import DEFAULT_CHECKPOINT
    from mmsim.app.engine import Engine, load_model
    from mmsim.app.session import Gallery, Session

    gallery = Gallery.load(args.data, limit=16)
    ckpt = args.checkpoint or (str(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.exists() else None)
    pipe, info = load_model(ckpt, fallback_stats=gallery.stats)
    engine = Engine(pipe, info, stats=pipe.normalization_stats or gallery.stats)
    print(f"model: {info.source}{'' if info.trained else '  (UNTRAINED: demo checkpoint absent; same cost)'}")
    print(f"torch threads: {torch.get_num_threads()}, sampler steps: {engine.default_steps}")

    s = Session()
    s.set_clip(gallery.clip(0))
    mods = list(engine.modalities)
    engine.render(s.clip, mods, seed=0)  # warm-up (allocations, kernels)

    edit_t, render_t, total_t, view_t, out_t = [], [], [], [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        s.edit({"op": "set_point", "modality": "emg", "channels": ["R2"], "step": 6 + r % 5, "value": 0.3 + 0.1 * r})
        t1 = time.perf_counter()
        res = engine.render(s.clip, mods, seed=0, on_step=lambda i, n, x0: None)
        s.finish_render(res)
        t2 = time.perf_counter()
        plots.editor_payload(s.clip, "emg", None, 6)
        for fig in (plots.curve_figure(s.clip, "emg", None, 6), plots.emg_figure(s.clip, 6, engine.stats),
                    plots.tactile_figure(s.clip, 6, engine.stats), plots.skeleton_figure(s.clip, 6, engine.stats)):
            fig.to_json()
        t3 = time.perf_counter()
        s.write_video()
        s.filmstrip()
        t4 = time.perf_counter()
        edit_t.append(t1 - t0)
        render_t.append(t2 - t1)
        total_t.append(t2 - t0)
        view_t.append(t3 - t2)
        out_t.append(t4 - t3)

    def fmt(xs):
        return f"median {statistics.median(xs) * 1000:7.1f} ms   min {min(xs) * 1000:7.1f} ms   max {max(xs) * 1000:7.1f} ms"

    print(f"edit (set_point)              {fmt(edit_t)}")
    print(f"render 8 frames (+previews)   {fmt(render_t)}")
    print(f"edit + render                 {fmt(total_t)}   target <= 2000 ms: "
          f"{'OK' if statistics.median(total_t) <= 2.0 else 'MISSED'}")
    print(f"view refresh (4 plots+editor) {fmt(view_t)}")
    print(f"mp4 + filmstrip               {fmt(out_t)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
