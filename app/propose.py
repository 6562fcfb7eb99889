"""Propose actions: the action proposer suggests K futures of a clip's actions, the studio puts the chosen one
into the editable trajectories (one edit: Undo takes it back), can rank the K by rendering them with the
simulator against a goal frame, and exports all of them rendered as a paired (actions, video) dataset.

    prop = resolve_proposer(path_or_None, engine)          # (Proposer | None, one-line status)
    pset = propose(session, prop, text="lift the cup", goal=None, num_samples=4, seed=0)
    pick(session, k)                                       # sample k -> the session's trajectories
    scorer = resolve_scorer(path_or_None)                  # (LearnedGoalScorer | None, one-line status)
    rank(session, engine, modalities, text, seed, steps, scorer)   # best first, when a goal frame was given
    zip_path, manifest = export_proposals(session, engine, prop, modalities, text, seed, steps)

The proposer works in its own normalisation (the statistics of the data it was trained on); the studio's clips
are in the simulator's. When the two differ, proposals travel through raw units (cm, EMG envelope, ADC) between
them, and the panel says so. No Gradio here (app.ui wires it), so every step is testable without a server.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from mmsim.app import io as sio
from mmsim.app.clip import Clip
from mmsim.app.edits import EditHistory
from mmsim.app.engine import Engine
from mmsim.app.session import Session, stats_equal
from mmsim_core import schema
from mmsim_core.errors import ActionInputError, MMSimError

logger = logging.getLogger("mmsim.app")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PROPOSER = REPO / "examples" / "demo_proposer"
DEFAULT_SCORER = REPO / "examples" / "demo_scorer"
DEFAULT_SAMPLES = 4
MAX_SAMPLES = 8
FORMAT = "mmsim-proposals-v1"
HOW_TO_TRAIN = ("train one with `mmsim proposer train --data PROC --out RUN`, then start the studio with "
                "`--proposer RUN/final`")
NO_PROPOSER = (f"Proposals need an action proposer folder (examples/demo_proposer/ or `mmsim app --proposer "
               f"FOLDER`), and none is loaded: {HOW_TO_TRAIN}.")


# ----------------------------------------------------------------------------------------------
# The proposer
# ----------------------------------------------------------------------------------------------
def _stats_differ(a: schema.NormalizationStats, b: schema.NormalizationStats, name: str) -> bool:
    """Whether a min-max modality is normalised differently by ``a`` and ``b`` (both must know it)."""
    return schema.MODALITIES[name].normalization == "minmax" and not stats_equal(a, b, [name])


def _convert(actions: Mapping[str, np.ndarray], src, dst, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Re-express ``names`` of ``actions`` from the normalisation ``src`` in ``dst`` (through raw units)."""
    out = dict(actions)
    for m in names:
        out[m] = schema.normalize(m, schema.denormalize(m, actions[m], src), dst)
    return out


