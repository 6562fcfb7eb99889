"""Train the action proposer: a diffusion model over multisensory action trajectories.

    mmsim proposer train --data data/processed --out runs/proposer
    mmsim proposer train --data PROC --out /tmp/prop --width tiny --max-steps 50      # a quick try
    mmsim proposer train --data PROC --out runs/proposer --resume                    # continue after a stop

Trains :class:`~mmsim_core.policies.proposer.ActionProposer` on the train split of processed clips: for each
clip, the context frames and the h known action steps condition the model, the F future steps are what it
learns to denoise; the clip's phrase (``text["phrase"]``, e.g. "slice cucumber") is the text goal and the clip's
last future frame is the goal frame, each replaced by its null embedding at random (``--drop-text``,
``--drop-goal``) so both are optional when sampling. Clips missing a modality are skipped (the proposer acts in
all four).

A run folder holds ``config.json`` (the resolved options), ``log.jsonl`` (loss, lr, steps/s),
``checkpoint/`` (the newest: weights and EMA weights as safetensors, the optimiser and noise generator as a
``torch.save`` file read back with ``weights_only=True``, ``trainer_state.json`` written last) and, at the end,
``final/``: the EMA weights as an :class:`ActionProposalPipeline` folder with the dataset's ``normalization.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from mmsim_core import schema
from mmsim_core.errors import CheckpointError, DatasetError, MMSimError, UsageError

from mmsim.training.command_line import report_error, start, subcommand_parser

logger = logging.getLogger("mmsim.proposer")

WIDTHS: dict[str, dict] = {
    "tiny": dict(frame_widths=(8, 16, 16, 32), frame_dim=32, history_step_dim=8, text_dim=16, text_buckets=512,
                 time_dim=32, cond_dim=64, unet_widths=(32, 64), step_dim=32),
    "small": dict(frame_widths=(16, 32, 64, 64), frame_dim=64, history_step_dim=16, text_dim=32,
                  text_buckets=2048, time_dim=64, cond_dim=128, unet_widths=(64, 128), step_dim=48),
    "base": {},  # ActionProposer's defaults (2.8 M parameters)
}
"""Model sizes (``--width``): arguments of :class:`ActionProposer` on top of its defaults."""


@dataclass
class ProposerTrainConfig:
    data: str
    out: str
    max_steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-6
    seed: int = 0
    width: str = "base"
    context_frames: int = 1
    drop_text: float = 0.3
    drop_goal: float = 0.3
    ema_decay: float = 0.999
    log_every: int = 10
    checkpoint_every: int = 200
    num_inference_steps: int = 10
    proposer: dict = field(default_factory=dict)
    """The resolved :class:`ActionProposer` arguments (filled from ``width`` and ``context_frames``)."""

    def check(self) -> "ProposerTrainConfig":
        for name in ("max_steps", "batch_size", "log_every", "checkpoint_every", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr must be a finite number > 0, got {self.lr}")
        for name in ("drop_text", "drop_goal"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"--ema-decay must be in [0, 1) (0 = no EMA), got {self.ema_decay}")
        if self.width not in WIDTHS:
            raise UsageError(f"--width must be one of {list(WIDTHS)}, got {self.width!r}")
        if not 1 <= self.context_frames <= schema.CONTEXT_FRAMES:
            raise UsageError(f"--context-frames must be in [1, {schema.CONTEXT_FRAMES}], got {self.context_frames}")
        self.proposer = {**WIDTHS[self.width], "context_frames": self.context_frames}
        return self

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# Pieces the loop uses
# ----------------------------------------------------------------------------------------------
def goal_batch(batch: dict) -> dict:
    """A collated batch -> the proposer's training inputs, keeping the clips that have all four modalities.

    Returns ``context`` (B, h, 3, H, W) in [-1, 1], ``actions`` (B, h + F, D) normalised, ``text`` (B phrases),
    ``goal`` (B, 3, H, W) in [-1, 1] (the last future frame)."""
    from mmsim_core.policies.common import actions_to_vector, frames_to_unit

    names = schema.MODALITY_NAMES
    keep = torch.ones(len(batch["meta"]), dtype=torch.bool)
    for n in names:
        keep &= batch["action_mask"][n] if n in batch["action_mask"] else torch.zeros_like(keep)
    idx = keep.nonzero().flatten()
    return {
        "context": frames_to_unit(batch["context"][idx]),  # (B, h, 3, H, W)
        "actions": actions_to_vector({n: batch["actions"][n][idx] for n in names}),  # (B, h+F, D)
        "text": [batch["text"]["phrase"][i] for i in idx.tolist()],
        "goal": frames_to_unit(batch["future"][idx, -1]),  # (B, 3, H, W)
    }


def save_checkpoint(out: Path, step: int, proposer, ema, optimizer, noise_gen: torch.Generator) -> None:
    """``out/checkpoint`` replaced atomically: written beside it, then renamed (a kill keeps the old one)."""
    tmp, final = out / "checkpoint.tmp", out / "checkpoint"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in proposer.state_dict().items()}, str(tmp / "model.safetensors"))
    if ema is not None:
        save_file({f"{i}": p.contiguous() for i, p in enumerate(ema.shadow_params)}, str(tmp / "ema.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "noise_gen": noise_gen.get_state(),
                "ema_step": ema.optimization_step if ema is not None else 0}, tmp / "state.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))  # last: marks the folder complete
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def load_checkpoint(out: Path, proposer, ema, optimizer, noise_gen: torch.Generator) -> int:
    ckpt = out / "checkpoint"
    try:
        step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
        proposer.load_state_dict(load_file(str(ckpt / "model.safetensors")))
        state = torch.load(ckpt / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        noise_gen.set_state(state["noise_gen"])
        if ema is not None:
            shadow = load_file(str(ckpt / "ema.safetensors"))
            ema.shadow_params = [shadow[f"{i}"] for i in range(len(shadow))]
            ema.optimization_step = int(state["ema_step"])
    except Exception as e:  # noqa: BLE001 - a damaged file: name the folder, not a torch stack
        raise CheckpointError(f"cannot resume from {ckpt}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return int(step)


def truncate_log(path: Path, step: int) -> None:
    """Drop records a stopped run wrote after its last checkpoint (they are written again)."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        path.write_text("".join(ln + "\n" for ln in lines))


