"""``mmsim app`` / ``python app.py``: launch the studio.

    mmsim app                                    # demo checkpoint + bundled demo clips
    mmsim app --checkpoint runs/demo/final       # a local pipeline folder, or a Hub id (user/name)
    mmsim app --port 7860 --host 0.0.0.0
    mmsim app --proposer runs/prop/final         # an action proposer for "Propose actions"
    mmsim app --scorer runs/scorer/final         # a learned goal scorer to rank the proposals
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "examples" / "demo_data"
DEFAULT_CHECKPOINT = REPO / "examples" / "demo_checkpoint"
DEFAULT_PROPOSER = REPO / "examples" / "demo_proposer"
DEFAULT_SCORER = REPO / "examples" / "demo_scorer"
MAX_QUEUE = 64
"""Events waiting in the queue at most. Beyond it Gradio refuses new ones at once (the page shows "This
application is currently busy. Please try again.", gradio_client raises "Queue is full! Please try again.")
instead of letting a crowd wait without end behind renders served one at a time."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmsim app", description="Launch the mmsim studio (Gradio).")
    p.add_argument("--checkpoint", default=None,
                   help=f"pipeline folder or Hub id (default: {DEFAULT_CHECKPOINT.relative_to(REPO)}; when it is "
                        f"absent an UNTRAINED mmsim-cpu model is used and the page says so)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="processed clip folder for the gallery")
    p.add_argument("--proposer", default=None,
                   help=f"action proposer folder for 'Propose actions' (default: {DEFAULT_PROPOSER.relative_to(REPO)} "
                        f"when present; train one with `mmsim proposer train --data PROC --out RUN`, then pass "
                        f"RUN/final)")
    p.add_argument("--scorer", default=None,
                   help=f"learned goal scorer folder that ranks proposals against a goal frame (default: "
                        f"{DEFAULT_SCORER.relative_to(REPO)} when present, else the simulator's embedding; train one "
                        f"with `mmsim scorer train`)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--share", action="store_true", help="create a public gradio.live link")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto")
    p.add_argument("--concurrency", type=int, default=4, help="events served at once (renders: one at a time)")
    p.add_argument("--max-queue", type=int, default=MAX_QUEUE,
                   help="events waiting at most; beyond it a user is told the studio is busy and to retry")
    p.add_argument("--max-file-size", default=f"{int(200)}mb", help="largest accepted upload")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p


def create_app(checkpoint: str | None = None, data: str | None = str(DEFAULT_DATA), device: str = "cpu",
               proposer: str | None = None, scorer: str | None = None):
    """``(demo, engine)``: the Blocks, unlaunched. ``proposer``: an action proposer folder (default: the bundled
    demo proposer when present; an explicit folder that cannot serve this simulator is an error); ``scorer``: a
    learned goal scorer folder that ranks proposals (default: the bundled demo scorer when present)."""
    from mmsim.app.engine import Engine, load_model
    from mmsim.app.propose import resolve_proposer, resolve_scorer
    from mmsim.app.session import Gallery
    from mmsim.app.ui import build_demo

    gallery = Gallery.load(data)
    ckpt = checkpoint
    if ckpt is None:
        ckpt = str(DEFAULT_CHECKPOINT)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    # The default folder missing -> untrained fallback; an explicit path missing is an error.
    pipe, info = load_model(ckpt if (checkpoint is not None or DEFAULT_CHECKPOINT.exists()) else None,
                            fallback_stats=gallery.stats, device=device)
    engine = Engine(pipe, info, stats=pipe.normalization_stats or gallery.stats)
    prop, prop_status = resolve_proposer(proposer, engine)
    goal_scorer, ranking = resolve_scorer(scorer)
    if prop is not None:
        prop_status = f"{prop_status.rstrip().rstrip('.')}. With a goal frame, proposals are {ranking}."
    return build_demo(engine, gallery, proposer=prop, proposer_status=prop_status, goal_scorer=goal_scorer), engine


def launch(demo, host: str, port: int, concurrency: int = 4, share: bool = False, max_file_size="200mb",
           prevent_thread_lock: bool = False, max_queue: int = MAX_QUEUE):
    if max_queue < 1:
        from mmsim_core.errors import UsageError

        raise UsageError(f"--max-queue must be at least 1, got {max_queue}")
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=max_file_size,
                       show_error=True, prevent_thread_lock=prevent_thread_lock,
                       css=getattr(demo, "studio_css", None),
                       allowed_paths=[str(Path(__file__).parent / "static")])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_queue < 1:  # before the model loads: a usage error, exit 2 like a mistyped flag
        print(f"mmsim app: error: --max-queue must be at least 1, got {args.max_queue}", file=sys.stderr)
        return 2
    if args.proposer is not None and not Path(args.proposer).is_dir():  # before the model loads
        from mmsim.app.propose import HOW_TO_TRAIN

        print(f"mmsim app: error: proposer folder {args.proposer} does not exist; {HOW_TO_TRAIN}", file=sys.stderr)
        return 1
    if args.scorer is not None and not Path(args.scorer).is_dir():
        print(f"mmsim app: error: --scorer folder {args.scorer} does not exist (train one with `mmsim scorer train`, "
              f"then pass RUN/final)", file=sys.stderr)
        return 1
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from mmsim_core.errors import MMSimError

    try:
        demo, engine = create_app(args.checkpoint, args.data, args.device, proposer=args.proposer,
                                  scorer=args.scorer)
    except MMSimError as e:
        print(f"mmsim app: error: {e}", file=sys.stderr)
        return 1
    print(f"mmsim studio: model {engine.info.source}" + ("" if engine.info.trained else f" -- {engine.info.note}"))
    launch(demo, args.host, args.port, args.concurrency, args.share, args.max_file_size, max_queue=args.max_queue)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
