"""Train the planner's goal scorer on the simulator's own roll-outs, labelled by the synthetic world.

    mmsim scorer train --data PROC --simulator examples/demo_checkpoint --proposer examples/demo_proposer \\
        --out runs/scorer
    mmsim plan --simulator examples/demo_checkpoint --proposer examples/demo_proposer PROC \\
        --scorer learned --scorer-weights runs/scorer/final

The planner asks one question of each simulated roll-out: does its end frame show the goal's task outcome? This
command builds a model for that question (:class:`~mmsim_core.policies.goal_scorer.OutcomeGoalScorer`) from
the train split of synthetic recordings:

1. **Collect.** For ``--clips`` train clips (``--eventful-share`` of them chosen among clips whose recorded
   actions change the task state, screened by the oracle; the rest among clips where nothing changes), the
   proposer samples ``--samples`` trajectories from the clip's context, history, phrase and last frame, as the
   planner does; the simulator renders each, and the recorded actions too; the oracle executes each proposal
   from the clip's first state. A pair is (start frame, simulated end frame, goal frame) with the label "the
   oracle's outcome equals the recorded actions' outcome" (the recorded actions' own roll-out is a positive).
   Each clip's pairs are written to ``OUT/pairs/clip_<index>.npz`` as soon as they exist, so a stopped run
   continues where it stopped, and a larger ``--clips`` over the same folder adds clips to those collected
   (the same data, simulator, proposer, samples and seed; another of these is refused).
2. **Train.** Binary cross-entropy, positives weighted by the negative/positive ratio, on the clips not held
   out; ``--val-share`` of the clips are held out whole.
3. **Report.** On the held-out clips: ROC AUC, accuracy at 0.5, and the *pick rate*: over clips where some but
   not all proposals reach the goal, how often the highest-scored proposal is one that does (chance: the share
   that does). ``OUT/final`` holds the scorer (``config.json`` + weights) and ``scorer_training.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmsim_core import schema
from mmsim_core.errors import MMSimError, UsageError

from mmsim.training.command_line import report_error, start, subcommand_parser

logger = logging.getLogger("mmsim.scorer")

TRAINING_FILE = "scorer_training.json"
TRAINING_FORMAT = "mmsim-scorer-training-v1"
ROLLOUT_KEYS = ("data", "simulator", "proposer", "samples", "eventful_share", "seed")
"""What the collected roll-outs depend on: a run folder is reused only with the same values."""
WIDTHS: dict[str, dict] = {
    "tiny": dict(frame_widths=(8, 16, 16, 16), feature_dim=16, hidden_dim=16),
    "base": {},  # OutcomeGoalScorer's defaults
}


@dataclass
class ScorerTrainConfig:
    data: str
    simulator: str
    proposer: str
    out: str
    clips: int = 400
    samples: int = 8
    eventful_share: float = 0.75
    """Share of the collected clips whose recorded actions change the task state (the rest: clips where nothing
    changes). On most clips nothing does; without this the scorer would mostly learn that doing nothing works."""
    val_share: float = 0.15
    max_steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    width: str = "base"
    seed: int = 0

    def check(self) -> "ScorerTrainConfig":
        for flag, path in (("--data", self.data), ("--simulator", self.simulator), ("--proposer", self.proposer)):
            if not Path(path).exists():
                raise UsageError(f"{flag} {path} does not exist")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise UsageError(f"--out {self.out} is a file; give a folder (it is created if missing)")
        for flag, value in (("--clips", self.clips), ("--samples", self.samples), ("--max-steps", self.max_steps),
                            ("--batch-size", self.batch_size)):
            if value < 1:
                raise UsageError(f"{flag} must be >= 1, got {value}")
        if self.clips < 2:
            raise UsageError(f"--clips must be >= 2 (some are held out for validation), got {self.clips}")
        for flag, value in (("--eventful-share", self.eventful_share), ("--val-share", self.val_share)):
            if not (0.0 <= value <= 1.0):
                raise UsageError(f"{flag} must be in [0, 1], got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.width not in WIDTHS:
            raise UsageError(f"--width must be one of {list(WIDTHS)}, got {self.width!r}")
        return self


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------
# 1. Collect (start, simulated end, goal, label) from the simulator's roll-outs of proposals
# ----------------------------------------------------------------------------------------------
def choose_clips(ds, oracle_for, clips: int, eventful_share: float, seed: int) -> tuple[list[int], list[bool]]:
    """``clips`` train clips with all four modalities, ``eventful_share`` of them eventful; with their flags."""
    from mmsim_core.synth.outcome import rollout

    usable = [i for i in range(len(ds))
              if set(schema.MODALITY_NAMES) <= set(ds.clip_meta(i).get("modalities", schema.MODALITY_NAMES))]
    rng = np.random.default_rng(seed)
    order = rng.permutation(usable).tolist()
    want_ev = int(round(clips * eventful_share))
    eventful, calm = [], []
    for i in tqdm(order, desc="screening clips", disable=not sys.stderr.isatty()):
        if len(eventful) >= want_ev and len(calm) >= clips - want_ev:
            break
        item = ds[i]
        meta = item["meta"]
        raw = {n: schema.denormalize(n, item["actions"][n], ds.stats) for n in schema.MODALITY_NAMES}
        ev = rollout(oracle_for(meta["source"]), meta["video_frame_indices"], raw, render=False).eventful
        (eventful if ev else calm).append(i)
    chosen = eventful[:want_ev] + calm[:clips - want_ev]
    if len(chosen) < clips:  # too few of one kind: fill with the other
        rest = eventful[want_ev:] + calm[clips - want_ev:]
        chosen += rest[:clips - len(chosen)]
    ev_set = set(eventful)
    flags = [i in ev_set for i in chosen]
    return chosen, flags


def collect(cfg: ScorerTrainConfig) -> Path:
    """Write ``OUT/pairs/clip_<index>.npz`` for every chosen clip not yet collected; returns the folder."""
    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.policies.proposer import ActionProposalPipeline
    from mmsim_core.synth import OracleCache
    from mmsim_core.synth.outcome import goal_reached, rollout
    from mmsim.training.evaluate import open_dataset

    ds = open_dataset(cfg.data, "train", schema.MODALITY_NAMES, observational_only=True)
    if len(ds) == 0:
        raise MMSimError(f"the train split of {cfg.data} has no observational clips")
    oracle_for = OracleCache("mmsim scorer train")

    folder = Path(cfg.out) / "pairs"
    folder.mkdir(parents=True, exist_ok=True)
    chosen, flags = choose_clips(ds, oracle_for, cfg.clips, cfg.eventful_share, cfg.seed)
    todo = [(i, ev) for i, ev in zip(chosen, flags) if not (folder / f"clip_{i}.npz").is_file()]
    logger.info("%d clips (%d eventful), %d to collect", len(chosen), sum(flags), len(todo))
    if not todo:
        return folder
    sim = MultisensoryVideoPipeline.from_pretrained(cfg.simulator)
    prop = ActionProposalPipeline.from_pretrained(cfg.proposer)
    for p in (sim, prop):
        p.set_progress_bar_config(disable=True)
    h, K, stats = ds.context_frames, cfg.samples, ds.stats

    def raw(acts: dict) -> dict:
        return {n: schema.denormalize(n, acts[n], stats) for n in schema.MODALITY_NAMES}

    for index, eventful in tqdm(todo, desc="collecting roll-outs", disable=not sys.stderr.isatty()):
        item = ds[index]
        meta = item["meta"]
        context, goal_frame, phrase = item["context"], item["future"][-1], item["text"]["phrase"]  # (h, H, W, 3)
        history = {n: item["actions"][n][:h] for n in schema.MODALITY_NAMES}
        oracle = oracle_for(meta["source"])
        expert = rollout(oracle, meta["video_frame_indices"], raw(item["actions"]), render=False)
        # Proposals {n: (K, h+F, *shape)}, as the planner draws them, then the recorded actions as sample K.
        acts = prop(context=context[None], history={n: v[None] for n, v in history.items()}, text=[phrase],
                    goal=goal_frame[None], num_samples=K,
                    generator=torch.Generator().manual_seed(_seed(cfg.seed, index))).actions
        acts = {n: np.concatenate([v[0], item["actions"][n][None]], axis=0) for n, v in acts.items()}
        sim_text = [item["text"][sim.text_kind]] * (K + 1) if sim.text_kind else None
        frames = sim(context=np.repeat(context[None], K + 1, axis=0), actions=acts, text=sim_text,
                     generator=torch.Generator().manual_seed(_seed(cfg.seed, index, 1))).frames  # (K+1, F, H, W, 3)
        labels = [goal_reached(rollout(oracle, meta["video_frame_indices"], raw({n: acts[n][k] for n in acts}),
                                       render=False).outcome, expert.outcome) for k in range(K)] + [True]
        np.savez_compressed(folder / f"clip_{index}.npz", start=context[-1], goal=goal_frame, end=frames[:, -1],
                            label=np.asarray(labels, dtype=bool), eventful=bool(eventful))
    return folder


def load_pairs(folder: Path, indices: list[int] | None = None) -> list[dict]:
    """The collected clips, each {index, start (H, W, 3), goal, end (K+1, H, W, 3), label (K+1,), eventful}."""
    files = sorted(folder.glob("clip_*.npz"), key=lambda p: int(p.stem.split("_")[1]))
    out = []
    for f in files:
        index = int(f.stem.split("_")[1])
        if indices is not None and index not in indices:
            continue
        with np.load(f) as z:
            out.append({"index": index, **{k: z[k] for k in z.files}})
    return out


# ----------------------------------------------------------------------------------------------
# 2. Train, 3. report
# ----------------------------------------------------------------------------------------------
def _flatten(clips: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pair: start, end, goal uint8 (N, H, W, 3), label (N,), clip position (N,)."""
    starts, ends, goals, labels, group = [], [], [], [], []
    for g, c in enumerate(clips):
        n = len(c["label"])
        starts.append(np.repeat(c["start"][None], n, 0))
        goals.append(np.repeat(c["goal"][None], n, 0))
        ends.append(c["end"])
        labels.append(c["label"])
        group.append(np.full(n, g))
    return (np.concatenate(starts), np.concatenate(ends), np.concatenate(goals), np.concatenate(labels).astype(bool),
            np.concatenate(group))


