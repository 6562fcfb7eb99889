"""Is each modality's information really in the video? Measured with the synthetic world's oracle alone.

    python -m mmsim.training.experiments.modality_information --data DATA [--split test] [--clips 64] [--out FILE.json]

For test clips of synthetic recordings (``mmsim synth`` + ``mmsim preprocess``), the oracle re-renders the
future with one modality's future held at its last history value (:func:`hold_future`). The PSNR between that
video and the video of the recorded actions is what not knowing that modality costs: a model's margin from a
modality cannot exceed it by much. Prints one line per modality held, per pose extrapolated, per modality known
alone (the others guessed), per part of body pose held, and the two bounds (every modality held, copying the
last frame); then whether the margin and drop targets can hold together on these losses
(:mod:`~mmsim.training.experiments.targets`). No model is involved.
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
from tabulate import tabulate

from mmsim_core import schema
from mmsim.training.control import VISIBLE_PSNR, future_scores, mean_scores, oracle_clips, open_oracle_split
from mmsim.training.experiments.targets import FEASIBLE_RATIO, TARGET_MARGIN_DB, TARGET_MAX_DROP_DB

logger = logging.getLogger("mmsim.experiments.modality_information")


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


FORMAT = "mmsim-modality-information-v3"

GUESSES: dict[str, Callable[[dict, int, str], dict]] = {"hold": hold_future, "extrapolate": extrapolate_future}

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

    ``feasibility`` checks the result targets against these losses (see :mod:`~mmsim.training.experiments.targets`): per
    modality, the loss of not knowing it over the loss of knowing only it (the single-modality margin and
    the drop) and over the loss of knowing nothing (the text margin and the drop, ``vs_text``)."""
    t0 = time.perf_counter()
    ds = open_oracle_split(data, split)
    h = ds.context_frames
    items, _, raws, render = oracle_clips(ds, data, split, clips, "modality information")
    full = np.stack([render(it["meta"], raw) for it, raw in zip(items, raws)])  # (N, F, H, W, 3)
    last = np.stack([np.repeat(it["context"][-1:], full.shape[1], 0) for it in items])

    def entry(pred: np.ndarray) -> dict:
        sc = future_scores(pred, full, ssim=False)
        visible = sc["psnr"] < VISIBLE_PSNR
        # Mean per-clip PSNR is dominated by clips the change misses (their PSNR is huge); the PSNR of
        # the mean MSE weighs every pixel of the test set alike.
        pooled = float(10 * np.log10(1.0 / max(float(np.mean(sc["mse"])), 1e-10)))
        return {**mean_scores(sc), "psnr_pooled": pooled, "visible_clips": int(visible.sum()),
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
        "format": FORMAT,
        "data": str(data), "split": split, "num_clips": len(items), "visible_psnr": VISIBLE_PSNR,
        "held": held, "extrapolated": extrapolated, "guess": best, "alone": alone, "body_parts": body_parts,
        "every_modality_held": every, "copy_last_frame": entry(last),
        "feasibility": {"ratio_required": FEASIBLE_RATIO, "drop_db": TARGET_MAX_DROP_DB, "margin_db": TARGET_MARGIN_DB,
                        "modalities": feasibility, "feasible": all(f["feasible"] for f in feasibility.values()),
                        "feasible_vs_text": all(f["vs_text"]["feasible"] for f in feasibility.values())},
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def _print_ratios(title: str, f: dict, denominator: str, pick, feasible: bool) -> None:
    """One ratio table: per modality, the loss of not knowing it over ``denominator``'s loss."""
    rows = []
    for m, x in f["modalities"].items():
        mse, ratio, ok = pick(x)
        rows.append([m, x["unknown_mse"], mse, ratio, "possible" if ok else "impossible"])
    print(f"\n{title}")
    print(tabulate(rows, headers=["modality", "L(m unknown)", f"L({denominator})", "ratio", f"<= {f['ratio_required']:.2f}"],
                   floatfmt=("", ".5f", ".5f", ".2f", "")))
    print(f"both targets at once: {'possible' if feasible else 'ruled out (additive errors, these guesses)'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmsim.training.experiments.modality_information",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="processed synthetic clips (with oracle sidecars)")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=64, help="clips spread over the split (default 64)")
    p.add_argument("--out", default=None, help="also write the report as JSON here")
    args = p.parse_args(argv)
    r = modality_information(args.data, args.split, args.clips)
    n = r["num_clips"]
    print(f"{n} clips of {r['data']} ({r['split']}); oracle future vs oracle future with ...")
    named = [(f"{m} held", x) for m, x in r["held"].items()]
    named += [(f"{m} extrapolated", x) for m, x in r["extrapolated"].items()]
    named += [(f"only {m} known", x) for m, x in r["alone"].items()]
    named += [(f"body_pose {part} held", x) for part, x in r["body_parts"].items()]
    named += [("every modality held", r["every_modality_held"]), ("copy last frame", r["copy_last_frame"])]
    print(tabulate([[name, x["mse"], x["psnr_pooled"], x["psnr"], f"{x['visible_clips']}/{n}"] for name, x in named],
                   headers=["", "MSE", "PSNR of mean MSE", "mean clip PSNR",
                            f"clips visibly changed (< {r['visible_psnr']:.0f} dB)"],
                   floatfmt=("", ".5f", ".2f", ".2f", "")))
    f = r["feasibility"]
    guesses = ", ".join(f"{m} {g}" for m, g in r["guess"].items())
    _print_ratios(f"Margin >= {f['margin_db']} dB over every single modality and any drop <= {f['drop_db']} dB "
                  f"(guesses: {guesses}):", f, "only m known",
                  lambda x: (x["alone_mse"], x["ratio"], x["feasible"]), f["feasible"])
    _print_ratios(f"The text margin (>= {f['margin_db']} dB) and the drop target:", f, "nothing known",
                  lambda x: (x["vs_text"]["nothing_known_mse"], x["vs_text"]["ratio"], x["vs_text"]["feasible"]),
                  f["feasible_vs_text"])
    print(f"({r['seconds']:.0f} s)")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
