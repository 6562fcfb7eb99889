"""Plan with the simulator: propose action trajectories, roll them out, execute the best, let the oracle judge.

    mmsim plan --simulator runs/ours/final --proposer runs/proposer/final data/processed --clips 24
    mmsim plan --simulator examples/demo_checkpoint --proposer runs/proposer/final PROC --samples 16 --subgoals 3

For each held-out clip of a synthetic recording:

1. the proposer (:class:`~mmsim_core.policies.proposer.ActionProposalPipeline`) samples K action trajectories
   from the clip's context frames, its h known action steps and the goal (``--goal``: the clip's phrase, its true
   last future frame, or both);
2. the simulator rolls each out (one batched call of :class:`MultisensoryVideoPipeline`);
3. a scorer (:mod:`mmsim_core.policies.scorers`) rates each simulated end frame against the goal, and the best is
   "executed": run through the recording's oracle from the clip's first state.

The oracle says what truly happens (:mod:`mmsim_core.synth.outcome`): the goal is the outcome of the recorded
(expert) actions, and a trajectory succeeds when its outcome equals it. Three choices are scored per clip:

* ``first``: the first proposal alone (no simulator: what the proposer gives by itself);
* ``simulator``: best-of-K by the simulator and the scorer (the planner);
* ``oracle``: best-of-K by the oracle itself (all K executed; one reaching the goal, else the highest label
  agreement, ties to the closest end frame): the ceiling any scorer could reach with these proposals.

Each with the success rate over all clips and over *eventful* clips (the expert's outcome differs from the
clip's start: doing nothing does not reach it), the mean label agreement and the MSE of the oracle's end frame
to the goal frame. ``--subgoals S`` chains S consecutive clips of one recording: the next clip's last frame and
outcome are the next goal, the planner continues from what the oracle executed (its last h frames as context,
the executed actions' last h steps as history, the world state at the next clip's first frame), and
``chain_success`` counts episodes whose every subgoal the planner reached.

Goals and scorers: the embedding scorer compares frames, so it needs the goal frame (``--goal frame|both``); so
does the learned scorer (``--scorer learned --scorer-weights RUN/final``, trained by ``mmsim scorer train`` on
the simulator's roll-outs labelled by the oracle), which also reads the start frame;
the VLM scorer reads the goal phrase (``--goal text|both``) and needs local weights (``--vlm-weights``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mmsim_core import schema
from mmsim_core.errors import MMSimError, UsageError

from mmsim.training.command_line import ArgumentParser, report_error, start

logger = logging.getLogger("mmsim.plan")

REPORT_FORMAT = "mmsim-plan-v1"
METHODS = ("first", "simulator", "oracle")
GOALS = ("text", "frame", "both")


@dataclass
class PlanConfig:
    simulator: str
    proposer: str
    data: str
    split: str = "test"
    clips: int | None = 8
    samples: int = 8
    subgoals: int = 1
    scorer: str = "embedding"
    goal: str = "both"
    seed: int = 0
    steps: int | None = None
    """Proposer sampler steps (default: the proposer's)."""
    eta: float = 0.0
    """The proposer's DDIM stochasticity (0 deterministic given the initial noise .. 1 fresh noise every step)."""
    sim_steps: int | None = None
    """Simulator sampler steps (default: the checkpoint's)."""
    vlm_weights: str | None = None
    proposer_goal: str | None = None
    """What the proposer is told: ``text``, ``frame`` or ``both`` (default: ``goal``). ``text`` with a frame
    scorer is the set-up of planning with a language goal: proposals from the phrase alone, the goal frame used only
    to judge the roll-outs."""
    scorer_weights: str | None = None
    """The trained scorer folder for ``scorer="learned"`` (``mmsim scorer train`` writes RUN/final)."""
    eventful_only: bool = False
    """Plan only on episodes whose first clip changes the task state under the expert's actions (the oracle
    screens the split): on most clips nothing changes, and every choice then succeeds."""
    out: str = "plan.json"

    def check(self) -> "PlanConfig":
        for name in ("samples", "subgoals") + (("clips",) if self.clips is not None else ()):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not (0.0 <= self.eta <= 1.0):
            raise UsageError(f"--eta must be in [0, 1], got {self.eta}")
        for name, flag in (("steps", "--steps"), ("sim_steps", "--sim-steps")):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"{flag} must be >= 1, got {getattr(self, name)}")
        if self.scorer in ("embedding", "learned") and self.goal == "text":
            raise UsageError(f"--scorer {self.scorer} compares end frames with a goal frame: use --goal frame or "
                             "--goal both, or --scorer vlm (with --vlm-weights) for a text-only goal")
        if self.proposer_goal is not None:
            if self.proposer_goal not in GOALS:
                raise UsageError(f"--proposer-goal must be one of {list(GOALS)}, got {self.proposer_goal!r}")
            told = {"text": {"text"}, "frame": {"frame"}, "both": {"text", "frame"}}
            if not told[self.proposer_goal] <= told[self.goal]:
                raise UsageError(f"--proposer-goal {self.proposer_goal} tells the proposer more than the planner is "
                                 f"given (--goal {self.goal})")
        if self.scorer == "learned" and not self.scorer_weights:
            raise UsageError("--scorer learned needs --scorer-weights (a folder `mmsim scorer train` writes: RUN/final)")
        if self.scorer_weights and not Path(self.scorer_weights).is_dir():
            raise UsageError(f"--scorer-weights {self.scorer_weights} is not a folder")
        if self.scorer == "vlm" and self.goal == "frame":
            raise UsageError("--scorer vlm reads the goal phrase: use --goal text or --goal both, or --scorer "
                             "embedding for a frame-only goal")
        return self


