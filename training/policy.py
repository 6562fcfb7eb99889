"""Goal-conditioned policy: train π(X_0, X_T, history) -> a[1:T] with and without the simulator loss, and judge
it by the synthetic world's truth.

    mmsim policy train --data data/processed --out runs/policy_la                        # L = L_a (baseline)
    mmsim policy train --data data/processed --out runs/policy_sim \\
        --simulator examples/demo_checkpoint --sim-loss-weight 1                           # L = L_a + λ L_sim
    mmsim policy evaluate runs/policy_sim data/processed --simulator examples/demo_checkpoint --out policy.json

Training (:func:`train_policy`): L_a is the mean squared error between the policy's future actions and the
recorded (expert) ones, in normalised units; L_sim is the mean squared error between the frozen simulator's
future frames under the policy's actions (:func:`mmsim_core.policies.simulator_loss.simulate`, from one fixed
noise draw per clip, so the loss of a clip does not change from visit to visit) and the true future frames.
Clips lacking a modality are kept and masked: the missing numbers count in neither loss and the simulator drops
that modality, as the pipeline does for a missing input. Each step draws its batch from (seed, step), so a
resumed run sees exactly the batches the uninterrupted one would have.

Evaluation (:func:`evaluate_policy`) on held-out clips:

* ``action_mse`` — the policy's future actions vs the expert's (normalised units);
* ``xT_mse_sim`` — the simulator's last frame under the policy's actions vs the true goal frame X_T (pixels in
  [0, 1]; needs ``--simulator``), and ``xT_mse_sim_expert``, the same under the expert's actions;
* ``xT_mse_oracle`` — the synthetic world run from the clip's first state under the policy's actions: its last
  frame vs the true X_T; ``xT_mse_oracle_expert``, the expert's actions re-run (the floor: rendering and video
  compression, no action error);
* ``goal_success`` — share of clips whose world outcome (held, lifted, cut, ... per object) under the policy's
  actions equals the outcome under the expert's, over all clips and over the eventful ones (where the expert
  changed some label), and ``label_agreement``, the mean share of the goal's labels reached.

Recordings without an oracle (real ActionSense data) get the first two only, with a note saying why.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmsim_core import schema
from mmsim_core.errors import MMSimError, UsageError
from mmsim_core.policies.common import actions_to_vector, frames_to_unit, modality_slices, vector_to_actions
from mmsim_core.policies.goal_policy import GoalConditionedPolicy

from mmsim.training.command_line import ArgumentParser, report_error, start

logger = logging.getLogger("mmsim.policy")

TRAINING_FILE = "policy_training.json"
TRAINING_FORMAT = "mmsim-policy-training-v1"
REPORT_FORMAT = "mmsim-policy-eval-v1"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "training_state.pt"

POLICY_SIZES: dict[str, dict] = {
    # Unit tests: a fraction of a second per step.
    "tiny": dict(frame_widths=(8, 16, 16, 16), frame_feature_dim=16, history_dim=16, unet_widths=(16, 16, 16),
                 step_dim=16),
    # The default, sized for a 2-core CPU.
    "cpu": dict(frame_widths=(32, 64, 128, 256), frame_feature_dim=256, history_dim=256, unet_widths=(128, 256, 512),
                step_dim=128),
    # Diffusion policy's widths: a ResNet-18-wide frame encoder and a [128, 256, 512, 1024] temporal U-Net.
    "paper": dict(frame_widths=(64, 128, 256, 512), frame_feature_dim=512, history_dim=512,
                  unet_widths=(128, 256, 512, 1024), step_dim=256),
}


@dataclass
class PolicyTrainConfig:
    data: str
    out: str
    simulator: str | None = None
    sim_loss_weight: float = 0.0
    max_steps: int = 2000
    batch_size: int = 8
    lr: float = 3e-4
    warmup_steps: int = 100
    """Linear learning-rate warm-up: Adam's first updates move every weight by about lr whatever the gradient's
    size, and through the simulator that is enough to push the actions far from the recorded ones at once."""
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    size: str = "cpu"
    save_every: int = 250
    log_every: int = 10
    num_inference_steps: int | None = None
    device: str = "auto"
    init_from: str | None = None
    """A trained policy folder to start from (its widths replace ``size``): fine-tuning, e.g. L_a then L_a + λ L_sim."""
    policy: dict = field(default_factory=dict)
    """GoalConditionedPolicy arguments (filled from ``size``)."""

    def check(self) -> None:
        """UsageError naming the flag for any value the loop cannot run with."""
        if not Path(self.data).exists():
            raise UsageError(f"--data {self.data} does not exist (make one with `mmsim synth` + `mmsim preprocess`)")
        if not math.isfinite(self.sim_loss_weight) or self.sim_loss_weight < 0:
            raise UsageError(f"--sim-loss-weight must be a finite number >= 0, got {self.sim_loss_weight}")
        if self.sim_loss_weight > 0 and not self.simulator:
            raise UsageError("--sim-loss-weight > 0 needs --simulator (a pipeline folder, e.g. examples/demo_checkpoint)")
        if self.simulator and not Path(self.simulator).exists():
            raise UsageError(f"--simulator {self.simulator} does not exist")
        for flag, value in (("--max-steps", self.max_steps), ("--batch-size", self.batch_size),
                            ("--save-every", self.save_every)):
            if value < 1:
                raise UsageError(f"{flag} must be >= 1, got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise UsageError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.size not in POLICY_SIZES:
            raise UsageError(f"--size must be one of {list(POLICY_SIZES)}, got {self.size!r}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise UsageError(f"--steps must be >= 1, got {self.num_inference_steps}")
        if self.init_from is not None and not (Path(self.init_from) / "config.json").is_file():
            raise UsageError(f"--init-from {self.init_from}: not a policy folder (no config.json; give RUN/final)")


# ----------------------------------------------------------------------------------------------
# Batches in the policy's terms
# ----------------------------------------------------------------------------------------------
def batch_vectors(batch: dict, clip_steps: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """A collated batch -> action vectors (B, h+F, A), an element mask (B, A) (False where the clip lacks the
    modality) and the per-modality mask {name: bool (B,)} (every modality, absent ones all False)."""
    b = batch["context"].shape[0]
    acts, mods = {}, {}
    for name in schema.MODALITY_NAMES:
        if name in batch["actions"]:
            acts[name], mods[name] = batch["actions"][name], batch["action_mask"][name].bool()
        else:  # not in the dataset at all (a real recording without this sensor)
            acts[name] = torch.zeros(b, clip_steps, *schema.MODALITIES[name].shape)
            mods[name] = torch.zeros(b, dtype=torch.bool)
    vec = actions_to_vector(acts)  # (B, h+F, A)
    mask = torch.zeros(b, vec.shape[-1], dtype=torch.bool)
    for name, sl in modality_slices().items():
        mask[:, sl] = mods[name][:, None]
    return vec, mask, mods


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the present numbers: pred/target (B, T, A), mask (B, A)."""
    m = mask[:, None, :].expand_as(pred).to(pred.dtype)  # (B, T, A)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Clips of training step ``step``: drawn from (seed, step) alone, so a resumed run replays them."""
    rng = np.random.default_rng([seed, step])
    return rng.choice(n, size=batch_size, replace=n < batch_size).tolist()


