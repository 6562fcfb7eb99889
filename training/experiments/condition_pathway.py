"""Which path do a checkpoint's actions take? The ego-motion warp, the hand placement map, or y°?

    python -m mmsim.training.experiments.condition_pathway CKPT DATA [--split test] [--clips 64]

``mmsim-cpu``-style models hear the actions on up to three paths: the action warp's ego-motion head turns body
pose into a warp of the last context frame; its hand placement map (``action_warp.hand_map_channels > 0``) tells
the denoiser where each hand is and what it does, as an image; and the action encoder turns every
modality into y° (experts, anchoring, fusion, interaction), which the denoiser reads through FiLM and
cross-attention. On the same clips and noise this prints PSNR (per frame on [0, 1], averaged, as
``mmsim evaluate``) for

* ``both``: the checkpoint as it is;
* ``warp only``: y° replaced by the all-dropped null embedding and no hand map, the warp kept (with
  ``action_warp.context_motion`` it reads the context's motion as well as body pose);
* ``y° only``: the warp replaced by the identity (no motion known) and no hand map, y° kept;
* ``map only`` (models with a hand map): y° null and the identity warp, the hand map kept;

and, as references with no denoiser, copying the last context frame, the checkpoint's warp of it alone
(does the denoiser add to its own anchor?), and the last measured context motion continued at constant
velocity (no model: how much the context frames alone say about the camera); and the checkpoint's output
averaged over ``--noise-draws`` initial noises (is a shortfall sampling noise or a wrong mean?);
then, for each modality, how much the output moves (RMS on [0, 1]) and what PSNR becomes when that
modality is shuffled across clips or dropped. A modality whose shuffle moves the output by ~1e-4 is not
used, whatever the oracle says its information is worth (:mod:`~mmsim.training.experiments.modality_information`).

``--by-subject`` prints instead, for each subject of the split, the checkpoint's PSNR next to its warp alone
on ``--clips`` clips of that subject: does the denoiser add to its anchor on every subject, or only on some?
Run it with ``--split train`` too, to tell a residual that does not transfer from one that was never learnt.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np
import torch

from mmsim_core.data.dataset import ClipDataset
from mmsim_core.evaluation.metrics import frame_psnr, to_unit
from mmsim_core.models.action_warp.ego_motion import estimate_context_motion, warp
from mmsim_core.pipelines.multisensory import MultisensoryVideoPipeline

PATHS = ("both", "warp", "y", "map")


def generate(pipe: MultisensoryVideoPipeline, context: np.ndarray, actions: dict, path: str = "both",
             seed: int = 0) -> torch.Tensor:
    """One-step prediction (N, F, 3, H, W) in [0, 1] with the actions reaching the denoiser by ``path``:
    ``"both"`` as trained, ``"warp"`` by the action warp's anchor alone, ``"y"`` by y° alone, ``"map"`` by the
    hand map alone."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {list(PATHS)}, got {path!r}")
    encode_actions, warp_actions = pipe.encode_actions, pipe.warp_actions

    def actions_y(acts, context_features, action_mask=None, text=None):
        keep = path in ("both", "y")  # otherwise the all-dropped null embedding
        return encode_actions(acts, context_features, action_mask, text) if keep else encode_actions({}, context_features)

    def actions_warp(acts, context_frames, action_mask=None):
        out = warp_actions(acts, context_frames, action_mask)
        if out is None or path == "both":
            return out
        # a projected_warp map's keypoint flow moves pixels: it is part of the anchor, so it goes with the warp
        return replace(out, anchor=out.anchor if path == "warp" else None,
                       spatial=out.spatial if path == "map" else None)

    # The pipeline's two seams between the actions and the denoiser, replaced on this instance only.
    pipe.encode_actions, pipe.warp_actions = actions_y, actions_warp
    try:
        g = torch.Generator().manual_seed(seed)
        return to_unit(pipe(context, actions=actions, num_inference_steps=1, generator=g).frames)
    finally:
        del pipe.encode_actions, pipe.warp_actions  # back to the class methods