# ----------------------------------------------------------------------------------------------
# Episodes: chains of consecutive clips of one recording
# ----------------------------------------------------------------------------------------------
def episodes(ds, subgoals: int, clips: int | None) -> list[list[int]]:
    """Chains of ``subgoals`` clip indices, each clip's context the previous clip's last h frames (same
    recording), of clips with all four modalities (the proposer and the oracle need them); ``clips`` chains
    spread evenly over the split."""
    from mmsim.training.evaluate import pick_indices

    h = ds.context_frames
    by_start: dict[tuple[str, int], int] = {}
    usable = []
    for i in range(len(ds)):
        meta = ds.clip_meta(i)
        if not set(schema.MODALITY_NAMES) <= set(meta.get("modalities", schema.MODALITY_NAMES)):
            continue
        usable.append((i, meta))
        by_start[(meta["source"], int(meta["video_frame_indices"][0]))] = i
    chains = []
    for i, meta in usable:
        chain, m = [i], meta
        while len(chain) < subgoals:
            idx = m["video_frame_indices"]
            nxt = by_start.get((m["source"], int(idx[-h])))
            if nxt is None or list(ds.clip_meta(nxt)["video_frame_indices"][:h]) != list(idx[-h:]):
                break
            chain.append(nxt)
            m = ds.clip_meta(nxt)
        if len(chain) == subgoals:
            chains.append(chain)
    return [chains[j] for j in pick_indices(len(chains), clips)] if chains else []


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _choose_oracle(reached: np.ndarray, agreement: np.ndarray, mse: np.ndarray) -> int:
    """Reaching the goal first, then label agreement, then the closest end frame."""
    return int(np.lexsort((mse, -agreement, -reached.astype(float)))[0])