def load_simulator(path: str, device: str = "auto"):
    """The frozen simulator pipeline (eval mode, no parameter gradients)."""
    from mmsim_core.evaluation.loading import load_pipeline
    from mmsim_core.policies.simulator_loss import freeze_simulator

    pipe, _ = load_pipeline(path, device)
    freeze_simulator(pipe)
    return pipe


def check_simulator_stats(pipe, stats: schema.NormalizationStats, simulator: str) -> None:
    """The simulator must read actions normalised as the data's are, or L_sim judges other actions."""
    own = pipe.normalization_stats
    if own is None:
        return
    for name in stats.minimum:
        if name in own.minimum and not (np.allclose(own.minimum[name], stats.minimum[name], atol=1e-4)
                                        and np.allclose(own.maximum[name], stats.maximum[name], atol=1e-4)):
            logger.warning("--simulator %s was trained with other %s statistics than the data; its frames under the "
                           "policy's actions judge slightly different signals", simulator, name)
            return


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def train_policy(cfg: PolicyTrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train the policy; returns ``OUT/final`` (the policy folder)."""
    from mmsim_core.data import ClipDataset, collate_clips
    from mmsim_core.evaluation.loading import resolve_device
    from mmsim.training.evaluate import clip_noise
    from mmsim_core.policies.simulator_loss import simulator_loss

    cfg.check()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder (it is created if missing)")
    ckpt = out / CHECKPOINT_DIR
    if ckpt.exists() and not resume:
        raise UsageError(f"--out {out} already holds a policy run; pass --resume to continue it or choose another --out")
    if resume and not (ckpt / STATE_FILE).is_file():
        raise UsageError(f"--resume: no checkpoint in {out} to continue from")
    if cfg.init_from is not None and not resume:
        cfg.policy = {}  # the starting policy's own widths
    else:
        cfg.policy = {**POLICY_SIZES[cfg.size], **cfg.policy}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    ds = ClipDataset(cfg.data, split="train")
    if len(ds) == 0:
        raise MMSimError(f"the train split of {cfg.data} has no clips")
    h, f = ds.context_frames, ds.future_frames
    stats = ds.stats
    pipe = None
    if cfg.sim_loss_weight > 0:
        pipe = load_simulator(cfg.simulator, cfg.device)
        if (pipe.context_frames, pipe.future_frames) != (h, f):
            raise UsageError(f"--simulator predicts {pipe.future_frames} frames from {pipe.context_frames}, the data's "
                             f"clips have {f} from {h}")
        check_simulator_stats(pipe, stats, cfg.simulator)
    text_kind = pipe.text_kind if pipe is not None else None

    if resume:
        policy = GoalConditionedPolicy.from_pretrained(ckpt).to(device)
    elif cfg.init_from is not None:
        try:
            policy = GoalConditionedPolicy.from_pretrained(cfg.init_from).to(device)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise UsageError(f"--init-from {cfg.init_from}: cannot load a policy ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
        if (policy.config.context_frames, policy.config.future_frames) != (h, f):
            raise UsageError(f"--init-from {cfg.init_from} acts from {policy.config.context_frames} context frames "
                             f"over {policy.config.future_frames} steps; the data's clips have {h} and {f}")
    else:
        policy = GoalConditionedPolicy(context_frames=h, future_frames=f, **cfg.policy).to(device)
    policy.normalization_stats = stats
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    log_path = out / "log.jsonl"
    if resume:
        state = torch.load(ckpt / STATE_FILE, map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        if log_path.exists():  # drop records written after the checkpoint by a killed run
            keep = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            log_path.write_text("".join(ln + "\n" for ln in keep))
        logger.info("resuming %s at step %d", out, step)
    n_params = sum(p.numel() for p in policy.parameters())
    logger.info("policy: %.2fM parameters, %d train clips, λ = %g", n_params / 1e6, len(ds), cfg.sim_loss_weight)

    def save(folder: Path) -> None:
        policy.save_pretrained(folder, normalization_stats=stats)

    bar = tqdm(total=cfg.max_steps, initial=step, desc="policy", disable=not progress, dynamic_ncols=True)
    t_last, step_last = time.perf_counter(), step
    with open(log_path, "a") as log:
        while step < cfg.max_steps:
            batch = collate_clips([ds[i] for i in batch_indices(len(ds), cfg.batch_size, cfg.seed, step)])
            vec, mask, mods = batch_vectors(batch, h + f)  # (B, h+F, A), (B, A), {name: (B,)}
            vec, mask = vec.to(device), mask.to(device)
            history, expert = vec[:, :h], vec[:, h:]  # (B, h, A), (B, F, A)
            frames = frames_to_unit(batch["context"]).to(device)  # (B, h, 3, H, W)
            future = frames_to_unit(batch["future"]).to(device)  # (B, F, 3, H, W)
            start, goal = frames[:, -1], future[:, -1]  # X_0, X_T: (B, 3, H, W)

            pred = policy(start, goal, history)  # (B, F, A)
            l_a = masked_mse(pred, expert, mask)
            loss = l_a
            l_sim = None
            if pipe is not None:
                actions = vector_to_actions(torch.cat([history, pred], dim=1))  # {name: (B, h+F, *shape)}
                action_mask = {k: v.to(device) for k, v in mods.items()}
                latents = clip_noise(pipe, [m["index"] for m in batch["meta"]], cfg.seed).to(device)
                text = batch["text"][text_kind] if text_kind else None
                l_sim = simulator_loss(pipe, batch["context"], actions, future, latents, action_mask, text,
                                       cfg.num_inference_steps)
                loss = l_a + cfg.sim_loss_weight * l_sim

            lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))  # from the step alone: resume-safe
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1

            if not math.isfinite(loss.item()):
                raise MMSimError(f"the loss became {loss.item()} at step {step}; try a smaller --lr")
            record = {"step": step, "loss": loss.item(), "l_a": l_a.item(),
                      "l_sim": None if l_sim is None else l_sim.item(), "grad_norm": float(grad_norm), "lr": lr}
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                now = time.perf_counter()
                record["sec_per_step"] = (now - t_last) / (step - step_last)
                t_last, step_last = now, step
            log.write(json.dumps(record) + "\n")
            bar.set_postfix(l_a=f"{record['l_a']:.4f}", **({} if l_sim is None else {"l_sim": f"{record['l_sim']:.4f}"}))
            bar.update()
            if step % cfg.save_every == 0 or step == cfg.max_steps:
                log.flush()
                save(ckpt)
                torch.save({"optimizer": optimizer.state_dict(), "step": step}, ckpt / STATE_FILE)
    bar.close()

    final = out / "final"
    save(final)
    summary = {"format": TRAINING_FORMAT, "data": str(cfg.data), "simulator": cfg.simulator,
               "sim_loss_weight": cfg.sim_loss_weight, "steps": step, "batch_size": cfg.batch_size, "lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
               "seed": cfg.seed, "size": cfg.size, "init_from": cfg.init_from, "train_clips": len(ds), "parameters": n_params}
    (final / TRAINING_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("wrote %s", final)
    return final


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def resolve_policy(path: str) -> Path:
    """A run folder (its ``final``) or a policy folder -> the policy folder."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"RUN_OR_POLICY {p} does not exist")
    for cand in (p / "final", p, p / CHECKPOINT_DIR):
        cfg = cand / GoalConditionedPolicy.config_name
        if cfg.is_file():
            try:
                if json.loads(cfg.read_text()).get("_class_name") == GoalConditionedPolicy.__name__:
                    return cand
            except (OSError, ValueError):
                pass
    raise MMSimError(f"{p}: neither a policy folder nor a run folder with final/ (run `mmsim policy train` first)")


def _mse01(a: np.ndarray, b: np.ndarray) -> float:
    """MSE of two uint8 frames in [0, 1] units."""
    return float(np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2))