@torch.no_grad()
def warped_last_frame(pipe: MultisensoryVideoPipeline, context: np.ndarray, actions: dict) -> torch.Tensor:
    """The checkpoint's anchor: the last context frame moved by its action warp (ego-motion and, with a
    projected_warp map, the hands' keypoints), no denoiser (N, F, 3, H, W) in [0, 1]; the last frame itself
    when the checkpoint has no warp."""
    frames, _ = pipe.encode_context(context)
    out = pipe.warp_actions(actions, frames)
    anchor = out.anchor if out is not None and out.anchor is not None else None
    if anchor is None:  # no warp, or a model of whole frames
        anchor = frames[:, -1:].expand(-1, pipe.future_frames, -1, -1, -1)
    return (anchor.float().clamp(-1, 1) + 1) / 2


def constant_velocity(context: np.ndarray, future_frames: int) -> torch.Tensor:
    """The last context frame moved on by the last measured context motion, compounded per future step
    (N, F, 3, H, W) in [0, 1]: no model, only what the context frames show."""
    frames = to_unit(context) * 2 - 1  # (N, h, 3, H, W)
    step = estimate_context_motion(frames)[:, -1]  # (N, 2, 3)
    n = step.shape[0]
    step = torch.cat([step, torch.tensor([[[0.0, 0.0, 1.0]]]).expand(n, 1, 3)], dim=1)  # (N, 3, 3)
    cur, affines = torch.eye(3).expand(n, 3, 3), []
    for _ in range(future_frames):
        cur = cur @ step
        affines.append(cur[:, :2])
    return (warp(frames[:, -1], torch.stack(affines, dim=1)).clamp(-1, 1) + 1) / 2


def stack_items(pipe: MultisensoryVideoPipeline, items: list[dict]) -> tuple[np.ndarray, torch.Tensor, dict]:
    """ClipDataset items -> context uint8 (N, h, H, W, 3), future (N, F, 3, H, W) in [0, 1], and the actions of
    the pipeline's modalities that every item carries {name: (N, T, ...)}."""
    context = np.stack([it["context"] for it in items])
    future = to_unit(np.stack([it["future"] for it in items]))
    mods = [m for m in pipe.modalities if all(m in it["actions"] for it in items)]
    return context, future, {m: np.stack([it["actions"][m] for it in items]) for m in mods}


def has_hand_map(pipe: MultisensoryVideoPipeline) -> bool:
    return pipe.action_warp is not None and pipe.action_warp.hand_map is not None


def measure(pipe: MultisensoryVideoPipeline, items: list[dict], seed: int = 0, noise_draws: int = 4) -> dict:
    """PSNR per path and of the references, and per modality the output change (RMS on [0, 1]) and PSNR
    when it is shuffled across the clips or dropped. ``items``: ClipDataset items carrying the same
    modalities; ``noise_draws``: initial noises (seeds ``seed, seed+1, ...``) the averaged output uses."""
    if noise_draws < 1:
        raise ValueError(f"noise_draws must be >= 1, got {noise_draws}")
    context, future, actions = stack_items(pipe, items)
    mods = list(actions)

    def psnr(pred: torch.Tensor) -> float:
        return float(frame_psnr(pred, future).mean())  # per frame, averaged, as `mmsim evaluate`

    base = generate(pipe, context, actions, seed=seed)
    out = {"clips": len(items), "modalities": mods, "paths": {"both": psnr(base)}, "per_modality": {}}
    for path in PATHS[1:] if has_hand_map(pipe) else PATHS[1:-1]:
        out["paths"][path] = psnr(generate(pipe, context, actions, path, seed))
    draws = [base] + [generate(pipe, context, actions, seed=seed + i) for i in range(1, noise_draws)]
    out["references"] = {
        "copy_last": psnr(to_unit(context)[:, -1:].expand_as(future)),
        "warped_last_frame": psnr(warped_last_frame(pipe, context, actions)),
        "constant_velocity": psnr(constant_velocity(context, future.shape[1])),
        "mean_of_noise_draws": psnr(torch.stack(draws).mean(dim=0)),
        "noise_draws": noise_draws,
    }
    perm = np.random.default_rng(seed).permutation(len(items))
    for m in mods:
        row = {}
        for how, acts in (("shuffled", {**actions, m: actions[m][perm]}),
                          ("dropped", {k: v for k, v in actions.items() if k != m})):
            pred = generate(pipe, context, acts, seed=seed)
            row[f"{how}_rms"] = float((pred - base).pow(2).mean().sqrt())
            row[f"{how}_psnr"] = psnr(pred)
        out["per_modality"][m] = row
    return out


