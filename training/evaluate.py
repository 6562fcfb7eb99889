"""Evaluate a simulator checkpoint on a split of processed clips (paper §3, Tables 1-3, Fig. 4).

    mmsim evaluate runs/demo/final data/processed --split test --out results/ours.json
    mmsim evaluate runs/demo/final data/processed --drop emg hand_force --out results/no_emg_force.json
    mmsim evaluate runs/demo/final data/processed --keep hand_pose --out results/hand_pose_only.json
    mmsim evaluate runs/demo/final data/processed --baseline no-actions --out results/no_actions.json
    mmsim evaluate - data/processed --baseline copy-last --out results/copy_last.json   # no checkpoint

Writes ``OUT`` (JSON: headline metrics, per-frame curves, per-clip values, the exact settings and which
metrics were unavailable and why), ``OUT`` with ``.md`` (a Markdown table) and ``<stem>_curves.html``
(interactive plotly per-frame curves, plotly.js inline: opens offline). Generation uses one fixed noise
draw per (seed, clip index), so results do not depend on the batch size or on ``--limit``.

Test-time modality removal (paper Table 3): ``--drop m ...`` removes modalities, ``--keep m ...``
keeps only those; the model then fuses whatever remains (a missing modality is left out of the
softmax). ``--baseline no-actions`` is the same checkpoint with every action dropped;
``--baseline copy-last`` predicts the last context frame for every future frame.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from mmsim_core import schema
from mmsim_core.errors import MMSimError, UsageError, exit_status
from mmsim_core.evaluation.loading import load_pipeline, resolve_device
from mmsim_core.evaluation.metrics import FRAME_METRICS, LOWER_IS_BETTER, PSNR_MAX, VideoMetrics

logger = logging.getLogger("mmsim.evaluate")

BASELINES = ("copy-last", "no-actions")
RESULTS_FORMAT = "mmsim-eval-v1"
METRIC_LABELS = {"mse": "MSE ↓", "psnr": "PSNR ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓", "fvd": "FVD ↓"}
TABLE_METRICS = ("mse", "psnr", "ssim", "lpips", "fvd")


@dataclass
class EvalConfig:
    """Everything that defines an evaluation run (saved verbatim in the results)."""

    checkpoint: str | None
    """Pipeline folder, a training run / checkpoint folder holding one, or a Hub id. None for copy-last."""
    data: str
    split: str = "test"
    out: str = "results.json"
    drop: tuple[str, ...] = ()
    keep: tuple[str, ...] | None = None
    batch_size: int = 8
    num_inference_steps: int | None = None
    seed: int = 0
    limit: int | None = None
    text_kind: str | None = None
    baseline: str | None = None
    label: str | None = None
    device: str = "auto"
    lpips_net: str | None = "alex"
    lpips_backbone: str | None = None
    i3d: str | None = None
    compare: tuple[str, ...] = ()
    num_workers: int = 0
    observational_only: bool = False
    """Score observational clips only (leave out the synthetic world's counterfactual recordings)."""

    def __post_init__(self):
        self.drop = tuple(self.drop or ())
        self.keep = None if self.keep is None else tuple(self.keep)
        self.compare = tuple(self.compare or ())
        for flag, names in (("--drop", self.drop), ("--keep", self.keep or ())):
            for n in names:
                if n not in schema.MODALITIES:
                    raise UsageError(f"unknown modality {n!r} in {flag}; must be one of {list(schema.MODALITY_NAMES)}")
        if self.drop and self.keep is not None:
            raise UsageError("use either --drop or --keep, not both")
        from mmsim_core.data.shards import SPLITS

        if self.split not in SPLITS:
            raise UsageError(f"--split must be one of {list(SPLITS)}, got {self.split!r}")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise UsageError(f"--baseline must be one of {list(BASELINES)}, got {self.baseline!r}")
        if self.baseline != "copy-last" and not self.checkpoint:
            raise UsageError("a checkpoint is required (only --baseline copy-last runs without one)")
        if self.text_kind is not None and self.text_kind not in schema.TEXT_KINDS:
            raise UsageError(f"--text-kind must be one of {list(schema.TEXT_KINDS)}, got {self.text_kind!r}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be >= 1, got {self.limit}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise UsageError(f"--num-inference-steps must be >= 1, got {self.num_inference_steps}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """The action modalities given to the model (before intersecting with the data and checkpoint)."""
        if self.baseline is not None:
            return ()
        if self.keep is not None:
            return tuple(m for m in schema.MODALITY_NAMES if m in self.keep)
        return tuple(m for m in schema.MODALITY_NAMES if m not in self.drop)

    def default_label(self) -> str:
        if self.baseline:
            return self.baseline
        name = Path(self.checkpoint).name if self.checkpoint else "model"
        if self.keep is not None:
            return f"{name} keep {'+'.join(self.keep) or 'none'}"
        if self.drop:
            return f"{name} w/o {'+'.join(self.drop)}"
        return name


# ----------------------------------------------------------------------------------------------
# Shared with `mmsim generate`
# ----------------------------------------------------------------------------------------------
def open_dataset(data: str, split: str, modalities: Sequence[str], observational_only: bool = False):
    from mmsim_core.data import ClipDataset

    if not Path(data).exists():
        raise MMSimError(f"dataset folder {data} does not exist (make one with `mmsim synth` + `mmsim preprocess`)")
    return ClipDataset(data, split=split, modalities=tuple(modalities), observational_only=observational_only)


def clip_noise(pipe, indices: Sequence[int], seed: int) -> torch.Tensor:
    """Initial noise (B, F, C, S, S), one fixed draw per (seed, clip index)."""
    cfg = pipe.denoiser.config
    shape = (pipe.future_frames, cfg.in_channels, pipe.sample_size, pipe.sample_size)
    out = []
    for idx in indices:
        g = torch.Generator("cpu").manual_seed(int(np.random.SeedSequence([seed, int(idx)]).generate_state(1)[0]))
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out)


def select_actions(batch: dict, modalities: Sequence[str]) -> tuple[dict, dict]:
    """Numpy actions and per-clip masks of the chosen modalities of a collated batch."""
    acts = {k: v.numpy() for k, v in batch["actions"].items() if k in modalities}
    mask = {k: batch["action_mask"][k].numpy() for k in acts}
    return acts, mask


def predict(pipe, batch: dict, modalities: Sequence[str], seed: int, num_inference_steps: int | None = None,
            text_kind: str | None = None, baseline: str | None = None) -> np.ndarray:
    """Future frames uint8 (B, F, H, W, 3) for a collated batch."""
    context = batch["context"].numpy()  # (B, h, H, W, 3)
    if baseline == "copy-last":
        f = batch["future"].shape[1]
        return np.repeat(context[:, -1:], f, axis=1)  # (B, F, H, W, 3)
    acts, mask = select_actions(batch, modalities)
    text = list(batch["text"][text_kind]) if text_kind else None
    indices = [m["index"] for m in batch["meta"]]
    device = pipe._execution_device
    generator = torch.Generator(device).manual_seed(seed)  # only stochastic samplers draw from it
    out = pipe(context=context, actions=acts, action_mask=mask or None, text=text,
               num_inference_steps=num_inference_steps, generator=generator,
               latents=clip_noise(pipe, indices, seed), output_type="np")
    return out.frames


def pick_indices(n: int, limit: int | None) -> list[int]:
    """All clips, or ``limit`` clips spread evenly over the split (covers every activity and subject,
    where the first ``limit`` clips would come from one stretch of one recording)."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, limit)})


# ----------------------------------------------------------------------------------------------
# The evaluation
# ----------------------------------------------------------------------------------------------
def evaluate(cfg: EvalConfig, progress: bool = True) -> dict:
    """Run the evaluation and return the results dict (also what :func:`write_results` saves)."""
    from torch.utils.data import DataLoader, Subset

    from mmsim_core.data import collate_clips

    t0 = time.perf_counter()
    pipe, pipe_path = (None, None)
    if cfg.baseline != "copy-last":
        pipe, pipe_path = load_pipeline(cfg.checkpoint, cfg.device)
    dataset = open_dataset(cfg.data, cfg.split, cfg.modalities, cfg.observational_only)
    if len(dataset) == 0:
        raise MMSimError(f"split {cfg.split!r} of {cfg.data} has no {'observational ' * cfg.observational_only}clips")
    if cfg.keep:
        missing = [m for m in cfg.keep if m not in dataset.modalities]
        if missing:
            logger.warning("--keep %s: not in this dataset (%s)", missing, list(dataset.manifest["modalities"]))

    text_kind = cfg.text_kind
    if pipe is not None:
        if text_kind is not None and pipe.text_encoder is None:
            raise UsageError(f"--text-kind {text_kind} given but the checkpoint {pipe_path} has no text encoder")
        if text_kind is None and pipe.text_encoder is not None and cfg.baseline is None:
            text_kind = pipe.text_kind
            if text_kind is None:
                logger.warning("the checkpoint has a text encoder but no --text-kind was given: no text used")
        if (pipe.context_frames, pipe.future_frames, pipe.sample_size) != (
                dataset.context_frames, dataset.future_frames, int(dataset.manifest["clip"].get("size", pipe.sample_size))):
            raise MMSimError(
                f"clip geometry mismatch: checkpoint h={pipe.context_frames} F={pipe.future_frames} "
                f"size={pipe.sample_size}, dataset {dataset.manifest['clip']}"
            )
    model_modalities = tuple(pipe.modalities) if pipe is not None else ()
    used = [m for m in dataset.modalities if m in model_modalities]
    steps = None
    if pipe is not None:
        steps = int(cfg.num_inference_steps or pipe.config.default_num_inference_steps)

    device = pipe._execution_device if pipe is not None else resolve_device(cfg.device)
    metrics = VideoMetrics.create(lpips_net=cfg.lpips_net, lpips_backbone=cfg.lpips_backbone, i3d=cfg.i3d,
                                  device=device)
    for name, reason in metrics.unavailable.items():
        logger.warning("%s unavailable: %s", name.upper(), reason)

    indices = pick_indices(len(dataset), cfg.limit)
    loader = DataLoader(Subset(dataset, indices), batch_size=cfg.batch_size, shuffle=False, collate_fn=collate_clips,
                        num_workers=cfg.num_workers)
    bar = tqdm(total=len(indices), desc=f"evaluate {cfg.label or cfg.default_label()}", unit="clip",
               disable=not progress, dynamic_ncols=True)
    t_gen = 0.0
    clip_meta = {}  # dataset index -> subject and activity, for the per-clip rows
    for batch in loader:
        t = time.perf_counter()
        pred = predict(pipe, batch, used, cfg.seed, steps, text_kind, cfg.baseline)
        t_gen += time.perf_counter() - t
        index = [m["index"] for m in batch["meta"]]
        for m in batch["meta"]:
            clip_meta[m["index"]] = {"subject": m.get("subject"), "activity": m.get("activity")}
        metrics.update(pred, batch["future"].numpy(), context=batch["context"].numpy(), index=index)
        bar.update(len(index))
        bar.set_postfix(psnr=f"{metrics.running_mean('psnr'):.2f}", ssim=f"{metrics.running_mean('ssim'):.3f}")
    bar.close()
    dataset.close()

    summary = metrics.compute()
    per_clip = [{"index": row["index"], **clip_meta[row["index"]], **row} for row in summary.pop("per_clip")]
    elapsed = time.perf_counter() - t0
    settings = {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "label": cfg.label or cfg.default_label(),
        "checkpoint_resolved": pipe_path,
        "text_kind": text_kind,
        "num_inference_steps": steps,
        "sampler": type(pipe.scheduler).__name__ if pipe is not None else None,
        "modalities_requested": list(cfg.modalities),
        "modalities_in_data": list(dataset.manifest["modalities"]),
        "modalities_in_model": list(model_modalities),
        "modalities_used": used,
        "clip": dataset.manifest["clip"],
        "num_clips_in_split": len(dataset),
        "clip_indices": "all" if len(indices) == len(dataset) else indices,
        "noise": "one draw per (seed, clip index) via numpy SeedSequence([seed, index])",
        "metric_definitions": {
            "frames": "future frames only, RGB scaled to [0, 1]; per-frame values averaged over frames and clips",
            "psnr": f"10*log10(1/MSE) per frame, data range 1, capped at {PSNR_MAX} dB",
            "ssim": "gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1, valid region",
            "lpips": metrics.lpips.describe() if metrics.lpips is not None else None,
            "fvd": ({**metrics.i3d.describe(), "frames": "context + future (h+F) of real and predicted clips"}
                    if metrics.i3d is not None else None),
        },
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    settings.pop("out", None)
    settings.pop("compare", None)
    return {
        "format": RESULTS_FORMAT,
        "label": settings["label"],
        **summary,
        "per_clip": per_clip,
        "settings": settings,
        "timing": {"seconds": elapsed, "generation_seconds": t_gen,
                   "seconds_per_clip": t_gen / max(1, summary["num_clips"])},
    }


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------
def _fmt(name: str, value) -> str:
    if value is None:
        return "n/a"
    if name == "psnr":
        return f"{value:.2f}"
    if name == "fvd":
        return f"{value:.1f}"
    return f"{value:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], first: str = "left") -> str:
    """A Markdown (pipe) table of preformatted cells: numbers right-aligned, the first column ``first``."""
    from tabulate import tabulate

    return tabulate(rows, headers=list(header), tablefmt="pipe", disable_numparse=True,
                    colalign=(first,) + ("right",) * (len(header) - 1))


def markdown_report(results: Sequence[dict]) -> str:
    """A Markdown table with one row per results dict (the first is this run), per-frame curves of the
    first, and the reasons for unavailable metrics."""
    main = results[0]
    best = {}
    if len(results) > 1:  # bold the best value of each column
        for m in TABLE_METRICS:
            vals = [r["metrics"][m] for r in results if m in r["metrics"]]
            if vals:
                best[m] = min(vals) if LOWER_IS_BETTER[m] else max(vals)
    rows = [[r["label"], str(r["num_clips"])]
            + [(f"**{_fmt(m, r['metrics'][m])}**" if m in best and r["metrics"].get(m) == best[m]
                else _fmt(m, r["metrics"].get(m))) for m in TABLE_METRICS]
            for r in results]  # fmt: skip
    lines = ["# mmsim evaluation", "", _table(["Method", "Clips"] + [METRIC_LABELS[m] for m in TABLE_METRICS], rows)]
    curves = main["per_frame"]
    names = [m for m in FRAME_METRICS if m in curves]
    frame_rows = [[str(i + 1)] + [_fmt(m, curves[m][i]) for m in names] for i in range(len(curves[names[0]]))]
    lines += ["", f"## Per-frame curves ({main['label']}, temporal drift)", "",
              _table(["Future frame"] + [METRIC_LABELS[m] for m in names], frame_rows, first="right")]  # fmt: skip
    if main["unavailable"]:
        lines += ["", "## Unavailable metrics", ""]
        lines += [f"- **{k.upper()}**: {v}" for k, v in main["unavailable"].items()]
    s = main["settings"]
    lines += ["", "## Settings", ""]
    for key in ("checkpoint", "checkpoint_resolved", "data", "split", "baseline", "modalities_used", "drop", "keep",
                "text_kind", "num_inference_steps", "sampler", "seed", "limit", "batch_size", "device"):
        lines.append(f"- {key}: `{s.get(key)}`")
    lines.append(f"- generation: {main['timing']['seconds_per_clip']:.3f} s/clip")
    return "\n".join(lines) + "\n"


def curves_figure(results: Sequence[dict]):
    """Plotly figure: one panel per per-frame metric, one line per results dict."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [m for m in FRAME_METRICS if any(m in r["per_frame"] for r in results)]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[METRIC_LABELS[m] for m in names])
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for j, r in enumerate(results):
        for i, m in enumerate(names):
            if m not in r["per_frame"]:
                continue
            y = r["per_frame"][m]
            fig.add_trace(go.Scatter(x=list(range(1, len(y) + 1)), y=y, mode="lines+markers", name=r["label"],
                                     legendgroup=r["label"], showlegend=i == 0,
                                     line={"color": colors[j % len(colors)]},
                                     hovertemplate=f"{r['label']}<br>frame %{{x}}<br>{m} %{{y:.4f}}<extra></extra>"),
                          row=1, col=i + 1)
            fig.update_xaxes(title_text="future frame", dtick=1, row=1, col=i + 1)
    fig.update_layout(title="Temporal drift: metrics per predicted frame", height=420,
                      width=max(480, 360 * len(names)), template="plotly_white", hovermode="x unified")
    return fig


def output_paths(out: str | Path) -> dict[str, Path]:
    out = Path(out)
    return {"json": out, "md": out.with_suffix(".md"), "html": out.with_name(out.stem + "_curves.html")}


def write_results(results: dict, out: str | Path, compare: Sequence[dict] = ()) -> dict[str, Path]:
    """Write ``out`` (JSON), its ``.md`` table and ``<stem>_curves.html``; returns the three paths."""
    paths = output_paths(out)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(results, indent=1, allow_nan=False))
    everything = [results, *compare]
    paths["md"].write_text(markdown_report(everything))
    curves_figure(everything).write_html(str(paths["html"]), include_plotlyjs=True, full_html=True)
    return paths


