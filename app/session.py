"""Per-user studio state and the logic behind every event handler (no Gradio imports here, so it is
testable without a server). Handlers in :mod:`app.ui` translate between these calls and components."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mmsim.app import io as sio
from mmsim.app.clip import Annotation, Clip
from mmsim.app.edits import EditHistory, default_channels, parse_recipe
from mmsim.app.engine import Engine, frame_metrics
from mmsim_core import schema
from mmsim_core.errors import ActionInputError, MMSimError

logger = logging.getLogger("mmsim.app")


@dataclass
class Gallery:
    """The bundled clips (both splits of a processed dataset), held in memory (the demo set is ~10 MB)."""

    root: str | None
    items: list[dict] = field(default_factory=list)
    stats: schema.NormalizationStats | None = None
    note: str = ""  # the manifest's note (says when the clips come from the synthetic world)

    @property
    def synthetic(self) -> bool:
        return "synthetic" in self.note.lower()

    @classmethod
    def load(cls, root: str | Path | None, limit: int = 256) -> "Gallery":
        from mmsim_core.data import ClipDataset

        if root is None or not (Path(root) / "manifest.json").is_file():
            return cls(root=str(root) if root else None)
        items, stats = [], None
        for split in ("test", "train"):
            try:
                ds = ClipDataset(root, split=split)
            except MMSimError:
                continue
            stats = ds.stats
            for i in range(min(len(ds), limit - len(items))):
                items.append(ds[i])
            ds.close()
        try:
            note = str(json.loads((Path(root) / "manifest.json").read_text()).get("note", ""))
        except (OSError, ValueError):
            note = ""
        return cls(root=str(root), items=items, stats=stats, note=note)

    def adopt_stats(self, stats: schema.NormalizationStats | None) -> None:
        """Re-express every clip's actions in ``stats`` (the model's normalisation). The clips come normalised
        with their dataset's statistics; a checkpoint trained on other data normalises differently, and both
        the model's input and the world view (which de-normalises with the model's statistics) need one."""
        if stats is None or self.stats is None or stats_equal(stats, self.stats):
            return
        both = set(stats.minimum) & set(self.stats.minimum)  # fixed-range modalities need nothing
        for it in self.items:
            it["actions"] = {m: schema.normalize(m, schema.denormalize(m, v, self.stats), stats) if m in both else v
                             for m, v in it["actions"].items()}
        self.stats = schema.NormalizationStats(minimum={**self.stats.minimum, **stats.minimum},
                                               maximum={**self.stats.maximum, **stats.maximum})

    def __len__(self) -> int:
        return len(self.items)

    def caption(self, i: int) -> str:
        """``#3 · S02 · Peel a potato · fast, right hand holding`` (what tells clips apart)."""
        it = self.items[i]
        m = it["meta"]
        sentence = str(it.get("text", {}).get("sentence", ""))
        how = sentence.split(" in a ", 1)[-1] if " in a " in sentence else ""
        how = how.replace(" manner", "").replace("while ", "")
        step = int(m.get("frame_step", 1))
        speed = f" · {step}× speed" if step > 1 else ""
        at = m.get("video_frame_indices")
        when = f" · at {at[0] / 30.0:.0f} s" if at else ""
        return (f"#{i} · {m.get('subject', '?')} · {m.get('activity', '') or 'no activity'}{when}{speed}"
                + (f" · {how}" if how else ""))

    def clip(self, i: int) -> Clip:
        i = int(i)
        if not 0 <= i < len(self.items):
            raise ActionInputError(f"clip #{i} does not exist: the gallery has clips #0 to #{len(self.items) - 1}")
        clip = Clip.from_item(self.items[i], label=self.caption(i))
        clip.gallery_index = i
        return clip

    def select(self, spec: str) -> list[int]:
        """Clip numbers from "all", "3", "0-9", "0,2,5-7", "test" or "train"."""
        spec = (spec or "all").strip().lower()
        n = len(self.items)
        if spec == "all":
            return list(range(n))
        if spec in ("test", "train"):
            return [i for i, it in enumerate(self.items) if it["meta"].get("split") == spec]
        out: list[int] = []
        for part in spec.replace(" ", "").split(","):
            try:
                if "-" in part:
                    a, b = (int(x) for x in part.split("-", 1))
                    out.extend(range(a, b + 1))
                elif part:
                    out.append(int(part))
            except ValueError:
                raise ActionInputError(f"clip selection {spec!r}: use 'all', 'test', 'train' or numbers like 0-9,12") from None
        bad = [i for i in out if not 0 <= i < n]
        if bad:
            raise ActionInputError(f"clip selection {spec!r}: no clips {bad[:5]} (the gallery has #0 to #{n - 1})")
        return sorted(set(out))