# ----------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------
def plan(cfg: PlanConfig) -> dict:
    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.policies.proposer import ActionProposalPipeline
    from mmsim_core.policies.scorers import make_scorer
    from mmsim_core.synth import OracleCache
    from mmsim_core.synth.outcome import describe, goal_reached, label_agreement, rollout
    from mmsim.training.evaluate import open_dataset

    cfg.check()
    ds = open_dataset(cfg.data, cfg.split, schema.MODALITY_NAMES, observational_only=True)
    if len(ds) == 0:
        raise MMSimError(f"split {cfg.split!r} of {cfg.data} has no observational clips")
    chains = episodes(ds, cfg.subgoals, None if cfg.eventful_only else cfg.clips)
    if not chains:
        raise MMSimError(f"no {cfg.subgoals} consecutive clips of one recording with all four modalities in "
                         f"{cfg.data} ({cfg.split}); try --subgoals 1")
    sim = MultisensoryVideoPipeline.from_pretrained(cfg.simulator)
    prop = ActionProposalPipeline.from_pretrained(cfg.proposer)
    for p in (sim, prop):
        p.set_progress_bar_config(disable=True)
    if prop.normalization_stats is not None and prop.normalization_stats.to_dict() != ds.stats.to_dict():
        logger.warning("the proposer was trained with other normalisation statistics than %s's: its actions are "
                       "read with the dataset's", cfg.data)
    scorer = make_scorer(cfg.scorer, simulator=sim, vlm_weights=cfg.vlm_weights, weights=cfg.scorer_weights)
    h, K, stats = ds.context_frames, cfg.samples, ds.stats
    use_text = cfg.goal in ("text", "both")
    told = cfg.proposer_goal or cfg.goal
    propose_text, propose_frame = told in ("text", "both"), told in ("frame", "both")
    oracle_for = OracleCache("mmsim plan")

    def raw(acts: dict) -> dict:
        return {n: schema.denormalize(n, acts[n], stats) for n in schema.MODALITY_NAMES}

    if cfg.eventful_only:
        from mmsim.training.evaluate import pick_indices

        def eventful(index: int) -> bool:
            item = ds[index]
            meta = item["meta"]
            return rollout(oracle_for(meta["source"]), meta["video_frame_indices"], raw(item["actions"]),
                           render=False).eventful

        chains = [c for c in tqdm(chains, desc="screening episodes", disable=not sys.stderr.isatty()) if eventful(c[0])]
        if not chains:
            raise MMSimError(f"--eventful-only: no clip of {cfg.data} ({cfg.split}) changes the task state under "
                             f"its recorded actions")
        logger.info("%d episodes start with an eventful clip", len(chains))
        chains = [chains[j] for j in pick_indices(len(chains), cfg.clips)]

    steps_out, chain_out = [], []
    for e, chain in enumerate(chains):
        context = history = state = None  # s = 0: the recorded clip's own
        reached_all = True
        for s, index in enumerate(chain):
            item = ds[index]
            meta = item["meta"]
            oracle = oracle_for(meta["source"])
            idx = meta["video_frame_indices"]
            if s == 0:
                context = item["context"]  # (h, H, W, 3)
                history = {n: item["actions"][n][:h] for n in schema.MODALITY_NAMES}  # {n: (h, *shape)}
            # The goal: what the expert's recorded actions achieve from the recorded start, and its last frame.
            expert = rollout(oracle, idx, raw(item["actions"]), render=False)
            goal_frame, phrase = item["future"][-1], item["text"]["phrase"]

            # 1. Propose K trajectories {n: (K, h+F, *shape)}.
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(_seed(cfg.seed, index, s))
            acts = prop(context=context[None], history={n: v[None] for n, v in history.items()},
                        text=[phrase] if propose_text else None, goal=goal_frame[None] if propose_frame else None,
                        num_samples=K, num_inference_steps=cfg.steps, generator=gen, eta=cfg.eta).actions
            acts = {n: v[0] for n, v in acts.items()}
            t1 = time.perf_counter()

            # 2. Roll each out with the simulator: end frames (K, H, W, 3).
            sim_text = [item["text"][sim.text_kind]] * K if (use_text and sim.text_kind) else None
            frames = sim(context=np.repeat(context[None], K, axis=0), actions=acts, text=sim_text,
                         num_inference_steps=cfg.sim_steps,
                         generator=torch.Generator().manual_seed(_seed(cfg.seed, index, s, 1))).frames
            t2 = time.perf_counter()

            # 3. Score the simulated end frames against the goal; the planner picks the best.
            scores = scorer.score(frames[:, -1], phrase if cfg.scorer == "vlm" else goal_frame,
                                  start=context[-1])  # (K,)
            chosen = int(np.argmax(scores))
            t3 = time.perf_counter()

            # 4. The oracle executes every proposal from the same start (for the ceiling and the first-proposal row).
            runs = [rollout(oracle, idx, raw({n: acts[n][k] for n in acts}), initial_state=state) for k in range(K)]
            t4 = time.perf_counter()
            reached = np.array([goal_reached(r.outcome, expert.outcome) for r in runs])
            agreement = np.array([label_agreement(r.outcome, expert.outcome) for r in runs])
            goal_unit = goal_frame.astype(np.float64) / 255.0
            mse = np.array([np.mean((r.frames[-1].astype(np.float64) / 255.0 - goal_unit) ** 2) for r in runs])
            best = _choose_oracle(reached, agreement, mse)
            picks = {"first": 0, "simulator": chosen, "oracle": best}
            steps_out.append({
                "episode": e, "subgoal": s, "clip": int(index), "source": Path(meta["source"]).name,
                "frames": [int(idx[0]), int(idx[-1])], "phrase": phrase, "eventful": bool(expert.eventful),
                "goal": describe(expert.outcome), "scores": [float(x) for x in scores],
                "reached": reached.tolist(), "agreement": agreement.tolist(), "end_mse": mse.tolist(),
                "methods": {m: {"sample": k, "reached": bool(reached[k]), "agreement": float(agreement[k]),
                                "end_mse": float(mse[k])} for m, k in picks.items()},
                "executed": describe(runs[chosen].outcome),
                "seconds": {"propose": t1 - t0, "simulate": t2 - t1, "score": t3 - t2, "oracle": t4 - t3},
            })  # fmt: skip
            reached_all &= bool(reached[chosen])
            logger.info("episode %d subgoal %d (clip %d, %s%s): first %s, simulator %s, oracle %s", e, s, index,
                        phrase, ", eventful" if expert.eventful else "",
                        *("reached" if reached[k] else f"{agreement[k]:.2f}" for k in picks.values()))

            # 5. Chaining: continue from what the oracle executed. The next clip starts h frames before this one
            #    ends, so its first state is the executed state there, and its history the executed last h steps.
            executed = runs[chosen]
            context = executed.frames[-h:]
            history = {n: acts[n][chosen, -h:] for n in schema.MODALITY_NAMES}
            state = executed.states[-h]
        chain_out.append({"episode": e, "clips": [int(c) for c in chain], "reached_all": bool(reached_all)})

    report = {"format": REPORT_FORMAT, "config": asdict(cfg), "num_episodes": len(chains),
              "num_steps": len(steps_out), "num_eventful": int(sum(s["eventful"] for s in steps_out)),
              "metrics": summarize(steps_out), "steps": steps_out, "episodes": chain_out}
    if cfg.subgoals > 1:
        report["chain_success"] = float(np.mean([c["reached_all"] for c in chain_out]))
    secs = {k: float(np.mean([s["seconds"][k] for s in steps_out])) for k in ("propose", "simulate", "score", "oracle")}
    secs["plan_step"] = secs["propose"] + secs["simulate"] + secs["score"]
    report["seconds_per_step"] = secs
    return report


