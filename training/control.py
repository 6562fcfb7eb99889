"""Counterfactual control fidelity (beyond the paper): does the simulator follow EDITED actions?

    from mmsim.training.control import control_fidelity
    report = control_fidelity("runs/ours/final", "data/processed", clips=16)
    python -m mmsim.training.control runs/ours/final data/processed --clips 16 --out results/control.json

No real dataset can say what the video would have shown under other actions; the synthetic world can.
For held-out clips of synthetic recordings, each edit below changes the FUTURE steps of one modality
(history steps are left alone, so the context frames stay true), in raw units:

* ``shift hand``   — the right forearm and hand points of ``body_pose`` move 10 cm to the body's right
  (along the shoulder line), ramped in over the first three future steps;
* ``release grip`` — tactile pressure above the ADC floor scaled by 0 (both hands let go);
* ``firm grip``    — every taxel of both gloves pressed to the top of the ADC range (the strongest grip
  the sensor can report; in the synthetic world this grasps an object within reach, squashes soft ones);
* ``zero EMG``     — the EMG envelope set to 0 (no muscle effort: nothing is lifted or twisted);
* ``delay body``   — body motion delayed by 3 steps (future step t takes the pose of step t-3).

The edited raw trajectories are rendered by the recording's oracle
(``load_oracle(meta["source"]).render_clip(meta["video_frame_indices"], raw)``), and re-normalised with
the dataset statistics for the simulator. Reported per edit (future frames, metrics as in evaluation):

* ``follow``   — prediction for the edited actions vs the oracle's edited video (higher PSNR = better);
* ``ignore``   — prediction for the ORIGINAL actions vs the edited video: what a model that ignores
  the edit would score. ``follow - ignore`` (``gain_psnr``) > 0 means the model follows the edit;
* ``edit_effect_psnr`` — oracle original vs oracle edited: how much the edit changes the video (an
  edit the world does not show cannot be followed);
* ``delta_cosine`` — cosine between the predicted change (pred edited - pred original) and the true
  change (oracle edited - oracle original), per clip, averaged: 1 = moves exactly the right pixels.

``reference`` scores the prediction for the original actions against the oracle's re-rendering of the
original actions (the model's plain accuracy on the same clips, without video compression).
Predictions use one fixed noise draw per clip (as ``mmsim evaluate``), the same for every edit.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from mmsim_core import schema
from mmsim_core.errors import MMSimError

logger = logging.getLogger("mmsim.control")

VISIBLE_PSNR = 40.0
"""An edit counts as visible on a clip when the oracle's original and edited videos differ by more than
this (PSNR below it): about one object or hand moving by a few pixels."""

# Positions of segments inside the 28-point body_pose chain list.
_CHAIN_POS = {name: [i for i, s in enumerate(schema.BODY_POSE_INDICES) if s == schema.XSENS_BODY_SEGMENTS.index(name)]
              for name in ("Right Forearm", "Right Hand", "Left Upper Arm", "Right Upper Arm")}  # fmt: skip


def _ramp(T: int, h: int, steps: int = 3) -> np.ndarray:
    """(T,) 0 on history steps, rising to 1 over the first ``steps`` future steps."""
    t = np.arange(T, dtype=np.float32)
    return np.clip((t - h + 1) / steps, 0.0, 1.0) * (t >= h)


def shift_hand(raw: dict, h: int, cm: float = 10.0) -> dict:
    bp = raw["body_pose"].copy()  # (T, 28, 3)
    right = bp[:, _CHAIN_POS["Right Upper Arm"][0]] - bp[:, _CHAIN_POS["Left Upper Arm"][0]]  # shoulder line
    right[:, 2] = 0.0
    right /= np.maximum(np.linalg.norm(right, axis=1, keepdims=True), 1e-6)
    offset = cm * _ramp(len(bp), h)[:, None] * right  # (T, 3)
    for name in ("Right Forearm", "Right Hand"):
        for p in _CHAIN_POS[name]:
            bp[:, p] += offset
    return {**raw, "body_pose": bp}


def scale_force(raw: dict, h: int, factor: float) -> dict:
    lo = schema.TACTILE_CLIP[0]
    hf = raw["hand_force"].copy()  # (T, 2, 32, 32)
    hf[h:] = lo + (hf[h:] - lo).clip(min=0.0) * factor
    return {**raw, "hand_force": hf}


def firm_grip(raw: dict, h: int) -> dict:
    hf = raw["hand_force"].copy()
    hf[h:] = np.maximum(hf[h:], schema.TACTILE_CLIP[1])
    return {**raw, "hand_force": hf}


def zero_emg(raw: dict, h: int) -> dict:
    emg = raw["emg"].copy()
    emg[h:] = 0.0
    return {**raw, "emg": emg}


def delay_body(raw: dict, h: int, steps: int = 3) -> dict:
    bp = raw["body_pose"].copy()
    T = len(bp)
    src = np.clip(np.arange(T) - steps, 0, None)
    bp[h:] = raw["body_pose"][src[h:]]
    return {**raw, "body_pose": bp}


EDITS: dict[str, tuple[str, Callable[[dict, int], dict]]] = {
    "shift hand": ("right forearm + hand 10 cm to the right (body_pose)", shift_hand),
    "release grip": ("tactile pressure x0 (hand_force)", lambda r, h: scale_force(r, h, 0.0)),
    "firm grip": ("both gloves at full pressure (hand_force)", firm_grip),
    "zero EMG": ("EMG envelope set to 0 (emg)", zero_emg),
    "delay body": ("body motion delayed by 3 steps (body_pose)", delay_body),
}


def future_scores(pred: np.ndarray, target: np.ndarray, ssim: bool = True) -> dict[str, np.ndarray]:
    """Per-clip mean MSE / PSNR (/ SSIM, the costly one) of future frames, uint8 (N, F, H, W, 3)."""
    from mmsim_core.evaluation.metrics import frame_mse, frame_psnr, frame_ssim, to_unit

    p, t = to_unit(pred), to_unit(target)
    out = {"mse": frame_mse(p, t).mean(1).numpy(), "psnr": frame_psnr(p, t).mean(1).numpy()}  # per clip, (N,)
    if ssim:
        out["ssim"] = frame_ssim(p, t).mean(1).numpy()
    return out


def mean_scores(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-clip scores averaged over the clips."""
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _delta_cosine(pred_e, pred_o, ora_e, ora_o) -> np.ndarray:
    dp = pred_e.astype(np.float64) - pred_o.astype(np.float64)
    do = ora_e.astype(np.float64) - ora_o.astype(np.float64)
    dp, do = dp.reshape(len(dp), -1), do.reshape(len(do), -1)
    denom = np.linalg.norm(dp, axis=1) * np.linalg.norm(do, axis=1)
    return np.where(denom > 0, (dp * do).sum(1) / np.maximum(denom, 1e-12), 0.0)