@torch.no_grad()
def predict(model, start: np.ndarray, end: np.ndarray, goal: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities (N,) for uint8 frame triples (N, H, W, 3)."""
    from mmsim_core.policies.common import frames_to_unit

    model.eval()
    out = []
    for s in range(0, len(end), batch_size):
        sl = slice(s, s + batch_size)
        logits = model(frames_to_unit(start[sl]), frames_to_unit(end[sl]), frames_to_unit(goal[sl]))
        out.append(torch.sigmoid(logits).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def validation_metrics(clips: list[dict], probs_per_clip: list[np.ndarray]) -> dict:
    """AUC and accuracy over every pair, pick rate and its chance level over the clips with mixed proposals."""
    from torchmetrics.functional.classification import binary_auroc

    labels = np.concatenate([c["label"] for c in clips]).astype(bool)
    probs = np.concatenate(probs_per_clip)
    auc = (float(binary_auroc(torch.as_tensor(probs), torch.as_tensor(labels).long()))
           if 0 < labels.sum() < len(labels) else None)
    picks, chance = [], []
    for c, p in zip(clips, probs_per_clip):
        lab = c["label"][:-1]  # the proposals only: the planner never sees the recorded actions
        if lab.any() and not lab.all():
            picks.append(bool(lab[int(np.argmax(p[:-1]))]))
            chance.append(float(lab.mean()))
    return {"pairs": int(len(labels)), "positives": int(labels.sum()), "auc": auc,
            "accuracy": float(np.mean((probs > 0.5) == labels)) if len(labels) else None,
            "mixed_clips": len(picks), "pick_rate": float(np.mean(picks)) if picks else None,
            "pick_rate_chance": float(np.mean(chance)) if chance else None}


def train(cfg: ScorerTrainConfig, progress: bool = True) -> Path:
    """Collect (or reuse) the pairs, train, write ``OUT/final``; returns it."""
    from diffusers.optimization import get_scheduler

    from mmsim_core.policies.common import frames_to_unit
    from mmsim_core.policies.goal_scorer import OutcomeGoalScorer

    cfg.check()
    out = Path(cfg.out)
    saved = out / "config.json"
    if saved.is_file():  # collected roll-outs are reused: only if they are roll-outs of the same thing
        old = json.loads(saved.read_text())
        changed = [k for k in ROLLOUT_KEYS if old.get(k) != asdict(cfg)[k]]
        if changed:
            raise UsageError(f"--out {out} holds roll-outs collected with another "
                             f"{', '.join('--' + k.replace('_', '-') for k in changed)}; choose another --out (more "
                             f"--clips or --max-steps may extend a run)")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    t0 = time.perf_counter()
    folder = collect(cfg)
    t_collect = time.perf_counter() - t0
    clips = load_pairs(folder)
    if len(clips) < 2:
        raise MMSimError(f"only {len(clips)} clip(s) collected in {folder}; use a larger --clips")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(clips))
    n_val = min(max(1, int(round(cfg.val_share * len(clips)))), len(clips) - 1) if cfg.val_share > 0 else 0
    val = [clips[i] for i in sorted(order[:n_val])]
    tr = [clips[i] for i in sorted(order[n_val:])]
    start, end, goal, label, _ = _flatten(tr)  # (N, H, W, 3) x3, (N,)
    n_pos = int(label.sum())
    if n_pos == 0 or n_pos == len(label):
        raise MMSimError(f"the collected roll-outs are all {'positive' if n_pos else 'negative'}; the scorer needs "
                         "both (use more --clips or --samples)")
    pos_weight = torch.tensor((len(label) - n_pos) / n_pos)

    torch.manual_seed(cfg.seed)
    model = OutcomeGoalScorer(**WIDTHS[cfg.width])
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = get_scheduler("cosine", optimizer, num_warmup_steps=min(50, cfg.max_steps // 10),
                             num_training_steps=cfg.max_steps)
    logger.info("scorer: %.2fM parameters, %d train pairs (%d positive) from %d clips, %d validation clips",
                sum(p.numel() for p in model.parameters()) / 1e6, len(label), n_pos, len(tr), len(val))
    log_path = out / "log.jsonl"
    with open(log_path, "w") as log:
        for step in tqdm(range(1, cfg.max_steps + 1), desc="scorer", disable=not progress, dynamic_ncols=True):
            model.train()
            idx = rng.integers(0, len(label), size=cfg.batch_size)
            logits = model(frames_to_unit(start[idx]), frames_to_unit(end[idx]), frames_to_unit(goal[idx]))  # (B,)
            target = torch.as_tensor(label[idx], dtype=torch.float32)
            loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if step % 50 == 0 or step == cfg.max_steps:
                log.write(json.dumps({"step": step, "loss": loss.item(), "lr": schedule.get_last_lr()[0]}) + "\n")
                log.flush()

    report = {"format": TRAINING_FORMAT, "data": cfg.data, "simulator": cfg.simulator, "proposer": cfg.proposer,
              "clips": len(clips), "eventful_clips": int(sum(bool(c["eventful"]) for c in clips)),
              "samples": cfg.samples, "train_clips": len(tr), "val_clips": len(val), "train_pairs": int(len(label)),
              "train_positives": n_pos, "steps": cfg.max_steps, "seconds_collect": round(t_collect, 1),
              "seconds_total": None, "validation": None}
    if val:
        probs = [predict(model, np.repeat(c["start"][None], len(c["end"]), 0), c["end"],
                         np.repeat(c["goal"][None], len(c["end"]), 0)) for c in val]
        report["validation"] = validation_metrics(val, probs)
    final = out / "final"
    model.save_pretrained(final)
    report["seconds_total"] = round(time.perf_counter() - t0, 1)
    (final / TRAINING_FILE).write_text(json.dumps(report, indent=2) + "\n")
    logger.info("wrote %s", final)
    return final


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p, sub = subcommand_parser("mmsim scorer", __doc__.splitlines()[0])
    t = sub.add_parser("train", help="train the planner's goal scorer on simulated roll-outs labelled by the oracle")
    d = ScorerTrainConfig(data="", simulator="", proposer="", out="")
    t.add_argument("--data", required=True, help="processed clips of synthetic recordings (with their oracles)")
    t.add_argument("--simulator", required=True, metavar="CKPT", help="the simulator pipeline the planner will use")
    t.add_argument("--proposer", required=True, metavar="PROPOSER", help="the action proposer the planner will use")
    t.add_argument("--out", required=True, help="run folder (the scorer in OUT/final)")
    t.add_argument("--clips", type=int, default=d.clips, help=f"train clips to roll out (default {d.clips})")
    t.add_argument("--samples", type=int, default=d.samples, help=f"proposals per clip (default {d.samples})")
    t.add_argument("--eventful-share", type=float, default=d.eventful_share,
                   help=f"share of clips that change the task state (default {d.eventful_share})")
    t.add_argument("--val-share", type=float, default=d.val_share,
                   help=f"share of clips held out for validation (default {d.val_share})")
    t.add_argument("--max-steps", type=int, default=d.max_steps)
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--weight-decay", type=float, default=d.weight_decay)
    t.add_argument("--width", default=d.width, help=f"model size: {' | '.join(WIDTHS)} (default {d.width})")
    t.add_argument("--seed", type=int, default=d.seed)
    return p


def main(argv: list[str] | None = None) -> int:
    argv, prog = start(argv, "mmsim scorer", ("train",))
    try:
        args = build_parser().parse_args(argv)
        names = [f.name for f in dataclasses.fields(ScorerTrainConfig)]
        final = train(ScorerTrainConfig(**{k: getattr(args, k) for k in names}))
    except MMSimError as e:
        return report_error(prog, e)
    v = json.loads((final / TRAINING_FILE).read_text())["validation"] or {}
    fmt = (lambda x: "–" if x is None else f"{x:.3f}")
    print(f"wrote {final}; validation: AUC {fmt(v.get('auc'))}, accuracy {fmt(v.get('accuracy'))}, pick rate "
          f"{fmt(v.get('pick_rate'))} (chance {fmt(v.get('pick_rate_chance'))}, {v.get('mixed_clips', 0)} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
