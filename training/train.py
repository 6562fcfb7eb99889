"""Train the multisensory simulator with accelerate.

    mmsim train --config demo-cpu --data data/processed --out runs/demo
    mmsim train --preset mmsim-tiny --data examples/demo_data --out /tmp/run --max-steps 50
    mmsim train --out runs/demo --resume                     # continue after an interruption
    mmsim train --config demo-cpu --data mine --out runs/mine --init-from examples/demo_checkpoint   # fine-tune
    accelerate launch -m mmsim.training.train --config paper ...   # several GPUs / nodes, unchanged

Every run writes ``OUT/config.json`` (the resolved config), ``OUT/log.jsonl`` (loss parts, steps/s)
and checkpoints ``OUT/checkpoints/checkpoint_<step>/``: accelerate's ``save_state`` (raw weights,
optimiser, lr schedule, RNGs, data order), the EMA weights (``ema.safetensors``), the EMA weights as a
``save_pretrained`` pipeline folder (``pipeline/``, loadable with ``MultisensoryVideoPipeline.from_pretrained``)
and ``trainer_state.json``, written last: a folder without it is incomplete and never resumed from, so a
killed process loses at most one checkpoint interval. A checkpoint that cannot be written (disk full) stops
the run with the previous checkpoint intact. ``OUT/final`` is the last EMA pipeline.

What a resume loads, and how: weights only from safetensors (``model.safetensors``, ``ema.safetensors``,
each checked whole before use; a checkpoint holding ``model.bin`` or a pickled custom object is refused).
The optimiser, lr schedule, sampler and RNG states are accelerate's ``torch.save`` files, read back by
accelerate with ``torch.load(weights_only=True)``: a restricted unpickler that rebuilds tensors, numbers,
strings and containers and refuses anything that could run code.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmsim_core.checkpoint_files import PICKLE_SUFFIXES, check_safetensors
from mmsim_core.data import ClipDataset, collate_clips
from mmsim_core.errors import CheckpointError, DatasetError, MMSimError, UsageError, exit_status
from mmsim_core.training_step import MultisensorySimulator
from mmsim.training.config import TrainConfig, named_configs, resolve_config

logger = logging.getLogger("mmsim.train")


# ----------------------------------------------------------------------------------------------
# Pieces the loop uses
# ----------------------------------------------------------------------------------------------
def build_simulator(cfg: TrainConfig) -> MultisensorySimulator:
    return MultisensorySimulator.from_config(cfg.simulator_config())


PIPELINE_COMPONENTS = ("denoiser", "action_encoder", "action_warp", "context_encoder", "text_encoder")
"""Weighted components of a pipeline folder, each a sub-folder named as the simulator's attribute."""


def init_from_pipeline(simulator: MultisensorySimulator, folder: str | Path) -> dict[str, dict[str, int]]:
    """Copy a trained pipeline folder's weights into ``simulator`` (fine-tuning). Per component, tensors whose
    name and shape match are loaded; the rest (a part the new config adds, a resized layer) keep their fresh
    initialisation. Returns ``{component: {"loaded", "kept_fresh", "unused"}}`` counts."""
    from safetensors.torch import load_file

    from mmsim_core.checkpoint_files import check_weights_folder

    folder = Path(folder)
    report = {}
    for name in PIPELINE_COMPONENTS:
        module = getattr(simulator, name, None)
        if module is None:
            continue
        files = check_weights_folder(folder / name) if (folder / name).is_dir() else []
        saved = {}
        for f in files:
            saved.update(load_file(str(f)))
        own = module.state_dict()
        matched = {k: v.to(own[k].dtype) for k, v in saved.items() if k in own and own[k].shape == v.shape}
        module.load_state_dict(matched, strict=False)
        report[name] = {"loaded": len(matched), "kept_fresh": len(own) - len(matched),
                        "unused": len(saved) - len(matched)}
        fresh = sorted(k for k in own if k not in matched)
        logger.info("init from %s/%s: %d tensors loaded, %d kept fresh%s, %d of the folder's unused", folder, name,
                    len(matched), len(fresh), f" ({', '.join(fresh[:4])}{', ...' if len(fresh) > 4 else ''})"
                    if fresh else "", report[name]["unused"])
    if not any(r["loaded"] for r in report.values()):
        raise CheckpointError(f"--init-from {folder}: no weight of it fits this model (another preset?)")
    return report