def open_oracle_split(data: str, split: str):
    """``split`` of ``data`` with every modality the oracle needs, refusing an empty split."""
    from mmsim.training.evaluate import open_dataset

    ds = open_dataset(data, split, schema.MODALITY_NAMES)
    if len(ds) == 0:
        raise MMSimError(f"split {split!r} of {data} has no clips")
    return ds


def oracle_clips(ds, data: str, split: str, clips: int | None, purpose: str):
    """``clips`` clips spread evenly over the split, of recordings with all four modalities (the oracle
    needs them): (items, skipped indices, their raw actions, ``render(meta, raw)`` -> future frames
    (F, H, W, 3) the world shows under ``raw``)."""
    from mmsim_core.synth import load_oracle
    from mmsim.training.evaluate import pick_indices

    items, skipped = [], []
    for i in pick_indices(len(ds), clips):
        it = ds[i]
        if all(m in it["actions"] for m in schema.MODALITY_NAMES):
            items.append(it)
        else:
            skipped.append(int(i))
    if not items:
        raise MMSimError(f"no clip of {data} ({split}) has all four modalities for the oracle")
    h, stats = ds.context_frames, ds.stats
    raws = [{m: schema.denormalize(m, it["actions"][m], stats) for m in schema.MODALITY_NAMES} for it in items]
    oracles: dict[str, object] = {}

    def render(meta, raw) -> np.ndarray:
        src = meta["source"]
        if src not in oracles:
            try:
                oracles[src] = load_oracle(src)
            except MMSimError as e:
                raise MMSimError(f"{purpose} needs synthetic recordings with an oracle: {e}") from None
        return oracles[src].render_clip(meta["video_frame_indices"], raw)[h:]  # (F, H, W, 3)

    return items, skipped, raws, render