def summarize(steps: list[dict]) -> dict:
    """Per method: success over all steps and over eventful ones, mean label agreement, mean end-frame MSE."""
    out = {}
    eventful = [s for s in steps if s["eventful"]]
    for m in METHODS:
        rows = [s["methods"][m] for s in steps]
        ev = [s["methods"][m] for s in eventful]
        out[m] = {
            "success": float(np.mean([r["reached"] for r in rows])),
            "success_eventful": float(np.mean([r["reached"] for r in ev])) if ev else None,
            "agreement": float(np.mean([r["agreement"] for r in rows])),
            "agreement_eventful": float(np.mean([r["agreement"] for r in ev])) if ev else None,
            "end_mse": float(np.mean([r["end_mse"] for r in rows])),
        }
    return out


def markdown(report: dict) -> str:
    cfg = report["config"]
    fmt = (lambda v: "–" if v is None else f"{v:.3f}")
    lines = [
        "# Planning with the simulator",
        "",
        f"Simulator `{cfg['simulator']}`, proposer `{cfg['proposer']}`, data `{cfg['data']}` ({cfg['split']}); "
        f"K = {cfg['samples']} proposals, {cfg['subgoals']} subgoal(s), goal: {cfg['goal']}"
        f"{'' if not cfg.get('proposer_goal') else ' (proposer told: ' + cfg['proposer_goal'] + ')'}"
        f"{', proposer eta ' + str(cfg['eta']) if cfg.get('eta') else ''}, "
        f"scorer: {cfg['scorer']}. "
        f"{report['num_steps']} planning steps ({report['num_eventful']} eventful) in {report['num_episodes']} "
        "episodes. Success = the oracle's outcome of the chosen trajectory equals the expert's.",
        "",
        "| choice | success | success (eventful) | label agreement | agreement (eventful) | end-frame MSE |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {"first": "first proposal", "simulator": "best-of-K by simulator + scorer",
             "oracle": "best-of-K by oracle (ceiling)"}
    for m in METHODS:
        r = report["metrics"][m]
        lines.append(f"| {names[m]} | {fmt(r['success'])} | {fmt(r['success_eventful'])} | {fmt(r['agreement'])} | "
                     f"{fmt(r['agreement_eventful'])} | {r['end_mse']:.4f} |")
    if "chain_success" in report:
        lines += ["", f"Chains whose every subgoal the planner reached: {report['chain_success']:.3f}"]
    s = report["seconds_per_step"]
    lines += ["", f"Seconds per planning step: propose {s['propose']:.2f}, simulate {s['simulate']:.2f}, "
                  f"score {s['score']:.2f} (planner {s['plan_step']:.2f}); oracle evaluation {s['oracle']:.2f}.", ""]
    return "\n".join(lines)


