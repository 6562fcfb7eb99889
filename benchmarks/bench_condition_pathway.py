"""Which path do a checkpoint's actions take? The ego-motion warp, or the paper's conditioning y°?

    python benchmarks/bench_condition_pathway.py CKPT DATA [--split test] [--clips 64]

``mmsim-cpu``-style models hear the actions twice: the ego-motion head turns body pose into a warp of the
last context frame, and the action encoder turns every modality into y° (experts, anchoring, fusion,
interaction), which the denoiser reads through FiLM and cross-attention. On the same clips and noise this
prints mean clip PSNR for

* ``both``: the checkpoint as it is;
* ``warp only``: y° replaced by the all-dropped null embedding, the warp kept;
* ``y° only``: the warp replaced by the identity (no motion known), y° kept;

then, for each modality, how much the output moves (RMS on [0, 1]) and what PSNR becomes when that
modality is shuffled across clips or dropped. A modality whose shuffle moves the output by ~1e-4 is not
used, whatever the oracle says its information is worth (``bench_modality_information.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmsim_core.data.dataset import ClipDataset  # noqa: E402
from mmsim_core.pipelines.multisensory import MultisensoryVideoPipeline  # noqa: E402


def clip_psnr(pred: np.ndarray, true: np.ndarray) -> float:
    """PSNR per frame on [0, 1], averaged (as ``mmsim evaluate``)."""
    mse = ((pred - true) ** 2).reshape(*pred.shape[:2], -1).mean(-1)  # (N, F)
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    pipe = MultisensoryVideoPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    ds = ClipDataset(args.data, split=args.split, modalities=pipe.modalities)
    items = [ds[int(i)] for i in np.linspace(0, len(ds) - 1, min(args.clips, len(ds))).astype(int)]
    context = np.stack([it["context"] for it in items])  # (N, h, H, W, 3) uint8
    future = np.stack([it["future"] for it in items]).astype(np.float32) / 255.0  # (N, F, H, W, 3)
    mods = [m for m in pipe.modalities if all(m in it["actions"] for it in items)]
    actions = {m: np.stack([it["actions"][m] for it in items]) for m in mods}

    encode = pipe.encode_conditions

    def generate(acts: dict, path: str = "both") -> np.ndarray:
        def conditions(a, context_features, action_mask=None, text=None):
            y, ego = encode(a, context_features, action_mask, text)
            if path == "both":
                return y, ego
            y_null, _ = encode({}, context_features, None, text)
            return (y_null, ego) if path == "warp" else (y, None)

        pipe.encode_conditions = conditions
        try:
            g = torch.Generator().manual_seed(args.seed)
            return pipe(context, actions=acts, num_inference_steps=1, generator=g).frames.astype(np.float32) / 255.0
        finally:
            pipe.encode_conditions = encode

    print(f"{args.checkpoint}: {len(items)} clips of {args.data} ({args.split}), 1 sampler step, modalities {mods}")
    base = generate(actions)
    print(f"  both        PSNR {clip_psnr(base, future):6.2f}")
    print(f"  warp only   PSNR {clip_psnr(generate(actions, 'warp'), future):6.2f}   (y° = null embedding)")
    print(f"  y° only     PSNR {clip_psnr(generate(actions, 'y'), future):6.2f}   (identity warp)")
    perm = np.random.default_rng(args.seed).permutation(len(items))
    print(f"  {'modality':<11} {'shuffled: RMS change':>20} {'PSNR':>6}   {'dropped: RMS change':>19} {'PSNR':>6}")
    for m in mods:
        shuffled = generate({**actions, m: actions[m][perm]})
        dropped = generate({k: v for k, v in actions.items() if k != m})
        rms = [float(np.sqrt(((o - base) ** 2).mean())) for o in (shuffled, dropped)]
        print(f"  {m:<11} {rms[0]:20.5f} {clip_psnr(shuffled, future):6.2f}   {rms[1]:19.5f} {clip_psnr(dropped, future):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
