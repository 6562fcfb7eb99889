"""Control fidelity: does the simulator follow EDITED actions, and does the world show the edits at all?

    mmsim control runs/ours/final data/processed --clips 24 --out results/control.json
    mmsim control visibility data/processed --clips 24          # the oracle alone, no checkpoint

    from mmsim.training.control import control_fidelity, visibility
    report = control_fidelity("runs/ours/final", "data/processed", clips=24)

No real dataset can say what the video would have shown under other actions; the synthetic world can.
For held-out observational clips of synthetic recordings, each edit family of
:mod:`mmsim_core.synth.edits` changes the FUTURE steps of one modality (the context steps are left alone,
so the context frames stay true), at its nominal strength and default hand(s); ``hand_pose_swap`` takes
the hand pose of the next clip in the selection. The edited raw trajectories are rendered by the
recording's oracle (``load_oracle(meta["source"]).render_clip(meta["video_frame_indices"], raw)``) and
re-normalised with the dataset statistics for the simulator. Reported per family (future frames):

* ``visible_share`` — share of clips on which the edit visibly changes the oracle's video (original vs
  edited below ``VISIBLE_PSNR``); an edit the world does not show cannot be followed;
* ``change_psnr`` — mean PSNR between the oracle's original and edited videos (lower = bigger change);
* ``gain_psnr`` — on the visible clips: PSNR of the prediction for the edited actions vs the oracle's
  edited video, minus that of the prediction for the ORIGINAL actions vs the same video (what a model
  ignoring the edit scores), same noise draw. > 0: the model follows the edit;
* ``delta_cosine`` — on the visible clips: cosine between the predicted change (prediction for the edited
  actions minus prediction for the original ones) and the true change (oracle edited minus original),
  per clip, averaged. 1: the model moves exactly the right pixels; 0 for a model that ignores actions.

``reference`` scores the prediction for the original actions against the oracle's re-rendering of them
(the model's plain accuracy on the same clips); ``oracle_vs_recorded`` checks that the oracle re-renders
the recorded clips (up to video compression). Predictions use one fixed noise draw per clip (as
``mmsim evaluate``), the same for every edit.
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

from mmsim_core import schema
from mmsim_core.errors import MMSimError, UsageError, exit_status
from mmsim_core.synth.edits import EDIT_FAMILIES, FAMILY_DESCRIPTIONS, FAMILY_MODALITY, apply_edit

logger = logging.getLogger("mmsim.control")

REPORT_FORMAT = "mmsim-control-v2"
VISIBILITY_FORMAT = "mmsim-control-visibility-v1"
EDITS: tuple[str, ...] = EDIT_FAMILIES
"""The edit families scored by default: every family of :mod:`mmsim_core.synth.edits`."""

VISIBLE_PSNR = 40.0
"""An edit counts as visible on a clip when the oracle's original and edited videos differ by more than
this (PSNR below it): about one object or hand moving by a few pixels."""


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


def delta_cosine(pred_e, pred_o, ora_e, ora_o) -> np.ndarray:
    """Per clip ``(N,)``: cosine between the predicted and the true pixel change (0 where either is none)."""
    dp = pred_e.astype(np.float64) - pred_o.astype(np.float64)
    do = ora_e.astype(np.float64) - ora_o.astype(np.float64)
    dp, do = dp.reshape(len(dp), -1), do.reshape(len(do), -1)
    denom = np.linalg.norm(dp, axis=1) * np.linalg.norm(do, axis=1)
    return np.where(denom > 0, (dp * do).sum(1) / np.maximum(denom, 1e-12), 0.0)


def open_oracle_split(data: str, split: str, observational_only: bool = False):
    """``split`` of ``data`` with every modality the oracle needs, refusing an empty split."""
    from mmsim.training.evaluate import open_dataset

    ds = open_dataset(data, split, schema.MODALITY_NAMES, observational_only)
    if len(ds) == 0:
        raise MMSimError(f"split {split!r} of {data} has no {'observational ' * observational_only}clips")
    return ds


def oracle_clips(ds, data: str, split: str, clips: int | None, purpose: str):
    """``clips`` clips spread evenly over the split, of recordings with all four modalities (the oracle
    needs them): (items, skipped indices, their raw actions, ``render(meta, raw)`` -> future frames
    (F, H, W, 3) the world shows under ``raw``)."""
    from mmsim_core.synth import OracleCache
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
    oracles = OracleCache(purpose)

    def render(meta, raw) -> np.ndarray:
        return oracles(meta["source"]).render_clip(meta["video_frame_indices"], raw)[h:]  # (F, H, W, 3)

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


# ----------------------------------------------------------------------------------------------
# Edits on the selected clips
# ----------------------------------------------------------------------------------------------
def check_families(families: Sequence[str] | None, option: str = "--families") -> tuple[str, ...]:
    families = tuple(EDITS if families is None else families)
    unknown = [f for f in families if f not in EDIT_FAMILIES]
    if unknown:
        raise UsageError(f"{option}: unknown edit family {unknown[0]!r}; choose from {list(EDIT_FAMILIES)}")
    if not families:
        raise UsageError(f"{option}: name at least one edit family")
    return families


def edited_actions(family: str, raws: list[dict], h: int) -> list[dict]:
    """Every clip's raw actions with ``family`` applied from the first future step (``hand_pose_swap``:
    the hand pose of the next clip of the list; a single clip takes its own hand pose played backwards)."""
    n = len(raws)
    others = [raws[(i + 1) % n] if n > 1 else raw["hand_pose"][::-1].copy() for i, raw in enumerate(raws)]
    return [apply_edit(family, raw, h, other=other) for raw, other in zip(raws, others)]


def _check_clips(clips: int | None) -> None:
    if clips is not None and clips < 1:
        raise UsageError(f"--clips must be >= 1, got {clips}")


def _visibility_rows(family: str, effect_psnr: np.ndarray) -> dict:
    visible = effect_psnr < VISIBLE_PSNR
    return {
        "modality": FAMILY_MODALITY[family],
        "description": FAMILY_DESCRIPTIONS[family],
        "visible_clips": int(visible.sum()),
        "visible_share": float(visible.mean()),
        "change_psnr": float(np.mean(effect_psnr)),
        "change_psnr_per_clip": [float(x) for x in effect_psnr],
    }


def visibility(data: str, split: str = "test", clips: int | None = 24, families: Sequence[str] | None = None) -> dict:
    """Which edits the synthetic world shows, from the oracle alone (no model): per family the share of
    clips whose future video visibly changes, and by how much (see module doc)."""
    families = check_families(families)
    _check_clips(clips)
    t0 = time.perf_counter()
    ds = open_oracle_split(data, split, observational_only=True)
    h = ds.context_frames
    items, skipped, raws, render = oracle_clips(ds, data, split, clips, "mmsim control visibility")
    oracle_orig = np.stack([render(it["meta"], raw) for it, raw in zip(items, raws)])
    recorded = future_scores(oracle_orig, np.stack([it["future"] for it in items]), ssim=False)
    results = {}
    for family in families:
        oracle_e = np.stack([render(it["meta"], raw) for it, raw in zip(items, edited_actions(family, raws, h))])
        results[family] = _visibility_rows(family, future_scores(oracle_orig, oracle_e, ssim=False)["psnr"])
        logger.info("visibility %s: %d/%d clips, %.1f dB", family, results[family]["visible_clips"], len(items),
                    results[family]["change_psnr"])
    ds.close()
    return {
        "format": VISIBILITY_FORMAT,
        "data": str(data),
        "split": split,
        "num_clips": len(items),
        "clip_indices": [int(it["meta"]["index"]) for it in items],
        "skipped_clips_missing_modalities": skipped,
        "visible_psnr": VISIBLE_PSNR,
        "oracle_vs_recorded": mean_scores(recorded),
        "edits": results,
        "seconds": time.perf_counter() - t0,
    }


def _mean_or_none(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def control_fidelity(checkpoint: str, data: str, split: str = "test", clips: int | None = 24, seed: int = 0,
                     families: Sequence[str] | None = None, batch_size: int = 8,
                     num_inference_steps: int | None = None, device: str = "auto") -> dict:
    """Score the simulator on edited action trajectories against the oracle (see module doc)."""
    from mmsim_core.evaluation.loading import load_pipeline

    families = check_families(families)
    _check_clips(clips)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if num_inference_steps is not None and num_inference_steps < 1:
        raise UsageError(f"--steps must be >= 1, got {num_inference_steps}")
    t0 = time.perf_counter()
    pipe, pipe_path = load_pipeline(checkpoint, device)
    ds = open_oracle_split(data, split, observational_only=True)
    if pipe.context_frames != ds.context_frames:
        raise MMSimError(f"checkpoint {checkpoint} has {pipe.context_frames} context frames, the clips of {data} "
                         f"{ds.context_frames}")
    h, stats = ds.context_frames, ds.stats  # h: history steps the edits leave alone
    text_kind = pipe.text_kind
    used = [m for m in ds.modalities if m in pipe.modalities]
    steps = int(num_inference_steps or pipe.config.default_num_inference_steps)

    items, skipped, raws, render = oracle_clips(ds, data, split, clips, "mmsim control")

    def predict(acts_list: list[dict]) -> np.ndarray:
        return predict_futures(pipe, items, acts_list, used, text_kind, steps, seed, batch_size)

    oracle_orig = np.stack([render(it["meta"], raw) for it, raw in zip(items, raws)])
    pred_orig = predict([it["actions"] for it in items])
    reference = future_scores(pred_orig, oracle_orig)
    recorded = future_scores(oracle_orig, np.stack([it["future"] for it in items]), ssim=False)  # oracle vs the mp4

    results = {}
    for family in families:
        edited = edited_actions(family, raws, h)
        oracle_e = np.stack([render(it["meta"], raw) for it, raw in zip(items, edited)])
        effect = future_scores(oracle_orig, oracle_e, ssim=False)["psnr"]
        row = _visibility_rows(family, effect)
        visible = effect < VISIBLE_PSNR
        if FAMILY_MODALITY[family] in used:
            acts_e = [{m: schema.normalize(m, raw[m], stats) for m in schema.MODALITY_NAMES} for raw in edited]
            pred_e = predict(acts_e)
            follow, ignore = future_scores(pred_e, oracle_e), future_scores(pred_orig, oracle_e, ssim=False)
            gain = follow["psnr"] - ignore["psnr"]  # (N,)
            cos = delta_cosine(pred_e, pred_orig, oracle_e, oracle_orig)
            row.update({
                "gain_psnr": _mean_or_none(gain[visible]),
                "delta_cosine": _mean_or_none(cos[visible]),
                "clips_following": int(np.sum(gain[visible] > 0)),
                # over every clip, visible or not
                "gain_psnr_all": float(np.mean(gain)),
                "delta_cosine_all": float(np.mean(cos)),
                "follow": mean_scores(follow),
                "ignore": mean_scores(ignore),
            })
        else:  # the checkpoint does not take this modality: nothing to follow
            row.update({"gain_psnr": None, "delta_cosine": None, "clips_following": 0, "gain_psnr_all": None,
                        "delta_cosine_all": None, "not_used_by_checkpoint": True})
        results[family] = row
        logger.info("control %s: visible %d/%d, gain %s dB, delta cos %s", family, row["visible_clips"], len(items),
                    row["gain_psnr"], row["delta_cosine"])
    ds.close()
    return {
        "format": REPORT_FORMAT,
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
        "visible_psnr": VISIBLE_PSNR,
        "reference": mean_scores(reference),
        "oracle_vs_recorded": mean_scores(recorded),
        "edits": results,
        "seconds": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _f(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def markdown(report: dict, title: str | None = None) -> str:
    """Markdown table of a :func:`control_fidelity` or :func:`visibility` report."""
    from tabulate import tabulate

    n = report["num_clips"]
    fidelity = report.get("format") != VISIBILITY_FORMAT
    if report.get("format") not in (REPORT_FORMAT, VISIBILITY_FORMAT):
        return (f"### {title or 'Control fidelity'}\n\nA report of an earlier mmsim ({report.get('format')!r}); "
                f"run `mmsim control` again for the current table.\n")
    header = ["Edit", "Modality", "Visible clips", "Change (dB)"]
    if fidelity:
        header += ["Gain (dB) ↑", "Δ-cosine ↑", "Clips following"]
    rows = []
    for family, r in report["edits"].items():
        visible = f"{r['visible_clips']}/{n} ({100 * r['visible_share']:.0f} %)"
        row = [f"{family} ({r['description']})", r["modality"], visible, f"{r['change_psnr']:.1f}"]
        if fidelity:
            following = ("not an input" if r.get("not_used_by_checkpoint")
                         else f"{r['clips_following']}/{r['visible_clips']}")
            row += [_f(r["gain_psnr"], "+.2f"), _f(r["delta_cosine"], ".3f"), following]
        rows.append(row)
    table = tabulate(rows, headers=header, tablefmt="pipe", disable_numparse=True,
                     colalign=("left", "left") + ("right",) * (len(header) - 2))
    rec = report["oracle_vs_recorded"]
    lines = [f"### {title or ('Control fidelity' if fidelity else 'Edit visibility')}", ""]
    if fidelity:
        ref = report["reference"]
        lines += [f"{n} held-out clips of {report['data']} ({report['split']}); checkpoint {report['checkpoint']}. "
                  f"Prediction for the original actions vs the oracle's re-rendering: PSNR {ref['psnr']:.2f} dB, "
                  f"SSIM {ref['ssim']:.3f}.", ""]
    else:
        lines += [f"{n} held-out clips of {report['data']} ({report['split']}), the oracle alone.", ""]
    lines += [table, "",
              f"Visible clips: the oracle's original and edited future videos differ (PSNR below "
              f"{VISIBLE_PSNR:.0f} dB). Change: their mean PSNR (lower = bigger change). The oracle re-renders "
              f"the recorded clips at {rec['psnr']:.1f} dB (video compression)."]
    if fidelity:
        lines += ["Gain, on the visible clips: PSNR of the prediction for the edited actions vs the oracle's edited "
                  "video, minus that of the prediction for the original actions (same noise); > 0: the model "
                  "follows the edit. Δ-cosine: cosine between predicted and true pixel change, per clip, mean."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="test", help="split of DATA (default: test)")
    p.add_argument("--clips", type=int, default=24, help="clips, spread evenly over the split (default: 24)")
    p.add_argument("--families", nargs="+", default=None, metavar="F",
                   help=f"edit families (default: all of {list(EDIT_FAMILIES)})")
    p.add_argument("--out", default=None, help="report JSON (a .md table is written beside it)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmsim control", description=__doc__.splitlines()[0],
        usage="mmsim control CKPT DATA [--split test] [--clips 24] [--out report.json] [options]\n"
              "       mmsim control visibility DATA [--split test] [--clips 24] [--out report.json]")
    p.add_argument("checkpoint", metavar="CKPT", help="pipeline folder (or training run / checkpoint folder)")
    p.add_argument("data", metavar="DATA", help="processed clips of synthetic recordings (mmsim synth + preprocess)")
    _common(p)
    p.add_argument("--seed", type=int, default=0, help="noise seed (one draw per clip, as mmsim evaluate)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    return p


def build_visibility_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmsim control visibility",
                                description="Which edits the synthetic world shows (the oracle alone, no checkpoint).")
    p.add_argument("data", metavar="DATA", help="processed clips of synthetic recordings (mmsim synth + preprocess)")
    _common(p)
    return p


def _write(report: dict, md: str, out: str | None) -> None:
    print(md)
    if out:
        path = Path(out)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=1))
            path.with_suffix(".md").write_text(md)
        except OSError as e:
            raise MMSimError(f"--out {out}: cannot write the report: {e}") from None
        print(f"wrote {path} and {path.with_suffix('.md')}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    oracle_only = bool(argv) and argv[0] == "visibility"
    args = (build_visibility_parser().parse_args(argv[1:]) if oracle_only else build_parser().parse_args(argv))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    prog = "mmsim control visibility" if oracle_only else "mmsim control"
    try:
        if oracle_only:
            report = visibility(args.data, args.split, args.clips, args.families)
        else:
            report = control_fidelity(args.checkpoint, args.data, args.split, args.clips, args.seed, args.families,
                                      batch_size=args.batch_size, num_inference_steps=args.steps, device=args.device)
        _write(report, markdown(report), args.out)
    except MMSimError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return exit_status(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