def predict_futures(pipe, items: list[dict], acts_list: list[dict], used: list[str], text_kind: str | None,
                    steps: int, seed: int, batch_size: int) -> np.ndarray:
    """The pipeline's future frames uint8 (N, F, H, W, 3) for ``items`` under the (normalised) actions
    ``acts_list``, with one fixed noise draw per clip (as ``mmsim evaluate``)."""
    from mmsim.training.evaluate import clip_noise

    out = []
    for s in range(0, len(items), batch_size):
        chunk = list(range(s, min(s + batch_size, len(items))))
        context = np.stack([items[j]["context"] for j in chunk])
        actions = {m: np.stack([acts_list[j][m] for j in chunk]) for m in used}
        text = [items[j]["text"][text_kind] for j in chunk] if text_kind else None
        gen = torch.Generator(pipe._execution_device).manual_seed(seed)
        out.append(pipe(context=context, actions=actions, text=text, num_inference_steps=steps, generator=gen,
                        latents=clip_noise(pipe, [items[j]["meta"]["index"] for j in chunk], seed)).frames)
    return np.concatenate(out)


def control_fidelity(checkpoint: str, data: str, split: str = "test", clips: int = 16, seed: int = 0,
                     edits: Mapping[str, tuple[str, Callable]] | None = None, batch_size: int = 8,
                     num_inference_steps: int | None = None, device: str = "auto") -> dict:
    """Score the simulator on edited action trajectories against the oracle (see module doc)."""
    from mmsim_core.evaluation.loading import load_pipeline

    edits = dict(EDITS if edits is None else edits)
    t0 = time.perf_counter()
    pipe, pipe_path = load_pipeline(checkpoint, device)
    ds = open_oracle_split(data, split)
    if pipe.context_frames != ds.context_frames:
        raise MMSimError(f"checkpoint has h={pipe.context_frames} context frames, dataset {ds.context_frames}")
    h, stats = ds.context_frames, ds.stats  # h: history steps the edits leave alone
    text_kind = pipe.text_kind
    used = [m for m in ds.modalities if m in pipe.modalities]
    steps = int(num_inference_steps or pipe.config.default_num_inference_steps)

    items, skipped, raws, render = oracle_clips(ds, data, split, clips, "control fidelity")

    def predict(acts_list: list[dict]) -> np.ndarray:
        return predict_futures(pipe, items, acts_list, used, text_kind, steps, seed, batch_size)

    oracle_orig = np.stack([render(it["meta"], raw) for it, raw in zip(items, raws)])
    pred_orig = predict([it["actions"] for it in items])
    reference = future_scores(pred_orig, oracle_orig)
    recorded = future_scores(oracle_orig, np.stack([it["future"] for it in items]), ssim=False)  # oracle vs the mp4

    results = {}
    for name, (description, fn) in edits.items():
        edited = [fn(raw, h) for raw in raws]
        oracle_e = np.stack([render(it["meta"], raw) for it, raw in zip(items, edited)])
        acts_e = [{m: schema.normalize(m, raw[m], stats) for m in schema.MODALITY_NAMES} for raw in edited]
        pred_e = predict(acts_e)
        follow, ignore = future_scores(pred_e, oracle_e), future_scores(pred_orig, oracle_e, ssim=False)
        effect = future_scores(oracle_orig, oracle_e, ssim=False)
        gain = follow["psnr"] - ignore["psnr"]
        cos = _delta_cosine(pred_e, pred_orig, oracle_e, oracle_orig)
        visible = effect["psnr"] < VISIBLE_PSNR
        results[name] = {
            "description": description,
            "follow": mean_scores(follow),
            "ignore": mean_scores(ignore),
            "gain_psnr": float(np.mean(gain)),
            "edit_effect_psnr": float(np.mean(effect["psnr"])),
            "delta_cosine": float(np.mean(cos)),
            "clips_following": int(np.sum(gain > 0)),
            # The same, on the clips where the edit visibly changes the oracle video.
            "visible_clips": int(visible.sum()),
            "gain_psnr_visible": float(np.mean(gain[visible])) if visible.any() else None,
            "delta_cosine_visible": float(np.mean(cos[visible])) if visible.any() else None,
        }
        logger.info("control %s: follow %.2f dB, ignore %.2f dB, delta cos %.3f", name,
                    results[name]["follow"]["psnr"], results[name]["ignore"]["psnr"], results[name]["delta_cosine"])
    ds.close()
    return {
        "format": "mmsim-control-v1",
        "checkpoint": str(checkpoint),
        "checkpoint_resolved": pipe_path,
        "data": str(data),
        "split": split,
        "num_clips": len(items),
        "clip_indices": [int(it["meta"]["index"]) for it in items],
        "skipped_clips_missing_modalities": skipped,
        "modalities_used": used,
        "text_kind": text_kind,
        "num_inference_steps": steps,
        "seed": seed,
        "reference": mean_scores(reference),
        "oracle_vs_recorded": mean_scores(recorded),
        "edits": results,
        "seconds": time.perf_counter() - t0,
    }


