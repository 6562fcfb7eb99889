"""Generate the future of one clip and show it beside the ground truth.

    mmsim generate runs/demo/final data/processed --index 12 --out video.mp4
    mmsim generate runs/demo/final data/processed --index 12 --drop hand_force --out no_force.mp4

Writes ``video.mp4``: every time step shows [ground truth | prediction | |difference|] side by side,
context steps first (the prediction panel repeats the given context, framed grey) then the predicted
steps (framed orange); and ``video_filmstrip.png``: the same as three rows (ground truth, prediction,
difference) by h+F columns. The noise is the same draw ``mmsim evaluate`` uses for this clip and seed,
so the printed metrics match that clip's row in an evaluation.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2

from mmsim_core import schema
from mmsim_core.errors import MMSimError, UsageError, exit_status
from mmsim_core.evaluation.loading import load_pipeline
from mmsim_core.evaluation.metrics import VideoMetrics
from mmsim_core.evaluation.video import compose_filmstrip, compose_video
from mmsim_core.video import write_video
from mmsim.training.evaluate import EvalConfig, open_dataset, predict

logger = logging.getLogger("mmsim.generate")

def filmstrip_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + "_filmstrip.png")


def generate(checkpoint: str, data: str, index: int, out: str | Path, split: str = "test", drop=(), keep=None,
             seed: int = 0, num_inference_steps: int | None = None, text_kind: str | None = None,
             device: str = "auto", fps: float = 4.0, scale: int = 4) -> dict:
    """Generate clip ``index`` of ``split``; write the mp4 and the filmstrip. Returns paths, metrics and meta."""
    from mmsim_core.data import collate_clips

    cfg = EvalConfig(checkpoint=checkpoint, data=data, split=split, drop=tuple(drop or ()),
                     keep=None if keep is None else tuple(keep), seed=seed, num_inference_steps=num_inference_steps,
                     text_kind=text_kind, device=device)  # validates names and values
    if scale < 1:
        raise UsageError(f"--scale must be >= 1, got {scale}")
    if fps <= 0:
        raise UsageError(f"--fps must be > 0, got {fps}")
    pipe, pipe_path = load_pipeline(checkpoint, device)
    dataset = open_dataset(data, split, cfg.modalities)
    if not -len(dataset) <= index < len(dataset):
        raise UsageError(f"--index {index} out of range: split {split!r} of {data} has {len(dataset)} clips")
    if text_kind is not None and pipe.text_encoder is None:
        raise UsageError(f"--text-kind {text_kind} given but the checkpoint {pipe_path} has no text encoder")
    if text_kind is None and pipe.text_encoder is not None:
        text_kind = pipe.text_kind
    item = dataset[index % len(dataset)]
    dataset.close()
    batch = collate_clips([item])
    used = [m for m in item["actions"] if m in pipe.modalities]
    pred = predict(pipe, batch, used, seed, num_inference_steps, text_kind)[0]  # (F, H, W, 3)

    # The same accumulator as `mmsim evaluate`, so the numbers match that clip's per-clip row.
    metrics = VideoMetrics.create(lpips_net=None, fvd=False)
    metrics.update(pred[None], item["future"][None])
    clip_metrics = metrics.compute()["per_clip"][0]

    out = Path(out)
    video = compose_video(item["context"], item["future"], pred, scale=scale)
    write_video(out, video, fps=fps)
    strip = filmstrip_path(out)
    cv2.imwrite(str(strip), compose_filmstrip(item["context"], item["future"], pred)[..., ::-1])
    return {"video": out, "filmstrip": strip, "metrics": clip_metrics, "modalities_used": used,
            "text_kind": text_kind, "meta": item["meta"], "prediction": pred}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmsim generate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", metavar="CKPT", help="pipeline folder (or run/checkpoint folder, or Hub id)")
    p.add_argument("data", metavar="DATA", help="processed clip folder")
    p.add_argument("--index", type=int, required=True, help="clip index in the split")
    p.add_argument("--out", default="video.mp4", help="output mp4; <stem>_filmstrip.png is written beside it")
    p.add_argument("--split", default="test")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--drop", nargs="+", default=[], metavar="M", help=f"modalities removed {list(schema.MODALITY_NAMES)}")
    g.add_argument("--keep", nargs="+", default=None, metavar="M", help="keep only these modalities")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", "--num-inference-steps", dest="steps", type=int, default=None,
                   help="sampler steps (default: the checkpoint's)")
    p.add_argument("--text-kind", choices=list(schema.TEXT_KINDS), default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--fps", type=float, default=4.0, help="frames per second of the mp4 (default 4: easy to follow)")
    p.add_argument("--scale", type=int, default=4, help="pixel upscaling of each panel (default 4)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = generate(args.checkpoint, args.data, args.index, args.out, split=args.split, drop=args.drop,
                       keep=args.keep, seed=args.seed, num_inference_steps=args.steps, text_kind=args.text_kind,
                       device=args.device, fps=args.fps, scale=args.scale)
    except MMSimError as e:
        print(f"mmsim generate: error: {e}", file=sys.stderr)
        return exit_status(e)
    meta = res["meta"]
    m = res["metrics"]
    print(f"clip {meta['index']} ({meta.get('subject')}, {meta.get('activity')}), modalities {res['modalities_used']}: "
          f"mse={m['mse']:.4f} psnr={m['psnr']:.2f} ssim={m['ssim']:.4f}")
    print(f"wrote {res['video']} and {res['filmstrip']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