def load_results(path: str | Path) -> dict:
    try:
        r = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise MMSimError(f"cannot read results {path}: {e}") from None
    if not isinstance(r, dict) or r.get("format") != RESULTS_FORMAT:
        raise MMSimError(f"{path} is not an `mmsim evaluate` results file")
    return r


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmsim evaluate", description=__doc__.splitlines()[0],
        usage="mmsim evaluate CKPT DATA [--split test] [--out results.json] [options]\n"
              "       mmsim evaluate DATA --baseline copy-last [options]",
    )  # fmt: skip
    p.add_argument("paths", nargs="+", metavar="CKPT DATA",
                   help="pipeline folder (or run/checkpoint folder, or Hub id) and processed clip folder; "
                        "with --baseline copy-last the checkpoint may be omitted or given as '-'")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", default="results.json", help="results JSON; .md and _curves.html are written beside it")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--drop", nargs="+", default=[], metavar="M", help=f"modalities removed at test time {list(schema.MODALITY_NAMES)}")
    g.add_argument("--keep", nargs="+", default=None, metavar="M", help="keep only these modalities")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-inference-steps", "--steps", dest="num_inference_steps", type=int, default=None,
                   help="sampler steps (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="evaluate this many clips, spread evenly over the split")
    p.add_argument("--text-kind", choices=list(schema.TEXT_KINDS), default=None,
                   help="condition on this text of each clip (default: the kind the run was trained with, if any)")
    p.add_argument("--baseline", choices=list(BASELINES), default=None)
    p.add_argument("--label", default=None, help="row name in the table and plot")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--lpips-net", choices=["alex", "vgg", "squeeze"], default="alex")
    p.add_argument("--lpips-backbone", default=None, metavar="PATH",
                   help="torchvision ImageNet weights of the LPIPS backbone (default: $MMSIM_LPIPS_BACKBONE or the torch hub cache)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--i3d", default=None, metavar="PATH", help="I3D torchscript for FVD (default: $MMSIM_I3D_WEIGHTS)")
    p.add_argument("--compare", nargs="+", default=[], metavar="RESULTS_JSON",
                   help="earlier results to add as rows/curves in the .md and .html (e.g. baselines)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--observational-only", action="store_true",
                   help="score observational clips only, leaving out counterfactual recordings (as the paper's tables)")
    return p