# ----------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------
def train(cfg: ProposerTrainConfig, resume: bool = False) -> Path:
    from diffusers.training_utils import EMAModel

    from mmsim_core.data import ClipDataset, collate_clips
    from mmsim_core.policies.proposer import (
        ActionProposalPipeline,
        ActionProposer,
        make_sampling_scheduler,
        make_training_scheduler,
        proposer_loss,
    )

    cfg.check()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder (it is created if missing)")
    if (out / "checkpoint").is_dir() and not resume:
        raise UsageError(f"--out {out} already holds a run: pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    torch.manual_seed(cfg.seed)

    # 1. Data: the train split; shuffled by a generator seeded per epoch, so a resumed run sees the same batches.
    if not Path(cfg.data).exists():
        raise UsageError(f"--data {cfg.data} does not exist (make one with `mmsim synth` + `mmsim preprocess`)")
    dataset = ClipDataset(cfg.data, split="train", modalities=schema.MODALITY_NAMES)
    if len(dataset) == 0:
        raise DatasetError(f"--data {cfg.data}: the 'train' split has no clips, nothing to train on")
    missing = [m for m in schema.MODALITY_NAMES if m not in dataset.modalities]
    if missing:
        raise DatasetError(f"--data {cfg.data}: the proposer acts in all four modalities; the dataset lacks {missing}")
    # The proposer acts in all four modalities: clips of recordings without one are left out.
    usable = [i for i in range(len(dataset))
              if set(schema.MODALITY_NAMES) <= set(dataset.clip_meta(i).get("modalities", schema.MODALITY_NAMES))]
    if not usable:
        raise DatasetError(f"--data {cfg.data}: no train clip has all four modalities")
    clips = torch.utils.data.Subset(dataset, usable)
    batch_size = min(cfg.batch_size, len(clips))

    # 2. Model, noise schedule, optimiser (diffusion policy: AdamW 1e-4), EMA.
    proposer = ActionProposer(**cfg.proposer)
    noise_scheduler = make_training_scheduler(proposer.config.num_train_timesteps, proposer.config.prediction_type)
    params = [p for p in proposer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMAModel(params, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    noise_gen = torch.Generator().manual_seed(cfg.seed)  # noise, timesteps and goal drops

    # 3. Resume.
    step = 0
    if resume and (out / "checkpoint" / "trainer_state.json").is_file():
        step = load_checkpoint(out, proposer, ema, optimizer, noise_gen)
        logger.info("resumed from %s (step %d)", out / "checkpoint", step)
    elif resume:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", out)
    truncate_log(out / "log.jsonl", step)
    n_params = sum(p.numel() for p in params)
    logger.info("training the action proposer (%s, %.2f M params) on %d clips", cfg.width, n_params / 1e6, len(clips))

    # 4. Optimisation steps.
    steps_per_epoch = len(clips) // batch_size
    epoch, skip = step // steps_per_epoch, step % steps_per_epoch  # skip: batches of this epoch already done
    log_file = open(out / "log.jsonl", "a")
    proposer.train()
    window, t_window = [], time.perf_counter()
    while step < cfg.max_steps:
        loader = DataLoader(clips, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collate_clips,
                            generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        for i, batch in enumerate(loader):
            if i < skip:  # resumed mid-epoch: these batches were trained on before the stop
                continue
            b = goal_batch(batch)  # context (B, h, 3, H, W), actions (B, h+F, D), text [B], goal (B, 3, H, W)
            B = b["actions"].shape[0]
            if B == 0:
                continue
            drop_text = torch.rand(B, generator=noise_gen) < cfg.drop_text  # (B,) True = null text
            drop_goal = torch.rand(B, generator=noise_gen) < cfg.drop_goal  # (B,) True = null goal frame
            loss = proposer_loss(proposer, noise_scheduler, b["context"], b["actions"], b["text"], b["goal"],
                                 drop_text, drop_goal, generator=noise_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            if ema is not None:
                ema.step(params)
            step += 1
            window.append(loss.item())

            if step % cfg.log_every == 0 or step == cfg.max_steps:
                dt = time.perf_counter() - t_window
                record = {"step": step, "epoch": epoch, "loss": float(np.mean(window)), "lr": cfg.lr,
                          "steps_per_s": len(window) / dt}
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                logger.info("step %d loss %.4f (%.2f steps/s)", step, record["loss"], record["steps_per_s"])
                if not math.isfinite(record["loss"]):
                    raise FloatingPointError(f"loss became {record['loss']} at step {step}; see {out / 'log.jsonl'}")
                window, t_window = [], time.perf_counter()
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                save_checkpoint(out, step, proposer, ema, optimizer, noise_gen)
            if step >= cfg.max_steps:
                break
        epoch, skip = epoch + 1, 0
    log_file.close()

    # 5. The final pipeline, with the EMA weights.
    if ema is not None:
        ema.copy_to(params)
    proposer.eval()
    training = make_training_scheduler(proposer.config.num_train_timesteps, proposer.config.prediction_type)
    pipe = ActionProposalPipeline(proposer, make_sampling_scheduler(training), cfg.num_inference_steps, dataset.stats)
    final = out / "final"
    shutil.rmtree(final, ignore_errors=True)
    pipe.save_pretrained(final)
    logger.info("done: %s", final)
    return final


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p, sub = subcommand_parser("mmsim proposer", __doc__.splitlines()[0])
    t = sub.add_parser("train", help="train an action proposer on processed clips")
    t.add_argument("--data", required=True, help="processed clip folder (from `mmsim preprocess`)")
    t.add_argument("--out", required=True, help="run folder (final pipeline in OUT/final)")
    d = ProposerTrainConfig(data="", out="")
    t.add_argument("--max-steps", type=int, default=d.max_steps)
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--width", default=d.width, help=f"model size: {' | '.join(WIDTHS)} (default {d.width})")
    t.add_argument("--context-frames", type=int, default=d.context_frames,
                   help="context frames the proposer sees: 1 (the last, default) .. 4 (all)")
    t.add_argument("--drop-text", type=float, default=d.drop_text, help="probability of dropping the text goal")
    t.add_argument("--drop-goal", type=float, default=d.drop_goal, help="probability of dropping the goal frame")
    t.add_argument("--ema-decay", type=float, default=d.ema_decay, help="EMA decay of the weights (0 = no EMA)")
    t.add_argument("--log-every", type=int, default=d.log_every)
    t.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    t.add_argument("--steps", dest="num_inference_steps", type=int, default=d.num_inference_steps,
                   help="default sampler steps saved with the pipeline (default 10)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint (its config.json is reused)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv, prog = start(argv, "mmsim proposer", ("train",))
    try:
        args = build_parser().parse_args(argv)
        names = [f.name for f in dataclasses.fields(ProposerTrainConfig) if f.name != "proposer"]
        cfg = ProposerTrainConfig(**{k: getattr(args, k) for k in names if hasattr(args, k)})
        saved = Path(args.out) / "config.json"
        if args.resume and saved.is_file():  # a resumed run keeps its options, up to a longer --max-steps
            old = json.loads(saved.read_text())
            old.pop("proposer", None)
            cfg = dataclasses.replace(ProposerTrainConfig(**old), max_steps=args.max_steps)
        train(cfg, resume=args.resume)
    except MMSimError as e:
        return report_error(prog, e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