def write_report(report: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a .json file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown(report))
    return out, md


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="mmsim plan", description=__doc__.splitlines()[0],
                       usage="mmsim plan --simulator CKPT --proposer PROPOSER DATA [options]")
    p.add_argument("data", metavar="DATA", help="processed clips of synthetic recordings (with their oracles)")
    p.add_argument("--simulator", required=True, metavar="CKPT", help="simulator pipeline folder")
    p.add_argument("--proposer", required=True, metavar="PROPOSER",
                   help="action proposer folder (`mmsim proposer train` writes RUN/final)")
    p.add_argument("--split", default="test", help="split to plan on (default test)")
    p.add_argument("--clips", type=int, default=8, help="episodes, spread evenly over the split (default 8)")
    p.add_argument("--samples", type=int, default=8, help="K proposals per planning step (default 8)")
    p.add_argument("--subgoals", type=int, default=1, help="consecutive clips chained per episode (default 1)")
    p.add_argument("--scorer", choices=["embedding", "learned", "vlm"], default="embedding",
                   help="goal scorer: simulator context-encoder embedding vs a goal frame; a trained outcome "
                        "classifier (--scorer-weights, from `mmsim scorer train`); or a local VLM")
    p.add_argument("--scorer-weights", default=None, metavar="PATH",
                   help="trained goal scorer folder for --scorer learned (RUN/final of `mmsim scorer train`)")
    p.add_argument("--goal", choices=list(GOALS), default="both",
                   help="what the planner is told: the phrase, the last frame, or both (default)")
    p.add_argument("--proposer-goal", choices=list(GOALS), default=None,
                   help="what the proposer is told, if less than --goal: e.g. text (proposals from the phrase; the "
                        "goal frame only judges the roll-outs)")
    p.add_argument("--vlm-weights", default=None, metavar="PATH", help="local VLM folder for --scorer vlm")
    p.add_argument("--steps", type=int, default=None, help="proposer sampler steps (default: the proposer's)")
    p.add_argument("--eta", type=float, default=0.0,
                   help="proposer sampler stochasticity: 0 (default, DDIM) .. 1 (fresh noise every step, more varied "
                        "proposals)")
    p.add_argument("--sim-steps", type=int, default=None, help="simulator sampler steps (default: the checkpoint's)")
    p.add_argument("--eventful-only", action="store_true",
                   help="only episodes whose first clip changes the task state (held, lifted, cut, ...) under the "
                        "expert's actions, screened by the oracle")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="plan.json", help="report JSON (a Markdown table is written beside it)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv, prog = start(argv, "mmsim plan")
    try:
        args = build_parser().parse_args(argv)
        cfg = PlanConfig(simulator=args.simulator, proposer=args.proposer, data=args.data, split=args.split,
                         clips=args.clips, samples=args.samples, subgoals=args.subgoals, scorer=args.scorer,
                         goal=args.goal, proposer_goal=args.proposer_goal, seed=args.seed, steps=args.steps, eta=args.eta,
                         sim_steps=args.sim_steps,
                         vlm_weights=args.vlm_weights, scorer_weights=args.scorer_weights,
                         eventful_only=args.eventful_only, out=args.out)
        if Path(cfg.out).is_dir():
            raise UsageError(f"--out {cfg.out} is a folder; give a .json file name")
        report = plan(cfg)
        json_path, md_path = write_report(report, cfg.out)
    except MMSimError as e:
        return report_error(prog, e)
    m = report["metrics"]
    print(" ".join(f"{k}: success {m[k]['success']:.3f} agreement {m[k]['agreement']:.3f}" for k in METHODS)
          + f" ({report['num_steps']} steps); wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
