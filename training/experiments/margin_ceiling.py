"""How much could hand pose, EMG and force add over body pose at all? The oracle's ceiling for a checkpoint.

    python -m mmsim.training.experiments.margin_ceiling CKPT [CKPT ...] --data DATA [--split test] [--clips 64]
                                                        [--threshold 0] [--dilate 1] [--out FILE.json]

Beyond body pose, Ours multisensory hears hand pose, EMG and force, and those only decide the pixels the world
draws differently when they change (the oracle renders each one held still). Filling exactly those pixels of a
checkpoint's prediction with the truth gives its *ceiling*: what it would score with perfect use of the three
and nothing else changed. Run it on a Body-pose only checkpoint: ``ceiling - model`` estimates the largest
margin a model as accurate elsewhere can have over it. Prints, per checkpoint, model and ceiling PSNR (against
the oracle's frames, per frame on [0, 1], averaged), the gain, and the share of its squared error in the mask;
and the share of future pixels each modality decides.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tabulate import tabulate

from mmsim_core import schema
from mmsim_core.errors import MMSimError
from mmsim_core.evaluation.loading import load_pipeline
from mmsim.training.control import oracle_clips, open_oracle_split, predict_futures
from mmsim.training.experiments.modality_information import hold_future

logger = logging.getLogger("mmsim.experiments.margin_ceiling")


DIRECT_MODALITIES = ("hand_pose", "emg", "hand_force")
"""What Ours multisensory hears beyond Body-pose only: the modalities whose ceiling :func:`margin_ceiling` measures."""


def margin_ceiling(checkpoints: Sequence[str], data: str, split: str = "test", clips: int | None = 64,
                   modalities: Sequence[str] = DIRECT_MODALITIES, threshold: int = 0, dilate: int = 1,
                   seed: int = 0, batch_size: int = 8, num_inference_steps: int | None = None,
                   device: str = "auto") -> dict:
    """The most ``modalities`` could add to each checkpoint's PSNR, measured with the synthetic oracle.

    Body pose already places the camera and the hands; hand pose, EMG and force can only change the
    pixels they make the world draw differently (fingers, a held or squashed object, scrubbed dirt). For
    each clip the oracle renders the future with the recorded actions and with each of ``modalities``
    held at its last history value (:func:`hold_future`); the pixels where any of those renders differ
    from the recorded one by more than ``threshold`` uint8 levels on any channel, grown by ``dilate``
    pixels, are the mask those modalities decide. The *ceiling* replaces a checkpoint's prediction inside
    the mask by the oracle's frame: what the checkpoint would score had it used those modalities
    perfectly and changed nothing else. ``ceiling - model`` estimates the most a model at that accuracy
    elsewhere can gain from them, so for a Body-pose only checkpoint it estimates the largest margin Ours
    multisensory can have over it at the same quality outside the mask. It is an estimate, not a strict
    bound: the mask is where *holding* the three changes the video, and another trajectory could touch a
    few pixels more (``dilate`` covers their edges). Scores are against the oracle's
    frames (no video compression), per frame on [0, 1], averaged; ``share_of_mse_in_mask`` pools the
    squared error over every clip."""
    unknown = [m for m in modalities if m not in schema.MODALITY_NAMES]
    if unknown or not modalities:
        raise MMSimError(f"modalities must be a non-empty subset of {list(schema.MODALITY_NAMES)}, got {list(modalities)}")
    if threshold < 0 or dilate < 0:
        raise MMSimError(f"threshold and dilate must be >= 0, got {threshold} and {dilate}")
    if not checkpoints:
        raise MMSimError("margin ceiling needs at least one checkpoint")
    t0 = time.perf_counter()
    ds = open_oracle_split(data, split)
    h = ds.context_frames
    items, skipped, raws, render = oracle_clips(ds, data, split, clips, "margin ceiling")
    full = np.stack([render(it["meta"], raw) for it, raw in zip(items, raws)])  # (N, F, H, W, 3) uint8

    def changed(m: str) -> np.ndarray:  # (N, F, H, W) bool: pixels holding ``m`` changes
        held = np.stack([render(it["meta"], hold_future(raw, h, m)) for it, raw in zip(items, raws)])
        mask = torch.from_numpy((np.abs(held.astype(np.int16) - full).max(-1) > threshold))
        if dilate:  # a max-pool over H, W grows the mask by ``dilate`` pixels
            k = 2 * dilate + 1
            mask = torch.nn.functional.max_pool2d(mask.flatten(0, 1)[:, None].float(), k, 1, dilate)[:, 0] > 0
            mask = mask.view(full.shape[:-1])
        return mask.numpy()

    masks = {m: changed(m) for m in modalities}
    union = np.logical_or.reduce(list(masks.values()))
    truth = torch.from_numpy(full).float() / 255.0

    def scores(pred: np.ndarray, mask: np.ndarray) -> dict:
        p = torch.from_numpy(pred).float() / 255.0
        m = torch.from_numpy(mask)[..., None]
        err = (p - truth).pow(2)
        ceiling_err = (torch.where(m, truth, p) - truth).pow(2)

        def psnr(e: torch.Tensor) -> float:  # per frame, averaged
            return float((10 * torch.log10(1.0 / e.mean(dim=(-3, -2, -1)).clamp_min(1e-10))).mean())

        model, ceil = psnr(err), psnr(ceiling_err)
        return {"model_psnr": model, "ceiling_psnr": ceil, "ceiling_gain": ceil - model,
                "model_mse": float(err.mean()), "ceiling_mse": float(ceiling_err.mean()),
                "share_of_mse_in_mask": float((err * m).sum() / err.sum().clamp_min(1e-12))}

    results = {}
    for ckpt in checkpoints:
        pipe, pipe_path = load_pipeline(ckpt, device)
        if pipe.context_frames != h:
            raise MMSimError(f"{ckpt}: checkpoint has h={pipe.context_frames} context frames, dataset {h}")
        used = [m for m in ds.modalities if m in pipe.modalities]
        text_kind = pipe.text_kind
        steps = int(num_inference_steps or pipe.config.default_num_inference_steps)
        pred = predict_futures(pipe, items, [it["actions"] for it in items], used, text_kind, steps, seed, batch_size)
        results[str(ckpt)] = {"modalities_used": used, "num_inference_steps": steps,
                              "all": scores(pred, union), "per_modality": {m: scores(pred, masks[m]) for m in modalities}}
        logger.info("margin ceiling %s: %.2f dB, ceiling %.2f dB", ckpt, results[str(ckpt)]["all"]["model_psnr"],
                    results[str(ckpt)]["all"]["ceiling_psnr"])
    ds.close()
    return {
        "format": "mmsim-margin-ceiling-v1",
        "data": str(data), "split": split, "num_clips": len(items), "skipped_clips_missing_modalities": skipped,
        "modalities": list(modalities), "threshold": threshold, "dilate": dilate, "seed": seed,
        "mask_fraction": {"all": float(union.mean()), **{m: float(x.mean()) for m, x in masks.items()}},
        "checkpoints": results, "seconds": time.perf_counter() - t0,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmsim.training.experiments.margin_ceiling",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", required=True, help="processed synthetic clips (with oracle sidecars)")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=64, help="clips spread over the split (default 64)")
    p.add_argument("--modalities", default=",".join(DIRECT_MODALITIES), help="comma-separated (default: %(default)s)")
    p.add_argument("--threshold", type=int, default=0, help="uint8 levels a pixel must change by (default 0: any)")
    p.add_argument("--dilate", type=int, default=1, help="pixels the mask is grown by (default 1)")
    p.add_argument("--out", default=None, help="also write the report as JSON here")
    args = p.parse_args(argv)
    r = margin_ceiling(args.checkpoints, args.data, args.split, args.clips, args.modalities.split(","),
                       args.threshold, args.dilate)
    print(f"{r['num_clips']} clips of {r['data']} ({r['split']}); mask = pixels that change when "
          f"{'/'.join(r['modalities'])} is held (> {r['threshold']} levels, grown {r['dilate']} px)")
    print("share of future pixels: " + ", ".join(f"{k} {v:.1%}" for k, v in r["mask_fraction"].items()))
    rows = [[ckpt[-48:], name, f"{x['model_psnr']:.2f}", f"{x['ceiling_psnr']:.2f}", f"{x['ceiling_gain']:+.2f}",
             f"{x['share_of_mse_in_mask']:.1%}"]
            for ckpt, c in r["checkpoints"].items() for name, x in [("all", c["all"]), *c["per_modality"].items()]]
    print(tabulate(rows, headers=["checkpoint", "mask", "model", "ceiling", "gain", "MSE in mask"],
                   disable_numparse=True, colalign=("left", "left") + ("right",) * 4))
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