def check_init_normalization(folder: str | Path, stats) -> None:
    """Warn when the data is scaled otherwise than the run being fine-tuned was trained on."""
    path = Path(folder) / "normalization.json"
    if not path.is_file():
        return
    theirs = json.loads(path.read_text())
    if theirs != stats.to_dict():
        logger.warning("--init-from %s was trained on data normalised otherwise than --data: its weights expect "
                       "inputs scaled by %s (preprocess with --stats %s to match)", folder, path, path)


def resolve_mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"  # bf16 on these CPUs is much slower than fp32


TRAINER_STATE = "trainer_state.json"  # written last into a checkpoint folder: its presence marks it complete
EMA_WEIGHTS = "ema.safetensors"  # the EMA's shadow weights and counters (accelerate would pickle the EMA object)


def checkpoint_folders(out: Path) -> list[Path]:
    """accelerate's ``OUT/checkpoints/checkpoint_<step>`` folders, complete or not, oldest first."""
    folders = [p for p in (out / "checkpoints").glob("checkpoint_*") if p.name.rpartition("_")[2].isdigit()]
    return sorted(folders, key=lambda p: int(p.name.rpartition("_")[2]))


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder of run ``out`` (it holds ``pipeline/``), or None."""
    complete = [p for p in checkpoint_folders(out) if (p / TRAINER_STATE).is_file() and (p / "pipeline").is_dir()]
    return complete[-1] if complete else None


def save_checkpoint(step: int, accelerator, simulator, ema, stats, cfg: TrainConfig) -> Path:
    """Write ``OUT/checkpoints/checkpoint_<step>``: accelerate's state, the EMA pipeline, then the marker.

    accelerate names the folder after ``project_configuration.iteration`` and, before writing it, deletes
    the oldest folders beyond ``total_limit``."""
    accelerator.project_configuration.iteration = step  # name the folder by optimisation step, not save count
    ckpt = Path(accelerator.project_dir) / "checkpoints" / f"checkpoint_{step}"
    try:
        ckpt = Path(accelerator.save_state())  # weights, optimiser, lr schedule, RNGs, sampler
        if accelerator.is_main_process:
            save_ema(ema, ckpt / EMA_WEIGHTS)
            export_pipeline(ckpt / "pipeline", accelerator.unwrap_model(simulator), ema, stats, cfg.recipe())
            marker = ckpt / (TRAINER_STATE + ".tmp")
            marker.write_text(json.dumps({"step": step, "config": cfg.to_dict()}, indent=1))
            os.replace(marker, ckpt / TRAINER_STATE)  # the marker itself appears whole or not at all
    except OSError as e:  # disk full, quota, permissions: the half-written folder has no marker
        shutil.rmtree(ckpt, ignore_errors=True)  # frees what it took; it would be deleted on resume anyway
        previous = latest_checkpoint(Path(accelerator.project_dir))
        kept = f"{previous} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"cannot write checkpoint {ckpt} ({e.strerror or e}); {kept}: free space and run "
                              f"again with --resume") from None
    accelerator.wait_for_everyone()
    return ckpt


def save_ema(ema: EMAModel, path: Path) -> None:
    """The EMA as safetensors: shadow weights as tensors, its counters as JSON metadata."""
    state = ema.state_dict()
    tensors = {f"shadow.{i}": p.detach().contiguous().cpu() for i, p in enumerate(state.pop("shadow_params"))}
    save_file(tensors, str(path), metadata={"ema_state": json.dumps(state)})


def load_ema(ema: EMAModel, path: Path) -> None:
    from safetensors import safe_open

    check_safetensors(path)
    with safe_open(str(path), framework="pt") as f:
        state = json.loads(f.metadata()["ema_state"])
    tensors = load_file(str(path))
    state["shadow_params"] = [tensors[f"shadow.{i}"] for i in range(len(tensors))]
    if len(state["shadow_params"]) != len(ema.shadow_params):
        raise CheckpointError(f"{path}: holds {len(state['shadow_params'])} EMA tensors, the model has "
                              f"{len(ema.shadow_params)} (a checkpoint of another model?)")
    ema.load_state_dict(state)


def check_resumable(ckpt: Path) -> None:
    """Refuse a checkpoint whose weights are not whole safetensors files, before accelerate reads it."""
    pickles = sorted(p.name for p in ckpt.iterdir()
                     if p.suffix in PICKLE_SUFFIXES and (p.name.startswith(("model", "custom_checkpoint"))))
    if pickles:
        raise CheckpointError(f"{ckpt}: holds pickled weights or objects ({', '.join(pickles)}); only safetensors "
                              f"weights are loaded. Delete this checkpoint folder to resume from the one before it")
    for name in ("model.safetensors", EMA_WEIGHTS):
        check_safetensors(ckpt / name)


def export_pipeline(path: Path, simulator: MultisensorySimulator, ema: EMAModel, stats, recipe: dict | None = None) -> None:
    """Save the EMA weights as a pipeline folder (with the run's ``recipe`` in its simulator config), leaving the
    training weights untouched."""
    params = [p for p in simulator.parameters() if p.requires_grad]
    ema.store(params)
    ema.copy_to(params)
    try:
        simulator.eval()
        simulator.to_pipeline(normalization_stats=stats, training_recipe=recipe).save_pretrained(str(path))
    finally:
        ema.restore(params)
        simulator.train()


def dataset_split_hint(data, split: str) -> str:
    """Why a split may be empty, from the folder's manifest."""
    try:
        manifest = json.loads((Path(data) / "manifest.json").read_text())
        subjects = manifest["splits"][split]["subjects"]
        skipped = manifest["recordings"]["skipped"]
    except (OSError, ValueError, KeyError, TypeError):
        return "see its manifest.json"
    parts = [f"subjects in it: {subjects or 'none'}"]
    if skipped:
        parts.append(f"{len(skipped)} recording(s) skipped, see manifest.json")
    parts.append("re-run `mmsim preprocess` with other --test-subjects, or --include-maybe if the activities are "
                 "rated Maybe")
    return "; ".join(parts)


def truncate_log(path: Path, step: int) -> None:
    """Drop log records past ``step`` (written after the checkpoint a killed run resumes from)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, resume: bool = False) -> Path:
    out = Path(cfg.out)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
        log_with=cfg.log_with,
        # Checkpoints go to OUT/checkpoints/checkpoint_<step>. accelerate deletes the oldest before it writes
        # the next, so it keeps at least two: one complete checkpoint must survive a kill during the write.
        project_config=ProjectConfiguration(project_dir=str(out), automatic_checkpoint_naming=True,
                                            total_limit=max(2, cfg.keep_checkpoints)),
        # Shuffling seeded by (seed, epoch): a resumed run replays exactly the batches it missed.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(cfg.seed)

    # 0. The run folder. A checkpoint folder without its marker (a process killed while writing it) is deleted:
    # never resumed from, and its name is free again. A fresh run never writes over another run.
    if accelerator.is_main_process:
        for folder in checkpoint_folders(out):
            if not (folder / TRAINER_STATE).is_file():
                shutil.rmtree(folder)
    accelerator.wait_for_everyone()
    ckpt = latest_checkpoint(out)
    if ckpt is not None and not resume:
        raise UsageError(f"--out {out} already holds a run (up to {ckpt.name}): pass --resume to continue it, "
                         "or choose another --out")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")

    # 1. Data: deterministic order per (seed, epoch), so a resumed run sees the same batches.
    # Only the trained modalities are loaded, so modality-drop draws never spend themselves on
    # modalities this run ignores (Table 8 runs keep their effective drop rate).
    dataset = ClipDataset(cfg.data, split=cfg.split, modality_drop=cfg.modality_drop, seed=cfg.seed,
                          modalities=cfg.modalities, observational_only=cfg.observational_only)
    if len(dataset) == 0:
        only = " observational" if cfg.observational_only else ""
        raise DatasetError(f"--data {cfg.data}: the {cfg.split!r} split has no{only} clips, nothing to train on "
                           f"({dataset_split_hint(cfg.data, cfg.split)})")
    # The loader draws its workers' base seed from its own generator when an epoch's iterator starts: from the
    # global one, a run resumed mid-epoch (a fresh iterator) would shift the noise draws of every later step.
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=len(dataset) >= cfg.batch_size,
                        collate_fn=collate_clips, num_workers=cfg.num_workers,
                        persistent_workers=False,  # workers must pick up set_epoch (modality-drop draws)
                        generator=torch.Generator().manual_seed(cfg.seed))

    # 2. Model, optimiser (paper: Adam 1e-4, betas (0.9, 0.99)), EMA of the trainable weights.
    simulator = build_simulator(cfg)
    if cfg.init_from is not None and not (resume and ckpt is not None):  # a resume loads its own weights
        init_from_pipeline(simulator, cfg.init_from)
        check_init_normalization(cfg.init_from, dataset.stats)
    if simulator.action_warp is not None:  # a projected hand map takes the signals back to cm
        simulator.action_warp.set_pose_frame(dataset.stats)
    params = [p for p in simulator.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    # Linear warmup, then constant: step s (from 0) runs at lr * min(1, (s + 1) / warmup_steps). The schedule
    # starts at its step 1 (last_epoch=0, which needs initial_lr) so that the first step does not run at lr 0.
    for group in optimizer.param_groups:
        group["initial_lr"] = cfg.lr
    lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.warmup_steps, last_epoch=0)
    ema = EMAModel(params, decay=cfg.ema_decay)
    simulator, optimizer, loader, lr_schedule = accelerator.prepare(simulator, optimizer, loader, lr_schedule)
    ema.to(accelerator.device)

    # 3. Resume: restore weights, optimiser, schedule, RNGs, data order and EMA from the newest complete checkpoint.
    step = 0
    if resume and ckpt is None:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", out / "checkpoints")
    elif resume:
        check_resumable(ckpt)
        try:
            accelerator.load_state(str(ckpt))
        except Exception as e:  # noqa: BLE001 - a damaged optimiser/RNG file: name the folder, not a torch stack
            raise CheckpointError(f"cannot resume from {ckpt}: {type(e).__name__}: {str(e).splitlines()[0]}. "
                                  f"Delete this checkpoint folder to resume from the one before it") from None
        load_ema(ema, ckpt / EMA_WEIGHTS)
        ema.to(accelerator.device)
        step = json.loads((ckpt / TRAINER_STATE).read_text())["step"]
        logger.info("resumed from %s (step %d)", ckpt, step)
    if resume and accelerator.is_main_process:
        truncate_log(out / "log.jsonl", step)  # records a killed run wrote after its last checkpoint
    if cfg.log_with:
        accelerator.init_trackers("mmsim", config=cfg.to_dict())

    n_params = sum(p.numel() for p in params)
    logger.info("training %s (%.2f M trainable params) on %d clips, device %s, precision %s",
                cfg.preset, n_params / 1e6, len(dataset), accelerator.device, accelerator.mixed_precision)

    # 4. Optimisation steps. One step = grad_accum micro-batches.
    steps_per_epoch = max(1, len(loader) // cfg.grad_accum)
    epoch = step // steps_per_epoch
    log_file = open(out / "log.jsonl", "a") if accelerator.is_main_process else None
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train", disable=not accelerator.is_local_main_process,
               dynamic_ncols=True)
    simulator.train()
    window, t_window = [], time.perf_counter()
    while step < cfg.max_steps:
        dataset.set_epoch(epoch)  # modality-drop draws
        loader.set_epoch(epoch)  # shuffling
        epoch_loader = loader
        skip = (step % steps_per_epoch) * cfg.grad_accum
        if skip:  # resumed mid-epoch: skip the micro-batches already seen
            epoch_loader = accelerator.skip_first_batches(loader, skip)
        for batch in epoch_loader:
            with accelerator.accumulate(simulator):
                losses = simulator(batch)
                accelerator.backward(losses.total)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr_schedule.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            if step % cfg.ema_every == 0:
                ema.step(params)
            window.append(losses.as_floats())
            bar.update(1)

            if step % cfg.log_every == 0 or step == cfg.max_steps:
                dt = time.perf_counter() - t_window
                record = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                record.update(step=step, epoch=epoch, lr=lr_schedule.get_last_lr()[0], steps_per_s=len(window) / dt,
                              window_s=dt)
                bar.set_postfix({k: f"{record[k]:.4f}" for k in ("total", "diffusion", "ssl", "norm", "motion", "placement")}
                                | {"it/s": f"{record['steps_per_s']:.2f}"})
                if log_file:
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                accelerator.log(record, step=step)
                if not math.isfinite(record["total"]):
                    raise FloatingPointError(f"loss became {record['total']} at step {step}; see {out / 'log.jsonl'}")
                window, t_window = [], time.perf_counter()

            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                save_checkpoint(step, accelerator, simulator, ema, dataset.stats, cfg)
            if step >= cfg.max_steps:
                break
        epoch += 1
    bar.close()

    # 5. The final EMA pipeline.
    final = out / "final"
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        export_pipeline(final, accelerator.unwrap_model(simulator), ema, dataset.stats, cfg.recipe())
        log_file.close()
        logger.info("done: %s", final)
    accelerator.end_training()
    return final


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmsim train", description=__doc__.splitlines()[0])
    p.add_argument("--config", help=f"named config {named_configs()} or a JSON file")
    p.add_argument("--preset", help="model preset (mmsim-tiny | mmsim-cpu | mmsim-paper)")
    p.add_argument("--data", help="processed clip folder (from `mmsim preprocess`)")
    p.add_argument("--out", help="run folder")
    p.add_argument("--max-steps", dest="max_steps", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--grad-accum", dest="grad_accum", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--mixed-precision", dest="mixed_precision", choices=["auto", "no", "fp16", "bf16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--init-from", dest="init_from", metavar="PIPELINE",
                   help="start from a trained pipeline folder's weights (fine-tuning), e.g. examples/demo_checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, nested with dots, e.g. model.action_encoder.fusion=mean")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --out (its config.json is reused)")
    return p


def _config_changes(saved: str, config: str | None, overrides: list[str], flags: dict) -> list[str]:
    """Keys (dotted) on which ``config`` + ``overrides`` differ from a run's saved config; [] if it cannot tell
    because the given config is itself invalid (the normal path then reports that)."""
    try:
        given = asdict(resolve_config(config, overrides, **flags))
    except (ValueError, TypeError, MMSimError):
        return []
    kept = asdict(resolve_config(saved, [], **flags))

    def diff(a, b, prefix=""):
        if isinstance(a, dict) and isinstance(b, dict):
            return [k for key in sorted(set(a) | set(b)) for k in diff(a.get(key), b.get(key), f"{prefix}{key}.")]
        return [] if a == b else [prefix.rstrip(".")]
    return diff(given, kept)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    flags = {k: getattr(args, k) for k in ("preset", "data", "out", "max_steps", "batch_size", "grad_accum",
                                           "lr", "mixed_precision", "seed", "init_from")}
    config = args.config
    resumable = args.resume and args.out and (Path(args.out) / "config.json").exists()
    if resumable:
        saved = str(Path(args.out) / "config.json")  # a resumed run keeps its resolved config
        if config or args.overrides:
            # Re-running the very command that started the run, plus --resume, is fine; another config would
            # rewrite config.json and train the rest of the run under settings it never had.
            changed = _config_changes(saved, config, args.overrides, flags)
            if changed:
                flag = "--config" if config else "--set"
                print(f"mmsim train: error: {flag} with --resume: {args.out} keeps the config it was started with "
                      f"(its config.json), and this one changes {', '.join(changed[:5])}"
                      f"{' ...' if len(changed) > 5 else ''}; leave out {flag}, or give --max-steps to extend "
                      f"the run", file=sys.stderr)
                return 2
        config, args.overrides = saved, []
    try:
        try:
            cfg = resolve_config(config, args.overrides, **flags)
        except (ValueError, TypeError) as e:  # an unknown key, a value out of range: a usage error
            raise UsageError(str(e)) from None
        train(cfg, resume=args.resume)
    except MMSimError as e:
        print(f"mmsim train: error: {e}", file=sys.stderr)
        return exit_status(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