def stats_equal(a: schema.NormalizationStats, b: schema.NormalizationStats, names=None) -> bool:
    """Whether two normalisations map every modality they share (of ``names``, default all) identically."""
    for m in set(a.minimum) & set(b.minimum) & set(schema.MODALITY_NAMES if names is None else names):
        if not (np.array_equal(a.minimum[m], b.minimum[m]) and np.array_equal(a.maximum[m], b.maximum[m])):
            return False
    return True


@dataclass
class Session:
    """What one browser tab (or API client) is working on."""

    clip: Clip | None = None
    prediction: np.ndarray | None = None
    metrics: dict | None = None
    render_info: dict | None = None
    selection: tuple[int, int] | None = None
    raw: object | None = None  # app.io.RawRecording
    raw_annotations: list[Annotation] = field(default_factory=list)
    cuts: list[Clip] = field(default_factory=list)
    video_path: str | None = None
    workdir: str | None = None

    before: np.ndarray | None = None  # prediction of the unedited actions with the same settings
    world: np.ndarray | None = None  # the world's future under the edited actions (synthetic clips)
    world_before: np.ndarray | None = None  # the world's future under the original actions (after an edit)
    control: dict | None = None  # engine.control_scores of the prediction against the world
    references: dict | None = None
    rendered_recipe: str | None = None  # the edits the prediction was rendered with (JSON)
    proposals: object | None = None  # app.propose.ProposalSet of the current clip (Propose actions)

    def prediction_is_current(self) -> bool:
        """Whether the prediction was rendered with the clip's current edits."""
        return self.prediction is not None and self.clip is not None and \
            self.rendered_recipe == json.dumps(self.clip.edits.recipe)

    def require_clip(self) -> Clip:
        if self.clip is None:
            raise ActionInputError("load a clip first (gallery, upload or raw recording)")
        return self.clip

    def set_clip(self, clip: Clip) -> None:
        self.clip = clip
        self.prediction = None
        self.metrics = None
        self.render_info = None
        self.selection = None
        self.video_path = None
        self.before = None
        self.world = self.world_before = self.control = None
        self.references = None
        self.rendered_recipe = None
        self.proposals = None

    def dir(self) -> Path:
        if self.workdir is None or not Path(self.workdir).is_dir():
            self.workdir = str(sio.tmp_dir())
        return Path(self.workdir)

    # ------------------------------------------------------------------ editing
    def edit(self, op: dict) -> None:
        clip = self.require_clip()
        clip.edits.apply(op)

    def edit_many(self, ops: Sequence[dict]) -> None:
        """Several steps as one edit (one Undo), e.g. a proposal setting every modality."""
        clip = self.require_clip()
        clip.edits.apply_many(ops)

    def range_edit(self, modality: str, channels: Sequence[str] | None, start: int, end: int, op: str,
                   amount: float | None) -> dict:
        step = {"op": op, "modality": modality, "channels": list(channels or default_channels(modality)),
                "start": int(start), "end": int(end)}
        if amount is not None and op not in ("zero",):
            step["amount"] = float(amount)
        self.edit(step)
        return step

    def copy_modality(self, modality: str, source: Clip) -> None:
        clip = self.require_clip()
        if modality not in source.actions:
            raise ActionInputError(f"{source.label} has no {modality} to copy")
        if source.num_steps != clip.num_steps:
            raise ActionInputError(f"{source.label} has {source.num_steps} steps, this clip {clip.num_steps}")
        self.edit({"op": "copy", "modality": modality, "source": source.actions[modality].copy()})

    # ------------------------------------------------------------------ rendering
    def finish_render(self, result: dict) -> None:
        clip = self.require_clip()
        self.prediction = result["frames"]
        self.render_info = {k: v for k, v in result.items() if k != "frames"}
        # PSNR only: SSIM costs more than the render itself on a CPU, so it follows with the comparisons
        # (complete_metrics) instead of delaying the new frames.
        self.metrics = frame_metrics(self.prediction, clip.future, ssim=False) if clip.future is not None else None
        self.rendered_recipe = json.dumps(clip.edits.recipe)
        self.video_path = None  # the MP4 of the previous render no longer applies
        self.before = self.world = self.world_before = self.control = self.references = None

    def complete_metrics(self) -> dict | None:
        """The prediction's per-frame PSNR and SSIM against the recorded future (SSIM computed once)."""
        if self.metrics is not None and "ssim" not in self.metrics:
            self.metrics = frame_metrics(self.prediction, self.require_clip().future)
        return self.metrics

    def write_video(self, fps: float = 4.0) -> str:
        from mmsim_core.evaluation.video import compose_video, upscale
        from mmsim_core.video import write_video

        clip = self.require_clip()
        if self.prediction is None:
            raise ActionInputError("generate a future first")
        if clip.future is not None:
            frames = compose_video(clip.context, clip.future, self.prediction)
        else:  # no ground truth: context then prediction, upscaled
            frames = upscale(np.concatenate([clip.context, self.prediction]), 4)
        # One file per render: two renders with as many edits must not share a name (nor a cached copy).
        self.__dict__["video_count"] = self.__dict__.get("video_count", 0) + 1
        path = self.dir() / (f"{sio.safe_name(clip.label)}_seed{self.render_info['seed']}_v{len(clip.edits.recipe)}"
                             f"_{self.video_count}.mp4")
        write_video(path, frames, fps=fps)
        old = self.__dict__.get("last_video")
        if old and old != str(path):  # the page holds its own copy (Gradio's cache): keep the folder small
            Path(old).unlink(missing_ok=True)
        self.__dict__["last_video"] = self.video_path = str(path)
        return str(path)

    def filmstrip(self) -> np.ndarray | None:
        from mmsim_core.evaluation.video import compose_filmstrip

        clip = self.clip
        if clip is None or self.prediction is None:
            return None
        fut = clip.future if clip.future is not None else self.prediction
        return compose_filmstrip(clip.context, fut, self.prediction)

    def metrics_text(self) -> str:
        if self.render_info is None:
            return ""
        info = self.render_info
        head = (f"Rendered {self.prediction.shape[0]} frames in {info['seconds']:.2f} s "
                f"({info['steps']} steps, seed {info['seed']}, modalities {info['modalities'] or 'none'}"
                f"{', text: ' + repr(info['text']) if info.get('text') else ''}).")
        if self.metrics is None:
            return head + " No ground truth for this clip, so no PSNR/SSIM."
        p = np.mean(self.metrics["psnr"])
        ssim = f", SSIM {np.mean(self.metrics['ssim']):.3f}" if "ssim" in self.metrics else ""
        note = " Against the *recorded* future: edits are not in the recording." if self.clip.edits.is_edited() else ""
        return head + f" PSNR {p:.2f} dB{ssim} (mean over future frames).{note}"

    # ------------------------------------------------------------------ annotations
    def annotate(self, start: float, end: float, activity: str, verb: str, phrase: str, sentence: str,
                 unit: str = "step") -> Annotation:
        if unit not in ("step", "s"):
            raise ActionInputError(f"annotation unit must be 'step' or 's', got {unit!r}")
        if not any(x.strip() for x in (activity, verb, phrase, sentence)):
            raise ActionInputError("give the span an activity label or a verb / phrase / sentence")
        a, b = sorted((float(start), float(end)))
        if unit == "step":
            clip = self.require_clip()
            if not (0 <= a and b <= clip.num_steps - 1):
                raise ActionInputError(f"span [{a:g}, {b:g}] outside the clip's steps 0..{clip.num_steps - 1}")
        elif self.raw is None:
            raise ActionInputError("open a raw recording to annotate it in seconds")
        ann = _fill_text(Annotation(a, b, activity.strip(), verb.strip(), phrase.strip(), sentence.strip(), unit))
        (self.clip.annotations if unit == "step" else self.raw_annotations).append(ann)
        return ann

    def annotation_rows(self) -> list[list]:
        rows = []
        for where, anns in (("clip", self.clip.annotations if self.clip else []), ("recording", self.raw_annotations)):
            for a in anns:
                rows.append([where, a.unit, a.start, a.end, a.activity, a.verb, a.phrase, a.sentence])
        return rows

    # ------------------------------------------------------------------ raw recordings
    def open_raw(self, hdf5_file, video_file) -> str:
        if self.raw is not None:
            try:
                self.raw.close()
            except Exception:  # noqa: BLE001
                pass
        self.raw = sio.RawRecording(hdf5_file, video_file)
        self.raw_annotations = []
        self.cuts = []
        return self.raw.summary()

    def cut(self, start_s: float, stats, frame_step: int = 1) -> Clip:
        if self.raw is None:
            raise ActionInputError("open a raw recording first (HDF5 + world video)")
        clip = self.raw.cut(float(start_s), stats, frame_step=int(frame_step))
        off = clip.meta["offset_s"]
        end = off + (clip.meta["video_frame_indices"][-1] - clip.meta["video_frame_indices"][0]) / 30.0
        for a in self.raw_annotations:  # spans marked on the recording label the clips cut inside them
            if a.start <= off and end <= a.end + 1e-6:
                clip.annotations.append(Annotation(0, clip.num_steps - 1, a.activity, a.verb, a.phrase, a.sentence))
                clip.meta["activity"] = a.activity or clip.meta.get("activity", "")
        self.cuts.append(clip)
        self.set_clip(clip)
        return clip