def evaluate_policy(policy_path: str, data: str, simulator: str | None = None, split: str = "test",
                    clips: int | None = None, seed: int = 0, batch_size: int = 8, device: str = "auto",
                    progress: bool = True) -> dict:
    """The report of the module docstring (a JSON-ready dict)."""
    from mmsim_core.data import collate_clips
    from mmsim_core.synth import load_oracle
    from mmsim_core.synth.outcome import goal_reached, label_agreement, rollout
    from mmsim.training.evaluate import clip_noise, open_dataset, pick_indices

    if clips is not None and clips < 1:
        raise UsageError(f"--clips must be >= 1, got {clips}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if simulator is not None and not Path(simulator).exists():
        raise UsageError(f"--simulator {simulator} does not exist")
    folder = resolve_policy(policy_path)
    if not Path(data).exists():
        raise UsageError(f"DATA {data} does not exist (make one with `mmsim synth` + `mmsim preprocess`)")
    t0 = time.perf_counter()
    policy = GoalConditionedPolicy.from_pretrained(folder)
    policy.eval()
    ds = open_dataset(data, split, schema.MODALITY_NAMES)
    if len(ds) == 0:
        raise MMSimError(f"split {split!r} of {data} has no clips")
    stats = ds.stats
    h, f = ds.context_frames, ds.future_frames
    if (policy.config.context_frames, policy.config.future_frames) != (h, f):
        raise MMSimError(f"the policy acts on {policy.config.context_frames} + {policy.config.future_frames} steps, "
                         f"the clips of {data} have {h} + {f}")
    pipe = load_simulator(simulator, device) if simulator else None
    notes = []
    if pipe is None:
        notes.append("xT_mse_sim skipped: no --simulator given")
    if policy.normalization_stats is not None:
        for name in stats.minimum:
            if name in policy.normalization_stats.minimum and not np.allclose(
                    policy.normalization_stats.minimum[name], stats.minimum[name], atol=1e-4):
                notes.append(f"the policy was trained with other {name} statistics than {data}'s")
                break

    indices = pick_indices(len(ds), clips)
    rows: list[dict] = []
    oracles: dict[str, object] = {}
    no_oracle: str | None = None
    bar = tqdm(total=len(indices), desc="policy evaluate", disable=not progress, dynamic_ncols=True)
    for s in range(0, len(indices), batch_size):
        items = [ds[i] for i in indices[s:s + batch_size]]
        batch = collate_clips(items)
        vec, mask, mods = batch_vectors(batch, h + f)  # (B, h+F, A), (B, A), {name: (B,)}
        history = {k: v[:, :h].numpy() for k, v in vector_to_actions(vec).items()}
        goal = batch["future"][:, -1].numpy()  # X_T uint8 (B, H, W, 3)
        acts = policy.act(batch["context"].numpy(), goal, history)  # {name: (B, h+F, *shape)}
        pred = actions_to_vector(acts)  # (B, h+F, A)
        m = mask[:, None, :].float()
        sq = (pred[:, h:] - vec[:, h:]) ** 2 * m  # (B, F, A)
        action_mse = (sq.sum((1, 2)) / (m.sum((1, 2)) * f).clamp_min(1)).numpy()
        # Per modality: hand force is 2,048 of the 2,292 numbers, so the overall figure is mostly its error.
        per_modality = {n: (sq[..., sl].sum((1, 2)) / (m[..., sl].sum((1, 2)) * f).clamp_min(1)).numpy()
                        for n, sl in modality_slices().items()}

        sim_policy = sim_expert = None
        if pipe is not None:
            latents = clip_noise(pipe, [it["meta"]["index"] for it in items], seed)
            text = batch["text"][pipe.text_kind] if pipe.text_kind else None
            amask = {k: v.numpy() for k, v in mods.items()}
            run = lambda a: pipe(context=batch["context"].numpy(), actions=a, action_mask=amask, text=text,  # noqa: E731
                                 latents=latents, output_type="np").frames  # uint8 (B, F, H, W, 3)
            sim_policy = run(acts)
            sim_expert = run({k: v.numpy() for k, v in vector_to_actions(vec).items()})

        for j, it in enumerate(items):
            meta = it["meta"]
            row = {"index": int(meta["index"]), "action_mse": float(action_mse[j])}
            row.update({f"action_mse_{n}": float(v[j]) for n, v in per_modality.items() if mods[n][j]})
            if sim_policy is not None:
                row["xT_mse_sim"] = _mse01(sim_policy[j, -1], it["future"][-1])
                row["xT_mse_sim_expert"] = _mse01(sim_expert[j, -1], it["future"][-1])
            if no_oracle is None:
                src = meta.get("source")
                try:
                    if src not in oracles:
                        oracles[src] = load_oracle(src)
                    oracle = oracles[src]
                except (MMSimError, TypeError, OSError) as e:
                    no_oracle = f"oracle metrics skipped: clip {meta['index']} has no synthetic-world oracle ({e})"
                    oracle = None
                if oracle is not None:
                    present = [k for k in schema.MODALITY_NAMES if k in it["actions"]]
                    raw_policy = {k: schema.denormalize(k, acts[k][j], stats) for k in present}
                    raw_expert = {k: schema.denormalize(k, it["actions"][k], stats) for k in present}
                    ref = rollout(oracle, meta["video_frame_indices"], raw_expert)
                    got = rollout(oracle, meta["video_frame_indices"], raw_policy)
                    row.update(xT_mse_oracle=_mse01(got.frames[-1], it["future"][-1]),
                               xT_mse_oracle_expert=_mse01(ref.frames[-1], it["future"][-1]),
                               goal_reached=bool(goal_reached(got.outcome, ref.outcome)),
                               label_agreement=label_agreement(got.outcome, ref.outcome),
                               eventful=bool(ref.eventful))
            rows.append(row)
        bar.update(len(items))
    bar.close()
    if no_oracle is not None:  # all or nothing: a metric over some clips only would mislead
        notes.append(no_oracle)
        for row in rows:
            for k in ("xT_mse_oracle", "xT_mse_oracle_expert", "goal_reached", "label_agreement", "eventful"):
                row.pop(k, None)

    def mean(key: str, rows=rows):
        vals = [r[key] for r in rows if key in r]
        return float(np.mean(vals)) if vals else None

    eventful = [r for r in rows if r.get("eventful")]
    metrics = {
        "action_mse": mean("action_mse"),
        **{f"action_mse_{n}": mean(f"action_mse_{n}") for n in schema.MODALITY_NAMES},
        "xT_mse_sim": mean("xT_mse_sim"),
        "xT_mse_sim_expert": mean("xT_mse_sim_expert"),
        "xT_mse_oracle": mean("xT_mse_oracle"),
        "xT_mse_oracle_expert": mean("xT_mse_oracle_expert"),
        "goal_success": mean("goal_reached"),
        "goal_success_eventful": mean("goal_reached", eventful),
        "label_agreement": mean("label_agreement"),
        "eventful_clips": len(eventful) if no_oracle is None else None,
    }
    training = folder / TRAINING_FILE
    return {
        "format": REPORT_FORMAT,
        "policy": str(folder),
        "training": json.loads(training.read_text()) if training.is_file() else None,
        "data": str(data), "split": split, "clips": len(rows), "simulator": simulator, "seed": seed,
        "metrics": metrics,
        "notes": notes,
        "per_clip": rows,
        "seconds": round(time.perf_counter() - t0, 2),
    }


METRIC_LABELS = [
    ("action_mse", "action MSE (normalised, future steps)"),
    *((f"action_mse_{n}", f"action MSE, {n.replace('_', ' ')}") for n in schema.MODALITY_NAMES),
    ("xT_mse_sim", "X_T MSE through the simulator, policy actions"),
    ("xT_mse_sim_expert", "X_T MSE through the simulator, expert actions"),
    ("xT_mse_oracle", "X_T MSE in the world (oracle), policy actions"),
    ("xT_mse_oracle_expert", "X_T MSE in the world (oracle), expert actions (floor)"),
    ("goal_success", "goal success, all clips"),
    ("goal_success_eventful", "goal success, eventful clips"),
    ("label_agreement", "label agreement"),
    ("eventful_clips", "eventful clips"),
]


def markdown(report: dict) -> str:
    lines = [f"# Goal-conditioned policy: {report['policy']}", "",
             f"{report['clips']} clips of {report['data']} ({report['split']}); simulator: {report['simulator']}", "",
             "| metric | value |", "|---|---|"]
    for key, label in METRIC_LABELS:
        v = report["metrics"].get(key)
        lines.append(f"| {label} | {'—' if v is None else (v if isinstance(v, int) else f'{v:.4f}')} |")
    lines += [""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: dict, out: str | None) -> None:
    text = markdown(report)
    if out is None:
        print(text)
        return
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a .json file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {path} and {path.with_suffix('.md')}")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_train_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="mmsim policy train",
                       description="train the goal-conditioned policy (L_a, or L_a + λ L_sim)")
    p.add_argument("--data", required=True, help="processed clip folder (its train split is used)")
    p.add_argument("--out", required=True, help="run folder: log.jsonl, config.json, checkpoint/, final/")
    p.add_argument("--simulator", help="frozen simulator pipeline folder for L_sim, e.g. examples/demo_checkpoint")
    p.add_argument("--sim-loss-weight", dest="sim_loss_weight", type=float, default=None,
                   help="λ in L = L_a + λ L_sim (default 1 with --simulator, else 0: the baseline; > 0 needs "
                        "--simulator)")
    p.add_argument("--max-steps", dest="max_steps", type=int, default=2000)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int, default=100,
                   help="linear learning-rate warm-up steps (default 100)")
    p.add_argument("--seed", type=int, default=0, help="initialisation, batch draws and the per-clip noise of L_sim")
    p.add_argument("--size", default="cpu", help=f"policy widths: {' | '.join(POLICY_SIZES)} (default cpu)")
    p.add_argument("--steps", dest="num_inference_steps", type=int, default=None,
                   help="simulator sampler steps in L_sim (default: the simulator's own)")
    p.add_argument("--save-every", dest="save_every", type=int, default=250)
    p.add_argument("--device", default="auto")
    p.add_argument("--init-from", dest="init_from", metavar="POLICY",
                   help="start from a trained policy folder (RUN/final), e.g. to fine-tune an L_a policy with L_sim")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    return p


