"""Export a training run's EMA pipeline as the bundled demo checkpoint: fp16 safetensors + a model card.

    python examples/export_demo_checkpoint.py RUN_DIR [--out examples/demo_checkpoint]
        [--quality /tmp/mmsim_demo_quality/summary.json] [--steps N]

RUN_DIR is an ``mmsim train --out`` folder (its ``final/`` pipeline, or the latest checkpoint). The weights are
stored in fp16 to keep the folder under the 30 MB limit for ``examples/``; ``load_pipeline`` upcasts them to
fp32 on CPU. ``--quality`` is the summary written by ``python -m mmsim.training.experiments.demo_quality``: its figures go in the
model card. ``--steps`` sets the checkpoint's default sampler steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def card(
    run: Path, quality: dict | None, steps: int, n_params: int, trained_steps: int | None = None,
    history: list[str] | None = None,
) -> str:
    cfg = json.loads((run / "config.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    logged = [r for r in log if "step" in r and "diffusion" in r and (trained_steps is None or r["step"] <= trained_steps)]
    last = logged[-1] if logged else {}
    manifest_path = Path(cfg["data"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    train = manifest.get("splits", {}).get("train", {})
    test = manifest.get("splits", {}).get("test", {})
    sched = cfg.get("model", {}).get("scheduler", {})
    timestep_line = (
        [f"- {sched['sampler_timestep_prob']:.0%} of each batch is noised at the timesteps the "
         f"{sched.get('num_inference_steps', '?')}-step sampler visits (`scheduler.sampler_timestep_prob`), the "
         "rest at uniform timesteps: the default sampler's predictions are trained directly."]
        if sched.get("sampler_timestep_prob", 0) > 0 else []
    )
    lines = [
        "---", "library_name: diffusers", "tags: [mmsim, video-generation, action-conditioned, multisensory]",
        "license: apache-2.0", "---", "",
        "# mmsim demo checkpoint (`mmsim-cpu`)", "",
        "The bundled simulator of the mmsim studio: predicts the 8 next 64x64 frames of an egocentric scene from 4 "
        "context frames and the hand pose, body pose, muscle EMG and hand force over those 12 steps "
        "(Li & Torralba, ICCV 2025, at CPU scale).", "",
        "## Model", "",
        f"- Preset `{cfg['preset']}`, {n_params / 1e6:.1f} M parameters, stored fp16 (loaded as fp32 on CPU).",
        f"- Sampler: {steps} step(s) by default (`num_inference_steps`), v-prediction on a cosine schedule; "
        "the studio's step control changes it.",
        "- EMA weights of the run (decay "
        f"{cfg['ema_decay']}, every {cfg['ema_every']} steps).",
        "- Beyond the paper, for CPU scale: the action warp component (`mmsim_core/models/action_warp/`: an ego-motion head) maps the body "
        "pose to an affine warp of the last context frame per future frame, and the diffusion models the "
        "difference from that warped frame (`target=\"warped_residual\"`). Dropping body pose removes the warp.",
        "",
        "## Training", "",
        f"- Data: synthetic world (`mmsim synth`), train subjects {train.get('subjects', '?')} "
        f"({train.get('num_clips', '?')} clips); test subjects {test.get('subjects', '?')} "
        f"({test.get('num_clips', '?')} clips) never seen in training.",
        "- Command: `mmsim train --config training_config.json --data DATA --out RUN` (`training_config.json`, "
        "beside this card, is the run's resolved config).",
        f"- Steps: {trained_steps or last.get('step', '?')} at batch {cfg['batch_size']}, lr {cfg['lr']}, modality drop "
        f"{cfg['modality_drop']}; final losses: diffusion {last.get('diffusion', float('nan')):.4f}, "
        f"ssl {last.get('ssl', float('nan')):.4f}, norm {last.get('norm', float('nan')):.4f}, "
        f"motion {last.get('motion', float('nan')):.4f}.",
        *[f"- {h}" for h in history or []],
        *timestep_line,
        "- Hardware: 2-core CPU (no GPU).", "",
    ]
    if quality:
        r = quality["results"]
        lines += [
            "## Held-out evaluation", "",
            f"Synthetic recordings generated with world seed {quality['seed']} (never used in training), "
            f"{r['checkpoint']['num_clips']} clips, `python -m mmsim.training.experiments.demo_quality`:", "",
            "| | PSNR dB | SSIM |", "|---|---:|---:|",
            f"| this checkpoint | {r['checkpoint']['psnr']:.2f} | {r['checkpoint']['ssim']:.3f} |",
            f"| copy the last context frame | {r['copy-last']['psnr']:.2f} | {r['copy-last']['ssim']:.3f} |",
            f"| this checkpoint, all actions dropped | {r['no-actions']['psnr']:.2f} | {r['no-actions']['ssim']:.3f} |",
            "",
            f"Target (at least 1 dB PSNR over both baselines): {'met' if quality.get('target_met') else 'not met yet'}.",
            "",
        ]
    lines += [
        "## Limitations", "",
        "- Trained only on the synthetic world (tiled floor, table, objects, two arms): it does not transfer to "
        "real ActionSense video without training on it (`mmsim preprocess` + `mmsim train`).",
        "- A short CPU run: predictions are blurry, and sampling with many steps gives sharper but less accurate "
        "futures than the default.",
        "- Body pose (head and torso motion moves the camera) dominates what changes in the pixels; the hand force "
        "and EMG effects are small and rendered less faithfully.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--out", default=str(REPO / "examples" / "demo_checkpoint"))
    p.add_argument("--quality", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--history", action="append", default=[],
                   help="a line for the card's Training section (e.g. how the run was resumed); repeatable")
    args = p.parse_args()

    from mmsim_core import MultisensoryVideoPipeline
    from mmsim.training.train import latest_checkpoint

    run = Path(args.run)
    src = run / "final" if (run / "final" / "model_index.json").is_file() else latest_checkpoint(run) / "pipeline"
    pipe = MultisensoryVideoPipeline.from_pretrained(src)
    if args.steps:
        pipe.register_to_config(default_num_inference_steps=int(args.steps))
    steps = int(pipe.config.default_num_inference_steps)
    n_params = sum(p.numel() for c in pipe.components.values() if isinstance(c, torch.nn.Module) for p in c.parameters())
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.to(dtype=torch.float16)
    # Normalisation statistics stay fp32: body-pose deltas have variances near 1e-9, below fp16's range.
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.float()
    pipe.save_pretrained(tmp, safe_serialization=True)
    shutil.copy(run / "config.json", tmp / "training_config.json")
    quality = json.loads(Path(args.quality).read_text()) if args.quality else None
    state = src.parent / "trainer_state.json"
    trained = json.loads(state.read_text()).get("step") if state.is_file() else None
    (tmp / "README.md").write_text(card(run, quality, steps, n_params, trained, args.history))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB, {n_params / 1e6:.1f} M parameters, fp16, {steps} sampler steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