def out_of_range(clip: Clip | None, limit: float = 3.0) -> list[str]:
    """Modalities whose values leave the training data's range by more than ``limit`` times its width
    (min-max normalised values outside [-limit, 1 + limit]), e.g. EMG uploaded x1000. One line each."""
    if clip is None:
        return []
    out = []
    for name, arr in clip.actions.items():
        if schema.MODALITIES[name].normalization != "minmax":
            continue
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -limit or hi > 1 + limit:
            worst = max(hi - 1, -lo)
            t = int(np.unravel_index(np.argmax(np.abs(arr - 0.5)), arr.shape)[0])
            out.append(f"{schema.MODALITIES[name].display_name} reaches {worst:.0f}× the training range's width "
                       f"beyond it (step {t}): the model never saw such values")
    return out


def _fill_text(a: Annotation) -> Annotation:
    """Derive missing verb / phrase / sentence from the activity label (paper §7.4 rules)."""
    if a.activity:
        from mmsim_core.data.text import verb_phrase

        verb, phrase = verb_phrase(a.activity)
        a.verb = a.verb or verb
        a.phrase = a.phrase or phrase
        a.sentence = a.sentence or f"person {a.phrase}"
    return a


def clips_to_records(clips: Sequence[Clip], predictions: Sequence[np.ndarray | None] | None = None) -> list[tuple]:
    """Clips -> ``(frames, actions, text, meta)`` for :func:`app.io.write_dataset`."""
    from mmsim.app.io import _clip_meta

    out = []
    for i, c in enumerate(clips):
        pred = predictions[i] if predictions else None
        fut = c.future if c.future is not None else pred
        if fut is None:
            raise ActionInputError(f"{c.label} has no future frames (render it first)")
        out.append((np.concatenate([c.context, fut]), dict(c.actions),
                    {k: c.text_condition(k) for k in schema.TEXT_KINDS}, _clip_meta(c)))
    return out


def recipe_json(clip: Clip | None) -> str:
    """The current clip's edits as a recipe (copies of other clips' arrays are kept inline)."""
    if clip is None:
        return "[]"
    return json.dumps(clip.edits.recipe)


__all__ = ["Gallery", "Session", "clips_to_records", "recipe_json", "parse_recipe", "EditHistory", "Engine"]