def build_evaluate_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="mmsim policy evaluate", description="score a policy on held-out clips")
    p.add_argument("policy", metavar="RUN_OR_POLICY", help="a `mmsim policy train` run folder or a policy folder")
    p.add_argument("data", metavar="DATA", help="processed clip folder")
    p.add_argument("--simulator", help="simulator pipeline folder for the X_T MSE through the simulator")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=None, help="clips spread evenly over the split (default all)")
    p.add_argument("--seed", type=int, default=0, help="the simulator's per-clip noise")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="report .json (a .md table is written beside it); default: print the table")
    return p


def _sim_loss_weight(args) -> float:
    """λ as given; by default 1 with a --simulator (why else name one) and 0 without (the baseline)."""
    if args.sim_loss_weight is not None:
        return float(args.sim_loss_weight)
    return 1.0 if args.simulator else 0.0


USAGE = "usage: mmsim policy {train,evaluate} ... ('mmsim policy train --help')"


def main(argv: list[str] | None = None) -> int:
    argv, prog = start(argv, "mmsim policy", ("train", "evaluate"))
    command = argv[0] if argv else None
    try:
        if command == "train":
            args = build_train_parser().parse_args(argv[1:])
            resume_cfg = Path(args.out) / "config.json"
            cfg = PolicyTrainConfig(
                data=args.data, out=args.out, simulator=args.simulator,
                sim_loss_weight=_sim_loss_weight(args), max_steps=args.max_steps,
                batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps, seed=args.seed, size=args.size,
                num_inference_steps=args.num_inference_steps, save_every=args.save_every, device=args.device,
                init_from=args.init_from)
            if args.resume and resume_cfg.is_file():  # widths must match the checkpoint's
                cfg.policy = json.loads(resume_cfg.read_text()).get("policy", {})
            final = train_policy(cfg, resume=args.resume)
            print(f"wrote {final}")
        elif command == "evaluate":
            args = build_evaluate_parser().parse_args(argv[1:])
            report = evaluate_policy(args.policy, args.data, args.simulator, args.split, args.clips, args.seed,
                                     args.batch_size, args.device)
            write_report(report, args.out)
        elif command in ("-h", "--help"):
            print(USAGE)
        else:
            raise UsageError(f"choose a subcommand, 'train' or 'evaluate' (got {command!r}); {USAGE}")
    except MMSimError as e:
        return report_error(prog, e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