def by_subject(pipe: MultisensoryVideoPipeline, ds: ClipDataset, clips: int, seed: int = 0) -> dict:
    """{subject: {"clips", "model", "warp"}}: PSNR of the checkpoint and of its warp alone on up to ``clips``
    clips spread over each subject's part of ``ds``."""
    subjects = [ds.clip_meta(i)["subject"] for i in range(len(ds))]
    out = {}
    for s in sorted(set(subjects)):
        own = [i for i, x in enumerate(subjects) if x == s]
        items = [ds[own[int(j)]] for j in np.linspace(0, len(own) - 1, min(clips, len(own))).astype(int)]
        context, future, actions = stack_items(pipe, items)
        out[s] = {"clips": len(items),
                  "model": float(frame_psnr(generate(pipe, context, actions, seed=seed), future).mean()),
                  "warp": float(frame_psnr(warped_last_frame(pipe, context, actions), future).mean())}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmsim.training.experiments.condition_pathway",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-draws", type=int, default=4, help="initial noises the averaged output uses (default 4)")
    p.add_argument("--by-subject", action="store_true", help="model vs its warp alone, per subject (--clips each)")
    args = p.parse_args(argv)

    pipe = MultisensoryVideoPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    ds = ClipDataset(args.data, split=args.split, modalities=pipe.modalities)
    if args.by_subject:
        print(f"{args.checkpoint}: {args.data} ({args.split}), up to {args.clips} clips per subject, 1 sampler step")
        print(f"  {'subject':<8} {'clips':>5} {'model':>7} {'warp alone':>10} {'model - warp':>12}")
        for s, r in by_subject(pipe, ds, args.clips, args.seed).items():
            print(f"  {s:<8} {r['clips']:5d} {r['model']:7.2f} {r['warp']:10.2f} {r['model'] - r['warp']:+12.2f}")
        return 0
    items = [ds[int(i)] for i in np.linspace(0, len(ds) - 1, min(args.clips, len(ds))).astype(int)]
    r = measure(pipe, items, args.seed, args.noise_draws)

    print(f"{args.checkpoint}: {r['clips']} clips of {args.data} ({args.split}), 1 sampler step, "
          f"modalities {r['modalities']}")
    print(f"  both        PSNR {r['paths']['both']:6.2f}")
    print(f"  warp only   PSNR {r['paths']['warp']:6.2f}   (y° = null embedding, no hand map)")
    print(f"  y° only     PSNR {r['paths']['y']:6.2f}   (identity warp, no hand map)")
    if "map" in r["paths"]:
        print(f"  map only    PSNR {r['paths']['map']:6.2f}   (y° = null embedding, identity warp)")
    ref = r["references"]
    print(f"  mean of {ref['noise_draws']} noise draws  PSNR {ref['mean_of_noise_draws']:6.2f}")
    print("  references, no denoiser:")
    print(f"    copy last frame          PSNR {ref['copy_last']:6.2f}")
    print(f"    checkpoint's warp alone  PSNR {ref['warped_last_frame']:6.2f}")
    print(f"    constant velocity        PSNR {ref['constant_velocity']:6.2f}   (last context motion continued, no model)")
    print(f"  {'modality':<11} {'shuffled: RMS change':>20} {'PSNR':>6}   {'dropped: RMS change':>19} {'PSNR':>6}")
    for m, row in r["per_modality"].items():
        print(f"  {m:<11} {row['shuffled_rms']:20.5f} {row['shuffled_psnr']:6.2f}   "
              f"{row['dropped_rms']:19.5f} {row['dropped_psnr']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
