"""The studio's working clip: frames, editable actions, text, annotations, provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from mmsim.app.edits import EditHistory
from mmsim_core import schema
from mmsim_core.errors import ActionInputError


@dataclass
class Annotation:
    """A labelled time span (steps, inclusive) of the clip or of a raw recording (seconds)."""

    start: float
    end: float
    activity: str = ""
    verb: str = ""
    phrase: str = ""
    sentence: str = ""
    unit: str = "step"  # "step" (clip steps) or "s" (seconds into a raw recording)

    def to_dict(self) -> dict:
        return dict(start=float(self.start), end=float(self.end), activity=self.activity, verb=self.verb,
                    phrase=self.phrase, sentence=self.sentence, unit=self.unit)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Annotation":
        return cls(**{k: d[k] for k in ("start", "end", "activity", "verb", "phrase", "sentence", "unit") if k in d})


@dataclass
class Clip:
    """One clip being explored.

    ``context`` uint8 (h, S, S, 3); ``future`` uint8 (F, S, S, 3) or None (uploads without ground truth);
    ``edits.current`` holds the normalised actions ``{name: float32 (h+F, *shape)}``.
    """

    context: np.ndarray
    future: np.ndarray | None
    edits: EditHistory
    text: dict = field(default_factory=lambda: {k: "" for k in schema.TEXT_KINDS})
    meta: dict = field(default_factory=dict)
    annotations: list[Annotation] = field(default_factory=list)
    label: str = "clip"

    def __post_init__(self):
        ctx = np.asarray(self.context)
        if ctx.ndim != 4 or ctx.shape[-1] != 3 or ctx.dtype != np.uint8:
            raise ActionInputError(f"context frames must be uint8 (h, H, W, 3), got {ctx.dtype} {ctx.shape}")
        self.context = ctx
        T = self.num_steps
        for name, arr in self.edits.current.items():
            if arr.shape != (T, *schema.MODALITIES[name].shape):
                raise ActionInputError(f"{name} must have shape {(T, *schema.MODALITIES[name].shape)} "
                                       f"(h+F steps x {schema.MODALITIES[name].shape}), got {arr.shape}")
        if self.future is not None:
            fut = np.asarray(self.future)
            if fut.dtype != np.uint8 or fut.shape[1:] != ctx.shape[1:]:
                raise ActionInputError(f"future frames must be uint8 (F, {ctx.shape[1]}, {ctx.shape[2]}, 3), "
                                       f"got {fut.dtype} {fut.shape}")
            self.future = fut

    @property
    def h(self) -> int:
        return len(self.context)

    @property
    def num_steps(self) -> int:
        if self.edits.current:
            return next(iter(self.edits.current.values())).shape[0]
        return self.h + (len(self.future) if self.future is not None else schema.FUTURE_FRAMES)

    @property
    def actions(self) -> dict[str, np.ndarray]:
        return self.edits.current

    @property
    def original_actions(self) -> dict[str, np.ndarray]:
        return self.edits.original

    @classmethod
    def from_item(cls, item: Mapping, label: str = "clip") -> "Clip":
        """From a ``ClipDataset`` item."""
        return cls(context=np.asarray(item["context"]), future=np.asarray(item["future"]),
                   edits=EditHistory(dict(item["actions"])), text=dict(item["text"]), meta=dict(item["meta"]),
                   label=label)

    def text_condition(self, kind: str) -> str:
        """The text for the text condition: the annotation covering the clip (latest first), else the clip's own."""
        for a in reversed(self.annotations):
            if a.unit == "step" and getattr(a, kind, ""):
                return getattr(a, kind)
        return self.text.get(kind, "")

    def truth_frames(self) -> np.ndarray | None:
        """(h+F, S, S, 3) when the clip has ground truth."""
        return None if self.future is None else np.concatenate([self.context, self.future])