def config_from_args(args) -> EvalConfig:
    paths = list(args.paths)
    if len(paths) > 2:
        raise UsageError(f"expected CKPT DATA, got {len(paths)} paths: {paths}")
    if len(paths) == 1:
        if args.baseline != "copy-last":
            raise UsageError("expected CKPT DATA (only --baseline copy-last runs without a checkpoint)")
        ckpt, data = None, paths[0]
    else:
        ckpt, data = paths
        if ckpt in ("-", "none") and args.baseline == "copy-last":
            ckpt = None
    return EvalConfig(
        checkpoint=ckpt, data=data, split=args.split, out=args.out, drop=tuple(args.drop),
        keep=None if args.keep is None else tuple(args.keep), batch_size=args.batch_size,
        num_inference_steps=args.num_inference_steps, seed=args.seed, limit=args.limit, text_kind=args.text_kind,
        baseline=args.baseline, label=args.label, device=args.device,
        lpips_net=None if args.no_lpips else args.lpips_net, lpips_backbone=args.lpips_backbone, i3d=args.i3d,
        compare=tuple(args.compare), num_workers=args.num_workers, observational_only=args.observational_only,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
        compare = [load_results(c) for c in cfg.compare]
        results = evaluate(cfg)
        paths = write_results(results, cfg.out, compare)
    except MMSimError as e:
        print(f"mmsim evaluate: error: {e}", file=sys.stderr)
        return exit_status(e)
    m = results["metrics"]
    print(" ".join(f"{k}={_fmt(k, m[k])}" for k in TABLE_METRICS if k in m) + f" ({results['num_clips']} clips)")
    for k, reason in results["unavailable"].items():
        print(f"{k} unavailable: {reason}")
    print(f"wrote {paths['json']}, {paths['md']}, {paths['html']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
