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
from typing import Callable, Mapping, Sequence

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


def _scores(pred: np.ndarray, target: np.ndarray, ssim: bool = True) -> dict[str, np.ndarray]:
    """Per-clip mean MSE / PSNR (/ SSIM, the costly one) of future frames, uint8 (N, F, H, W, 3)."""
    from mmsim.training.metrics import frame_mse, frame_ssim, psnr_from_mse, to_unit

    p, t = to_unit(pred), to_unit(target)
    mse = frame_mse(p, t)  # (N, F)
    out = {"mse": mse.mean(1).numpy(), "psnr": psnr_from_mse(mse).mean(1).numpy()}
    if ssim:
        out["ssim"] = frame_ssim(p, t).mean(1).numpy()
    return out


def _mean(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _delta_cosine(pred_e, pred_o, ora_e, ora_o) -> np.ndarray:
    dp = pred_e.astype(np.float64) - pred_o.astype(np.float64)
    do = ora_e.astype(np.float64) - ora_o.astype(np.float64)
    dp, do = dp.reshape(len(dp), -1), do.reshape(len(do), -1)
    denom = np.linalg.norm(dp, axis=1) * np.linalg.norm(do, axis=1)
    return np.where(denom > 0, (dp * do).sum(1) / np.maximum(denom, 1e-12), 0.0)


def _open_split(data: str, split: str):
    """``split`` of ``data`` with every modality the oracle needs, refusing an empty split."""
    from mmsim.training.evaluate import open_dataset

    ds = open_dataset(data, split, schema.MODALITY_NAMES)
    if len(ds) == 0:
        raise MMSimError(f"split {split!r} of {data} has no clips")
    return ds


def _oracle_clips(ds, data: str, split: str, clips: int | None, purpose: str):
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


def _predict(pipe, items: list[dict], acts_list: list[dict], used: list[str], text_kind: str | None, steps: int,
             seed: int, batch_size: int) -> np.ndarray:
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
    from mmsim.training.evaluate import load_pipeline, training_text_kind

    edits = dict(EDITS if edits is None else edits)
    t0 = time.perf_counter()
    pipe, pipe_path = load_pipeline(checkpoint, device)
    ds = _open_split(data, split)
    if pipe.context_frames != ds.context_frames:
        raise MMSimError(f"checkpoint has h={pipe.context_frames} context frames, dataset {ds.context_frames}")
    h, stats = ds.context_frames, ds.stats  # h: history steps the edits leave alone
    text_kind = training_text_kind(pipe_path) if pipe.text_encoder is not None else None
    used = [m for m in ds.modalities if m in pipe.modalities]
    steps = int(num_inference_steps or pipe.config.default_num_inference_steps)

    items, skipped, raws, render = _oracle_clips(ds, data, split, clips, "control fidelity")

    def predict(acts_list: list[dict]) -> np.ndarray:
        return _predict(pipe, items, acts_list, used, text_kind, steps, seed, batch_size)

    oracle_orig = np.stack([render(it["meta"], raw) for it, raw in zip(items, raws)])
    pred_orig = predict([it["actions"] for it in items])
    reference = _scores(pred_orig, oracle_orig)
    recorded = _scores(oracle_orig, np.stack([it["future"] for it in items]), ssim=False)  # oracle vs the mp4

    results = {}
    for name, (description, fn) in edits.items():
        edited = [fn(raw, h) for raw in raws]
        oracle_e = np.stack([render(it["meta"], raw) for it, raw in zip(items, edited)])
        acts_e = [{m: schema.normalize(m, raw[m], stats) for m in schema.MODALITY_NAMES} for raw in edited]
        pred_e = predict(acts_e)
        follow, ignore = _scores(pred_e, oracle_e), _scores(pred_orig, oracle_e, ssim=False)
        effect = _scores(oracle_orig, oracle_e, ssim=False)
        gain = follow["psnr"] - ignore["psnr"]
        cos = _delta_cosine(pred_e, pred_orig, oracle_e, oracle_orig)
        visible = effect["psnr"] < VISIBLE_PSNR
        results[name] = {
            "description": description,
            "follow": _mean(follow),
            "ignore": _mean(ignore),
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
        "reference": _mean(reference),
        "oracle_vs_recorded": _mean(recorded),
        "edits": results,
        "seconds": time.perf_counter() - t0,
    }


def hold_future(raw: dict, h: int, modality: str) -> dict:
    """``modality``'s future steps held at its last history value: what a predictor that is not told
    how that signal continues would have to assume (the other modalities keep their recorded future)."""
    x = raw[modality].copy()
    x[h:] = x[h - 1]
    return {**raw, modality: x}


ARM_POINTS = tuple(i for i, s in enumerate(schema.BODY_POSE_INDICES)
                   if schema.XSENS_BODY_SEGMENTS[s] in ("Left Forearm", "Left Hand", "Right Forearm", "Right Hand"))
"""The body_pose points that place the hands; the others (head, neck, trunk, shoulders, upper arms, legs) aim
the head camera."""
BODY_PARTS = {"arms": ARM_POINTS, "camera and trunk": tuple(i for i in range(len(schema.BODY_POSE_INDICES))
                                                              if i not in ARM_POINTS)}


def hold_body_points(raw: dict, h: int, points: Sequence[int]) -> dict:
    """Only these ``body_pose`` points' futures held at their last history value (see :func:`hold_future`)."""
    x = raw["body_pose"].copy()
    x[h:, list(points)] = x[h - 1, list(points)]
    return {**raw, "body_pose": x}


POSE_MODALITIES = ("body_pose", "hand_pose")
"""Trajectories a guesser can extrapolate; the tactile and EMG signals are not smooth enough to, so
:func:`extrapolate_future` holds them."""


def extrapolate_future(raw: dict, h: int, modality: str) -> dict:
    """``modality``'s future continued at its last history velocity (poses only; signals are held, as in
    :func:`hold_future`): the other simple guess a predictor without that sensor could make."""
    if modality not in POSE_MODALITIES or h < 2:
        return hold_future(raw, h, modality)
    x = raw[modality].astype(np.float64)  # (T, ...) in cm
    k = np.arange(1, len(x) - h + 1).reshape(-1, *([1] * (x.ndim - 1)))
    out = x.copy()
    out[h:] = x[h - 1] + k * (x[h - 1] - x[h - 2])
    return {**raw, modality: out.astype(raw[modality].dtype)}


MODALITY_INFORMATION_FORMAT = "mmsim-modality-information-v3"

GUESSES: dict[str, Callable[[dict, int, str], dict]] = {"hold": hold_future, "extrapolate": extrapolate_future}

GOAL_MARGIN_DB, GOAL_MAX_DROP_DB = 1.5, 0.8
FEASIBLE_RATIO = (10 ** (GOAL_MAX_DROP_DB / 10) - 1) / (10 ** (GOAL_MARGIN_DB / 10) - 1)
"""Issue 4's goals (every single-modality row ≥ 1.5 dB below Ours, any one modality dropped ≤ 0.8 dB below
it) in terms of the oracle's losses. Model a predictor's MSE as e0 + L: its own rendering error e0 (that of
Ours, which hears everything) plus the information loss L of the futures it must guess. Then the drop
goal asks L(m unknown) ≤ (10^0.08 - 1)·e0 and the margin goal L(only m known) ≥ (10^0.15 - 1)·e0, so both
can hold for some e0 only if L(m unknown) / L(only m known) ≤ this ratio (0.49), for every modality m.

The margin over the best text row pairs with the drop goal the same way: a text row hears no trajectory,
so its L is that of knowing none (for the oracle, ``every_modality_held``), and both goals need
L(m unknown) / L(nothing known) ≤ this ratio for every m. Put plainly, Ours without m must still beat the
text row by 1.5 - 0.8 = 0.7 dB."""


def modality_information(data: str, split: str = "test", clips: int | None = 64) -> dict:
    """How much of the future video each modality decides, measured with the oracle alone (no model).

    For each clip, the oracle renders the future with every recorded trajectory, and again with
    guessed futures:

    * ``held[m]`` — m's future held at its last history value (:func:`hold_future`), the rest recorded.
      The PSNR between the two is the cost, in the video, of not knowing how m continues — the most a
      model could gain from it over one that holds it still;
    * ``extrapolated[m]`` — m's future continued at its last velocity (:func:`extrapolate_future`);
    * ``alone[m]`` — only m recorded, every other modality guessed with the guess that costs it less
      (``guess``): what a single-modality model could at best see;
    * ``body_parts`` — only the arm points (forearm, hand: where the hands are) or only the rest (what
      aims the camera) of body pose held (:data:`BODY_PARTS`);
    * ``every_modality_held`` bounds what all actions together decide, and ``copy_last_frame`` is the
      trivial predictor on the same oracle frames.

    ``feasibility`` checks issue 4's result goals against these losses (see :data:`FEASIBLE_RATIO`): per
    modality, the loss of not knowing it over the loss of knowing only it (the single-modality margin and
    the drop) and over the loss of knowing nothing (the text margin and the drop, ``vs_text``)."""
    t0 = time.perf_counter()
    ds = _open_split(data, split)
    h = ds.context_frames
    items, _, raws, render = _oracle_clips(ds, data, split, clips, "modality information")
    full = np.stack([render(it["meta"], raw) for it, raw in zip(items, raws)])  # (N, F, H, W, 3)
    last = np.stack([np.repeat(it["context"][-1:], full.shape[1], 0) for it in items])

    def entry(pred: np.ndarray) -> dict:
        sc = _scores(pred, full, ssim=False)
        visible = sc["psnr"] < VISIBLE_PSNR
        # Mean per-clip PSNR is dominated by clips the change misses (their PSNR is huge); the PSNR of
        # the mean MSE weighs every pixel of the test set alike.
        pooled = float(10 * np.log10(1.0 / max(float(np.mean(sc["mse"])), 1e-10)))
        return {**_mean(sc), "psnr_pooled": pooled, "visible_clips": int(visible.sum()),
                "psnr_visible": float(np.mean(sc["psnr"][visible])) if visible.any() else None}

    def guessed(guess: Mapping[str, str]) -> dict:
        videos = []
        for it, raw in zip(items, raws):
            for m, g in guess.items():
                raw = GUESSES[g](raw, h, m)
            videos.append(render(it["meta"], raw))
        return entry(np.stack(videos))

    names = schema.MODALITY_NAMES
    held = {m: guessed({m: "hold"}) for m in names}
    extrapolated = {m: guessed({m: "extrapolate"}) for m in POSE_MODALITIES}
    best = {m: "extrapolate" if m in extrapolated and extrapolated[m]["mse"] < held[m]["mse"] else "hold"
            for m in names}
    alone = {m: guessed({o: best[o] for o in names if o != m}) for m in names}
    feasibility = {}
    for m in names:
        unknown = min(held[m]["mse"], extrapolated.get(m, held[m])["mse"])
        ratio = unknown / max(alone[m]["mse"], 1e-12)
        feasibility[m] = {"unknown_mse": unknown, "alone_mse": alone[m]["mse"], "ratio": ratio,
                          "feasible": bool(ratio <= FEASIBLE_RATIO)}
        logger.info("modality information: %s held %.2f dB, alone %.2f dB, ratio %.2f", m,
                    held[m]["psnr_pooled"], alone[m]["psnr_pooled"], ratio)
    body_parts = {part: entry(np.stack([render(it["meta"], hold_body_points(raw, h, pts))
                                        for it, raw in zip(items, raws)])) for part, pts in BODY_PARTS.items()}
    every = guessed({m: "hold" for m in names})
    for m in names:
        ratio = feasibility[m]["unknown_mse"] / max(every["mse"], 1e-12)
        feasibility[m]["vs_text"] = {"nothing_known_mse": every["mse"], "ratio": ratio,
                                     "feasible": bool(ratio <= FEASIBLE_RATIO)}
    ds.close()
    return {
        "format": MODALITY_INFORMATION_FORMAT,
        "data": str(data), "split": split, "num_clips": len(items), "visible_psnr": VISIBLE_PSNR,
        "held": held, "extrapolated": extrapolated, "guess": best, "alone": alone, "body_parts": body_parts,
        "every_modality_held": every, "copy_last_frame": entry(last),
        "feasibility": {"ratio_required": FEASIBLE_RATIO, "drop_db": GOAL_MAX_DROP_DB, "margin_db": GOAL_MARGIN_DB,
                        "modalities": feasibility, "feasible": all(f["feasible"] for f in feasibility.values()),
                        "feasible_vs_text": all(f["vs_text"]["feasible"] for f in feasibility.values())},
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip


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
    from mmsim.training.evaluate import load_pipeline, training_text_kind

    unknown = [m for m in modalities if m not in schema.MODALITY_NAMES]
    if unknown or not modalities:
        raise MMSimError(f"modalities must be a non-empty subset of {list(schema.MODALITY_NAMES)}, got {list(modalities)}")
    if threshold < 0 or dilate < 0:
        raise MMSimError(f"threshold and dilate must be >= 0, got {threshold} and {dilate}")
    if not checkpoints:
        raise MMSimError("margin ceiling needs at least one checkpoint")
    t0 = time.perf_counter()
    ds = _open_split(data, split)
    h = ds.context_frames
    items, skipped, raws, render = _oracle_clips(ds, data, split, clips, "margin ceiling")
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
        text_kind = training_text_kind(pipe_path) if pipe.text_encoder is not None else None
        steps = int(num_inference_steps or pipe.config.default_num_inference_steps)
        pred = _predict(pipe, items, [it["actions"] for it in items], used, text_kind, steps, seed, batch_size)
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


def markdown(report: dict, title: str = "Control fidelity") -> str:
    ref = report["reference"]
    lines = [f"### {title}", "",
             f"{report['num_clips']} held-out clips; prediction for the original actions vs the oracle's "
             f"re-rendering: PSNR {ref['psnr']:.2f} dB, SSIM {ref['ssim']:.3f}, MSE {ref['mse']:.4f}.", "",
             "| Edit | Follow PSNR ↑ | Ignore PSNR | Gain (dB) | Follow SSIM ↑ | Δ-cosine ↑ | Edit effect PSNR "
             "| Clips following | Visible clips: gain (dB) / Δ-cosine |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in report["edits"].items():
        lines.append(f"| {name} ({r['description']}) | {r['follow']['psnr']:.2f} | {r['ignore']['psnr']:.2f} | "
                     f"{r['gain_psnr']:+.2f} | {r['follow']['ssim']:.3f} | {r['delta_cosine']:.3f} | "
                     f"{r['edit_effect_psnr']:.2f} | {r['clips_following']}/{report['num_clips']} | "
                     + (f"{r['visible_clips']}: {r['gain_psnr_visible']:+.2f} / {r['delta_cosine_visible']:.3f} |"
                        if r["visible_clips"] else "0 |"))
    lines += ["", "Follow: prediction for the edited actions vs the oracle video of the edit. Ignore: prediction for "
              "the original actions vs that video. Gain > 0: the model follows the edit. Δ-cosine: cosine between "
              "predicted and true pixel change. Edit effect: PSNR between the oracle's original and edited videos "
              "(lower = bigger visible change); visible clips: those where it is below "
              f"{VISIBLE_PSNR:.0f} dB."]
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