def markdown(report: dict, title: str = "Control fidelity") -> str:
    from tabulate import tabulate

    ref, n = report["reference"], report["num_clips"]
    rows = [[f"{name} ({r['description']})", f"{r['follow']['psnr']:.2f}", f"{r['ignore']['psnr']:.2f}",
             f"{r['gain_psnr']:+.2f}", f"{r['follow']['ssim']:.3f}", f"{r['delta_cosine']:.3f}",
             f"{r['edit_effect_psnr']:.2f}", f"{r['clips_following']}/{n}",
             f"{r['visible_clips']}: {r['gain_psnr_visible']:+.2f} / {r['delta_cosine_visible']:.3f}"
             if r["visible_clips"] else "0"] for name, r in report["edits"].items()]
    header = ["Edit", "Follow PSNR ↑", "Ignore PSNR", "Gain (dB)", "Follow SSIM ↑", "Δ-cosine ↑", "Edit effect PSNR",
              "Clips following", "Visible clips: gain (dB) / Δ-cosine"]
    lines = [f"### {title}", "",
             f"{n} held-out clips; prediction for the original actions vs the oracle's re-rendering: PSNR "
             f"{ref['psnr']:.2f} dB, SSIM {ref['ssim']:.3f}, MSE {ref['mse']:.4f}.", "",
             tabulate(rows, headers=header, tablefmt="pipe", disable_numparse=True,
                      colalign=("left",) + ("right",) * (len(header) - 1)),
             "", "Follow: prediction for the edited actions vs the oracle video of the edit. Ignore: prediction for "
             "the original actions vs that video. Gain > 0: the model follows the edit. Δ-cosine: cosine between "
             "predicted and true pixel change. Edit effect: PSNR between the oracle's original and edited videos "
             f"(lower = bigger visible change); visible clips: those where it is below {VISIBLE_PSNR:.0f} dB."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmsim.training.control", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    p.add_argument("--out", default=None, help="JSON file (a .md table is written beside it)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = control_fidelity(args.checkpoint, args.data, args.split, args.clips, args.seed,
                                  num_inference_steps=args.steps)
    except MMSimError as e:
        print(f"control: error: {e}", file=sys.stderr)
        return 1
    md = markdown(report)
    print(md)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        out.with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