class Proposer:
    """An :class:`~mmsim_core.policies.proposer.ActionProposalPipeline` checked against the studio's simulator."""

    def __init__(self, pipe, source: str, engine: Engine):
        self.pipe = pipe
        self.source = str(source)
        self.lock = threading.Lock()  # the sampler's scheduler keeps per-call state
        check_compatible(pipe, engine, self.source)
        self.sim_stats = engine.stats
        self.stats = getattr(pipe, "normalization_stats", None)
        both = self.stats is not None and self.sim_stats is not None
        self.converted = [m for m in schema.MODALITY_NAMES if both and _stats_differ(self.stats, self.sim_stats, m)]
        if self.stats is None:
            self.note = ("the proposer folder has no normalization.json: its actions are read in the simulator's "
                         "normalisation")
        elif self.converted:
            self.note = (f"the proposer was trained with other normalisation statistics than the simulator "
                         f"({', '.join(self.converted)}): its actions are converted through raw units")
        else:
            self.note = ""

    @property
    def history_steps(self) -> int:
        return int(self.pipe.history_steps)

    @property
    def horizon(self) -> int:
        return int(self.pipe.horizon)

    def status(self) -> str:
        """The Propose panel's first line."""
        cfg = self.pipe.proposer.config
        params = sum(p.numel() for p in self.pipe.proposer.parameters())
        where = Path(self.source).resolve()
        shown = where.relative_to(REPO) if where.is_relative_to(REPO) else self.source
        line = (f"**Proposer** `{shown}` · {params / 1e6:.2f} M parameters · sees the last "
                f"{cfg.context_frames} context frame(s) and {self.history_steps} action steps, proposes "
                f"{self.horizon} future steps of all four modalities")
        return line + (f"\n\n⚠️ {self.note}" if self.note else "")

    def check_clip(self, clip: Clip) -> None:
        """One line naming what does not fit (``ActionInputError``)."""
        h, s = self.history_steps, schema.FRAME_SIZE
        if clip.h != h:
            raise ActionInputError(f"this clip has {clip.h} context frames; the proposer takes {h}")
        if clip.num_steps != h + self.horizon:
            raise ActionInputError(f"this clip has {clip.num_steps} action steps; the proposer needs "
                                   f"{h + self.horizon} ({h} history + {self.horizon} future)")
        if tuple(clip.context.shape[1:3]) != (s, s):
            raise ActionInputError(f"this clip's frames are {clip.context.shape[2]}x{clip.context.shape[1]}; "
                                   f"the proposer takes {s}x{s}")
        missing = [m for m in schema.MODALITY_NAMES if m not in clip.actions]
        if missing:
            raise ActionInputError(f"this clip has no {', '.join(missing)}: the proposer needs all four modalities "
                                   f"in the context steps")

    def to_proposer(self, actions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _convert(actions, self.sim_stats, self.stats, self.converted) if self.converted else dict(actions)

    def from_proposer(self, actions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _convert(actions, self.stats, self.sim_stats, self.converted) if self.converted else dict(actions)


def check_compatible(pipe, engine: Engine, source: str) -> None:
    """The proposer and the simulator must agree on the clip's shape (context steps, future steps)."""
    sim = engine.pipe
    h, F = int(pipe.history_steps), int(pipe.horizon)
    sim_h, sim_f = int(getattr(sim, "context_frames", h)), int(getattr(sim, "future_frames", F))
    if (h, F) != (sim_h, sim_f):
        raise MMSimError(f"the proposer {source} works on {h} context + {F} future steps but the simulator "
                         f"{engine.info.source} on {sim_h} + {sim_f}: use a proposer trained on the simulator's clips")


def load_proposer(path: str | Path, engine: Engine) -> Proposer:
    """Load a proposer folder for ``engine``'s simulator; ``MMSimError`` (one line) when it cannot serve."""
    from mmsim_core.policies.proposer import ActionProposalPipeline

    folder = Path(path)
    if not folder.is_dir():
        raise MMSimError(f"proposer folder {path} does not exist; {HOW_TO_TRAIN}")
    try:
        pipe = ActionProposalPipeline.from_pretrained(str(folder))
    except MMSimError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged folder: one line, not a traceback
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MMSimError(f"proposer folder {path}: cannot load it ({first})") from None
    device = getattr(engine.pipe, "device", torch.device("cpu"))
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return Proposer(pipe, str(folder), engine)


def resolve_proposer(path: str | Path | None, engine: Engine) -> tuple[Proposer | None, str]:
    """``(proposer or None, the Propose panel's status line)``. ``path`` None: the bundled demo proposer when
    it exists (a problem with it is said on the panel, the studio still starts). An explicit ``path`` that
    cannot serve raises ``MMSimError`` (like ``--checkpoint``)."""
    if path is None:
        if not DEFAULT_PROPOSER.is_dir():
            return None, NO_PROPOSER
        try:
            prop = load_proposer(DEFAULT_PROPOSER, engine)
        except MMSimError as e:
            logger.warning("demo proposer unavailable: %s", e)
            return None, f"⚠️ The demo proposer cannot be used: {e}. {HOW_TO_TRAIN[0].upper()}{HOW_TO_TRAIN[1:]}."
        return prop, prop.status()
    prop = load_proposer(path, engine)
    return prop, prop.status()


def resolve_scorer(path: str | Path | None):
    """``(scorer or None, a one-line note)``: the learned goal scorer that ranks proposals (``mmsim scorer train``),
    else None and ranking uses the simulator's context-encoder embedding. ``path`` None: the bundled demo scorer
    when it exists (trained on the demo proposer's roll-outs by the demo checkpoint; a problem with it is logged
    and ranking falls back). An explicit ``path`` that cannot load raises ``MMSimError``."""
    from mmsim_core.policies.scorers import LearnedGoalScorer

    if path is None:
        if not DEFAULT_SCORER.is_dir():
            return None, "ranked by the embedding of the simulated end frame against the goal frame's"
        try:
            scorer = LearnedGoalScorer(DEFAULT_SCORER)
        except MMSimError as e:
            logger.warning("demo goal scorer unavailable, ranking by embedding: %s", e)
            return None, "ranked by the embedding of the simulated end frame against the goal frame's"
        path = DEFAULT_SCORER
    else:
        scorer = LearnedGoalScorer(path)
    return scorer, f"ranked by the learned goal scorer ({Path(path).name}): how likely the simulated end frame shows " \
                   f"the goal frame's task outcome"


# ----------------------------------------------------------------------------------------------
# A set of proposals
# ----------------------------------------------------------------------------------------------
@dataclass
class ProposalSet:
    """K proposals for one clip, in the simulator's normalisation."""

    clip: Clip  # the clip they were proposed for (by identity)
    actions: dict  # {name: float32 (K, T, *shape)}; steps 0..h-1 are the clip's own history
    text: str
    goal: np.ndarray | None  # uint8 (S, S, 3)
    seed: int
    proposer: str
    seconds: float
    order: list[int]  # display order: best first once ranked, else proposal order
    scores: list[float] | None = None  # the goal scorer's score of each sample's simulated end frame
    score_settings: dict | None = None  # the render settings the scores were computed with
    picked: int | None = None
    applied: dict | None = None  # the clip's actions right after the last pick (identity: untouched since?)
    renders: dict = field(default_factory=dict)  # (k, modalities, text, seed, steps) -> uint8 (F, S, S, 3)
    note: str = ""  # said under the first line of the report (e.g. why it was not ranked)

    @property
    def num_samples(self) -> int:
        return int(next(iter(self.actions.values())).shape[0])

    def sample(self, k: int) -> dict[str, np.ndarray]:
        return {m: v[k].copy() for m, v in self.actions.items()}

    def label(self, k: int) -> str:
        head = f"sample {k + 1}"
        if self.scores is not None:
            head += f" · score {self.scores[k]:.3f}"
        return head

    def choices(self) -> list[tuple[str, int]]:
        """``(label, index)`` in display order (a Radio's choices)."""
        return [(self.label(k), k) for k in self.order]


def current_set(session: Session) -> ProposalSet:
    """The proposals of the session's clip, or ``ActionInputError`` saying what to do first."""
    clip = session.require_clip()
    pset = session.proposals
    if pset is None or pset.clip is not clip:
        raise ActionInputError("no proposals for this clip yet: press Propose actions first")
    return pset


def read_goal(goal, size: int = schema.FRAME_SIZE) -> np.ndarray | None:
    """A goal frame: an image path (what an image upload gives), or an array (H, W, 3|4) -> uint8 (size, size, 3)."""
    from mmsim_core.video import center_crop_resize

    if goal is None or (isinstance(goal, str) and not goal.strip()):
        return None
    if isinstance(goal, (str, Path)) or isinstance(goal, Mapping):
        path = sio._path(goal)
        if path.suffix.lower() not in sio.IMAGE_EXTS:
            raise ActionInputError(f"goal frame must be an image ({', '.join(sio.IMAGE_EXTS)}), got {path.name}")
        sio.check_size(path)
        return sio.read_image(path, size)
    arr = np.asarray(goal)
    if hasattr(goal, "convert") and arr.ndim == 2:  # a PIL image in a palette or grey mode
        arr = np.asarray(goal.convert("RGB"))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ActionInputError(f"goal frame must be an RGB image (H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
            raise ActionInputError(f"goal frame must hold pixel values, got dtype {arr.dtype}")
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return center_crop_resize(np.ascontiguousarray(arr[..., :3]), size)


def check_samples(num_samples) -> int:
    try:
        k = float(num_samples)
    except (TypeError, ValueError):
        raise ActionInputError(f"samples (K) must be a whole number from 1 to {MAX_SAMPLES}, got {num_samples!r}") from None
    if not k.is_integer() or not 1 <= k <= MAX_SAMPLES:
        raise ActionInputError(f"samples (K) must be a whole number from 1 to {MAX_SAMPLES}, got {num_samples!r}")
    return int(k)


def propose(session: Session, proposer: Proposer | None, text: str | None = "", goal=None,
            num_samples: int = DEFAULT_SAMPLES, seed: int = 0, steps: int | None = None,
            apply: bool = True) -> ProposalSet:
    """Sample K futures of the session clip's actions from its context frames and its (current, possibly edited)
    context-step actions, towards ``text`` and/or a ``goal`` frame; the first one (proposal order) is put into
    the trajectories when ``apply``. Seeded: the same clip, goals, K and seed give the same proposals."""
    if proposer is None:
        raise MMSimError(NO_PROPOSER)
    clip = session.require_clip()
    proposer.check_clip(clip)
    K = check_samples(num_samples)
    goal_frame = read_goal(goal, clip.context.shape[1])
    text = (text or "").strip()
    h = proposer.history_steps
    history = proposer.to_proposer({m: clip.actions[m][:h] for m in schema.MODALITY_NAMES})
    gen = torch.Generator("cpu").manual_seed(int(seed or 0))
    t0 = time.perf_counter()
    with proposer.lock:
        out = proposer.pipe(context=clip.context[None], history={m: v[None] for m, v in history.items()},
                            text=[text] if text else None, goal=goal_frame[None] if goal_frame is not None else None,
                            num_samples=K, num_inference_steps=steps, generator=gen).actions
    acts = proposer.from_proposer({m: v[0] for m, v in out.items()})  # {m: (K, T, *shape)}
    acts = {m: np.ascontiguousarray(v, dtype=np.float32) for m, v in acts.items()}
    for m in acts:  # the history exactly as the clip has it (no trip through another normalisation)
        acts[m][:, :h] = clip.actions[m][:h]
    old = session.proposals if (session.proposals is not None and session.proposals.clip is clip) else None
    pset = ProposalSet(clip=clip, actions=acts, text=text, goal=goal_frame, seed=int(seed or 0),
                       proposer=proposer.source, seconds=time.perf_counter() - t0, order=list(range(K)),
                       applied=old.applied if old is not None else None)
    session.proposals = pset
    if apply:
        pick(session, 0)
    return pset


def pick(session: Session, k) -> ProposalSet:
    """Put sample ``k`` (0-based) into the clip's trajectories, through the edit history as ONE edit. When the
    trajectories still hold the previous pick untouched, that pick is replaced (undone first), so one Undo
    always returns to the actions from before the proposals."""
    pset = current_set(session)
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise ActionInputError(f"use sample: pick one of samples 1 to {pset.num_samples}, got {k!r}") from None
    if not 0 <= k < pset.num_samples:
        raise ActionInputError(f"use sample: pick one of samples 1 to {pset.num_samples}, got {k + 1}")
    edits = session.clip.edits
    if pset.applied is not None and edits.current is pset.applied and edits.can_undo:
        edits.undo()
    session.edit_many([{"op": "copy", "modality": m, "source": pset.actions[m][k], "proposal": k + 1}
                       for m in schema.MODALITY_NAMES])
    pset.picked = k
    pset.applied = edits.current
    return pset


# ----------------------------------------------------------------------------------------------
# Rendering, ranking, describing
# ----------------------------------------------------------------------------------------------
def sample_clip(clip: Clip, pset: ProposalSet, k: int) -> Clip:
    """A copy of ``clip`` whose current actions are sample ``k`` (its original actions kept)."""
    return Clip(context=clip.context, future=clip.future,
                edits=EditHistory(clip.original_actions, current=pset.sample(k)), text=dict(clip.text),
                meta=dict(clip.meta), annotations=list(clip.annotations), label=f"{clip.label} · sample {k + 1}")


def render_samples(pset: ProposalSet, engine: Engine, modalities: Sequence[str], text: str | None = None,
                   seed: int = 0, steps: int | None = None, samples: Sequence[int] | None = None,
                   on_sample: Callable[[int, int], None] | None = None) -> dict[int, np.ndarray]:
    """``{k: uint8 (F, S, S, 3)}``: each sample's future rendered by the simulator (same noise draw for all, as
    Generate with this seed), cached on the set. ``on_sample(done, total)`` after each."""
    steps = int(steps or engine.default_steps)
    ks = list(range(pset.num_samples)) if samples is None else [int(k) for k in samples]
    out = {}
    for i, k in enumerate(ks):
        key = (k, tuple(modalities), text or "", int(seed or 0), steps)
        if key not in pset.renders:
            pset.renders[key] = engine.render(sample_clip(pset.clip, pset, k), modalities, text, int(seed or 0),
                                              steps)["frames"]
        out[k] = pset.renders[key]
        if on_sample is not None:
            on_sample(i + 1, len(ks))
    return out


def rank(session: Session, engine: Engine, modalities: Sequence[str], text: str | None = None, seed: int = 0,
         steps: int | None = None, scorer=None,
         on_sample: Callable[[int, int], None] | None = None) -> ProposalSet:
    """Render every sample and order them by the goal scorer's score of the simulated end frame: ``scorer`` (a
    :class:`~mmsim_core.policies.scorers.LearnedGoalScorer`: the probability that the end frame shows the goal
    frame's task outcome, given the clip's last context frame), or without one the similarity to the goal frame
    in the simulator's own context-encoder embedding (:class:`~mmsim_core.policies.scorers.FrameEmbeddingScorer`)."""
    from mmsim_core.policies.scorers import FrameEmbeddingScorer

    pset = current_set(session)
    if pset.goal is None:
        raise ActionInputError("ranking needs a goal frame: upload one (the samples keep their proposal order)")
    frames = render_samples(pset, engine, modalities, text, seed, steps, on_sample=on_sample)
    ends = np.stack([frames[k][-1] for k in range(pset.num_samples)])
    if scorer is not None:
        scores = scorer.score(ends, pset.goal, start=pset.clip.context[-1])
    else:
        with engine.lock:
            scores = FrameEmbeddingScorer(engine.pipe).score(ends, pset.goal)
    pset.scores = [float(x) for x in scores]
    pset.score_settings = {"modalities": list(modalities), "text": text or "", "seed": int(seed or 0),
                           "steps": int(steps or engine.default_steps),
                           "scorer": "learned" if scorer is not None else "embedding"}
    pset.order = [int(k) for k in np.argsort(-scores, kind="stable")]
    return pset


def ranked_grid(pset: ProposalSet) -> np.ndarray | None:
    """Rows = samples in display order (last context frame, then the simulated future), when rendered."""
    from mmsim.app.plots import sweep_grid

    if pset.score_settings is None:
        return None
    st = pset.score_settings
    rows = [pset.renders.get((k, tuple(st["modalities"]), st["text"], st["seed"], st["steps"])) for k in pset.order]
    if any(r is None for r in rows):
        return None
    labels = [f"sample {k + 1}  {pset.scores[k]:.3f}" if pset.scores else f"sample {k + 1}" for k in pset.order]
    return sweep_grid(np.stack(rows), labels, pset.clip.context[-1])  # (cv2 draws ASCII only)


def report(pset: ProposalSet) -> str:
    """One line per sample (display order): grip force and EMG over the future, and how far it is from the
    recorded actions; the chosen one in bold."""
    clip, h = pset.clip, pset.clip.h
    goal = " and ".join(x for x in ((f"text {pset.text!r}" if pset.text else ""),
                                     ("a goal frame" if pset.goal is not None else "")) if x) or "no goal"
    lines = [f"{pset.num_samples} proposal(s) towards {goal} in {pset.seconds:.2f} s (seed {pset.seed})"
             + ("" if pset.scores is None else ", ranked by the learned goal scorer on the simulator's end frames"
                if (pset.score_settings or {}).get("scorer") == "learned"
                else ", ranked by the simulator's end frame against the goal frame (embedding)")
             + ". Pick one below; then edit it or press **Generate** (G). Undo returns to the actions before."]
    if pset.note:
        lines.append(pset.note)
    for k in pset.order:
        f = pset.actions["hand_force"][k, h:]  # (F, 2, 32, 32)
        e = pset.actions["emg"][k, h:]  # (F, 2, 8)
        d = np.mean([np.abs(pset.actions[m][k, h:] - clip.original_actions[m][h:]).mean()
                     for m in schema.MODALITY_NAMES if m in clip.original_actions])
        line = (f"{pset.label(k)} · grip force L {f[:, 0].mean():.2f} R {f[:, 1].mean():.2f} · EMG L "
                f"{e[:, 0].mean():.2f} R {e[:, 1].mean():.2f} · {d:.3f} from the recorded actions (mean |Δ|)")
        lines.append(f"- **{line}** (in use)" if k == pset.picked else f"- {line}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Paired export
# ----------------------------------------------------------------------------------------------
def export_proposals(session: Session, engine: Engine, proposer: Proposer | None, modalities: Sequence[str],
                     text: str | None = None, seed: int = 0, steps: int | None = None,
                     on_sample: Callable[[int, int], None] | None = None) -> tuple[str, dict]:
    """Render every proposal of the current set with the simulator and write a zip of the pairs:
    ``sample_XX/actions.h5`` (the studio's clip export: the actions with the context + rendered frames),
    ``sample_XX/actions.csv``, ``sample_XX/video.mp4`` (context then rendered future, 4x), ``goal.png`` when a
    goal frame was given, ``normalization.json`` and ``manifest.json``. Returns ``(zip path, manifest)``."""
    from mmsim_core.evaluation.video import upscale
    from mmsim_core.video import write_video

    clip = session.require_clip()
    pset = current_set(session)
    steps = int(steps or engine.default_steps)
    seed = int(seed or 0)
    mods = [m for m in schema.check_modality_names(modalities) if m in engine.modalities]
    frames = render_samples(pset, engine, mods, text, seed, steps, on_sample=on_sample)
    name = f"proposals_{sio.safe_name(clip.label)}"
    folder = session.dir() / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    generator = engine.info.source
    rank_of = {k: r + 1 for r, k in enumerate(pset.order)} if pset.scores is not None else {}
    samples = []
    for k in range(pset.num_samples):
        sub = f"sample_{k + 1:02d}"
        (folder / sub).mkdir()
        one = sample_clip(clip, pset, k)
        info = {"proposal": {"sample": k + 1, "index": k, "text_goal": pset.text, "seed": pset.seed,
                             "proposer": pset.proposer}, "render_seed": seed, "steps": steps}
        sio.export_clip(one, folder / sub / "actions.h5", frames[k], prefer="prediction", generator=generator,
                        extra=info)
        sio.write_csv(folder / sub / "actions.csv", one.actions)
        write_video(folder / sub / "video.mp4", upscale(np.concatenate([clip.context, frames[k]]), 4), fps=4.0)
        samples.append({"sample": k + 1, "index": k, "actions": f"{sub}/actions.h5", "actions_csv": f"{sub}/actions.csv",
                        "video": f"{sub}/video.mp4", "picked": k == pset.picked,
                        "rank": rank_of.get(k), "score": pset.scores[k] if pset.scores is not None else None})
    goal_file = None
    if pset.goal is not None:
        import cv2

        cv2.imwrite(str(folder / "goal.png"), cv2.cvtColor(pset.goal, cv2.COLOR_RGB2BGR))
        goal_file = "goal.png"
    stats = engine.stats
    if stats is not None:
        stats.save(folder / "normalization.json")
    meta = clip.meta
    manifest = {
        "format": FORMAT,
        "clip": {"index": clip.__dict__.get("gallery_index"), "label": clip.label, "split": meta.get("split"),
                 "subject": meta.get("subject"), "activity": meta.get("activity"),
                 "source": Path(str(meta["source"])).name if meta.get("source") else None,
                 "video_frame_indices": meta.get("video_frame_indices")},
        "text_goal": pset.text, "goal_frame": goal_file,
        "seed": pset.seed, "render_seed": seed, "steps": steps, "modalities": mods, "text_prompt": text or "",
        "proposer": pset.proposer, "simulator": generator, "simulator_trained": bool(engine.info.trained),
        "num_samples": pset.num_samples, "samples": samples,
        "normalization": "normalization.json" if stats is not None else None, "units": sio.UNITS_NOTE,
        "read_with": "mmsim.app.io.read_trajectories('sample_01/actions.h5') (or the .csv)",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    zpath = shutil.make_archive(str(folder), "zip", folder)
    return zpath, manifest


__all__ = ["DEFAULT_PROPOSER", "NO_PROPOSER", "Proposer", "ProposalSet", "load_proposer", "resolve_proposer",
           "propose", "pick", "rank", "render_samples", "report", "ranked_grid", "export_proposals", "read_goal"]
