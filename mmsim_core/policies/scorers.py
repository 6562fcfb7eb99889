"""Goal scorers: how close is a simulated end frame to the goal? One interface for the planner:

    scorer.score(frames_end, goal, start=None) -> np.ndarray (N,)   # frames uint8 (N, 64, 64, 3); higher = closer

``start`` is the clip's last context frame (what the world looked like before the actions); scorers that do not
need it ignore it.

- :class:`FrameEmbeddingScorer`: the goal is a frame. Both are embedded by the simulator's own context encoder
  (the features the simulator conditions on, so no extra training) and compared by cosine similarity or
  negative L2 distance.
- :class:`LearnedGoalScorer`: the goal is a frame. A small classifier
  (:class:`~mmsim_core.policies.goal_scorer.OutcomeGoalScorer`, ``mmsim scorer train``) reads the clip's start
  frame, the end frame and the goal frame and gives the probability that the end frame shows the goal's task
  outcome (held, lifted, cut, clean, ...), the question the planner actually asks.
- :class:`VLMGoalScorer`: the goal is a text ("slice a cucumber"). A local vision-language model is asked
  whether the frame shows it; the score is its log-odds of answering yes. Needs ``transformers`` and weights
  on disk (nothing is downloaded here).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mmsim_core import schema
from mmsim_core.errors import ActionInputError, MMSimError

SCORERS = ("embedding", "learned", "vlm")


def _check_frames(frames, name: str = "frames_end") -> np.ndarray:
    s = schema.FRAME_SIZE
    x = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (s, s, 3) or x.shape[0] < 1:
        raise ActionInputError(f"{name} must be uint8 RGB frames of shape (N, {s}, {s}, 3), "
                               f"got {x.dtype} {tuple(x.shape)}")
    return x


class FrameEmbeddingScorer:
    """Similarity to a goal frame in the simulator's context-encoder embedding.

    ``encoder``: a :class:`~mmsim_core.pipelines.multisensory.MultisensoryVideoPipeline` (its
    ``context_encoder`` is used) or a context encoder itself (``encode((B, n, 3, H, W) in [-1, 1]) -> (B, n, d)``).
    ``metric``: ``"cosine"`` (cosine similarity, in [-1, 1]) or ``"l2"`` (negative Euclidean distance)."""

    def __init__(self, encoder, metric: str = "cosine"):
        if metric not in ("cosine", "l2"):
            raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")
        self.encoder = getattr(encoder, "context_encoder", encoder)
        if not hasattr(self.encoder, "encode"):
            raise MMSimError(f"FrameEmbeddingScorer needs a simulator pipeline or a context encoder, "
                             f"got {type(encoder).__name__}")
        self.metric = metric

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(N, H, W, 3)`` -> ``(N, d)``."""
        from mmsim_core.pipelines.multisensory import frames_to_model

        device = next(self.encoder.parameters()).device
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            z = self.encoder.encode(frames_to_model(frames[:, None]).to(device))  # (N, 1, d)
        finally:
            self.encoder.train(was_training)
        return z.reshape(len(frames), -1).float()

    def score(self, frames_end, goal, start=None) -> np.ndarray:
        """``frames_end`` uint8 (N, H, W, 3); ``goal`` uint8 (H, W, 3) (one goal for all) or (N, H, W, 3);
        ``start`` is not used."""
        x = _check_frames(frames_end)
        g = _one_or_many(goal, len(x), "goal")
        zx, zg = self.embed(x), self.embed(g).expand(len(x), -1)
        if self.metric == "cosine":
            s = F.cosine_similarity(zx, zg, dim=-1)
        else:
            s = -(zx - zg).norm(dim=-1)
        return s.cpu().numpy().astype(np.float64)


def _one_or_many(frames, n: int, name: str) -> np.ndarray:
    """One frame (H, W, 3) or one per end frame (N, H, W, 3) -> uint8 (1 or N, H, W, 3)."""
    x = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    x = _check_frames(x[None] if x.ndim == 3 else x, name)
    if len(x) not in (1, n):
        raise ActionInputError(f"{name} must be one frame or one per end frame ({n}), got {len(x)}")
    return x


class LearnedGoalScorer:
    """The probability that an end frame shows the goal frame's task outcome, from a trained
    :class:`~mmsim_core.policies.goal_scorer.OutcomeGoalScorer` (``weights``: its folder, ``mmsim scorer train``
    writes ``RUN/final``). Needs the start frame (the clip's last context frame): an outcome is a change."""

    def __init__(self, weights: str | os.PathLike, device: str = "cpu"):
        from mmsim_core.policies.goal_scorer import OutcomeGoalScorer

        if weights is None or not os.path.isfile(os.path.join(str(weights), OutcomeGoalScorer.config_name)):
            raise MMSimError(f"the learned goal scorer needs a trained scorer folder (`mmsim scorer train` writes "
                             f"RUN/final); {weights} has no {OutcomeGoalScorer.config_name}")
        try:
            self.model = OutcomeGoalScorer.from_pretrained(str(weights)).to(device).eval()
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise MMSimError(f"cannot load the goal scorer in {weights} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
        self.device = torch.device(device)

    @torch.no_grad()
    def score(self, frames_end, goal, start=None) -> np.ndarray:
        """``frames_end`` uint8 (N, H, W, 3); ``goal`` and ``start`` one frame (H, W, 3) or N -> probabilities (N,)."""
        from mmsim_core.policies.common import frames_to_unit

        x = _check_frames(frames_end)
        if start is None:
            raise ActionInputError("the learned goal scorer needs the start frame (the clip's last context frame)")
        g, s = _one_or_many(goal, len(x), "goal"), _one_or_many(start, len(x), "start")
        end, goal_t, start_t = (frames_to_unit(a).to(self.device) for a in (x, g, s))  # (N or 1, 3, H, W)
        n = len(x)
        logits = self.model(start_t.expand(n, -1, -1, -1), end, goal_t.expand(n, -1, -1, -1))  # (N,)
        return torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64)


class VLMGoalScorer:
    """A vision-language model as the goal heuristic: "Does this image show someone who has <goal>?" scored
    by ``log p(yes) - log p(no)`` of the model's next token.

    ``weights``: a local folder of a ``transformers`` image-text-to-text model with its processor (e.g. a small
    LLaVA-style or Idefics/SmolVLM checkpoint). Without weights or without ``transformers`` it raises an
    :class:`MMSimError`: nothing can be downloaded here, use :class:`FrameEmbeddingScorer` (``--scorer embedding``)
    with a goal frame instead."""

    PROMPT = "Does this image show a person who has just finished the task: {goal}? Answer yes or no."

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", prompt: str | None = None):
        hint = ("use the frame-embedding scorer instead (--scorer embedding with a goal frame: --goal frame|both)")
        if weights is None:
            raise MMSimError("VLMGoalScorer needs local vision-language model weights (a folder): they cannot be "
                             f"downloaded here; {hint}")
        if not os.path.isdir(str(weights)):
            raise MMSimError(f"VLMGoalScorer: weights folder {weights} does not exist; {hint}")
        try:
            import transformers
        except ImportError:
            raise MMSimError(f"VLMGoalScorer needs the transformers package, which is not installed; {hint}") from None
        self.prompt = prompt or self.PROMPT
        self.device = torch.device(device)
        self.processor = transformers.AutoProcessor.from_pretrained(str(weights), local_files_only=True)
        auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
        self.model = auto.from_pretrained(str(weights), local_files_only=True).to(self.device).eval()
        tok = getattr(self.processor, "tokenizer", self.processor)
        self.yes_ids = self._first_token_ids(tok, ("yes", "Yes", " yes", " Yes"))
        self.no_ids = self._first_token_ids(tok, ("no", "No", " no", " No"))

    @staticmethod
    def _first_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
        ids = {tokenizer.encode(w, add_special_tokens=False)[0] for w in words}
        return sorted(ids)

    def _text(self, goal: str) -> str:
        question = self.prompt.format(goal=goal)
        if hasattr(self.processor, "apply_chat_template") and getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return question

    @torch.no_grad()
    def score(self, frames_end, goal: str | Sequence[str], start=None) -> np.ndarray:
        """``frames_end`` uint8 (N, H, W, 3); ``goal`` one text for all frames or N texts; ``start`` is not used."""
        from PIL import Image

        x = _check_frames(frames_end)
        goals = [goal] * len(x) if isinstance(goal, str) else list(goal)
        if len(goals) != len(x) or not all(isinstance(g, str) for g in goals):
            raise ActionInputError(f"goal must be one text or {len(x)} texts for the VLM scorer")
        out = []
        for frame, g in zip(x, goals):
            inputs = self.processor(images=[Image.fromarray(frame)], text=self._text(g), return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            logits = self.model(**inputs).logits[0, -1].float()  # the next token after the question
            logp = torch.log_softmax(logits, dim=-1)
            yes = torch.logsumexp(logp[self.yes_ids], 0)
            no = torch.logsumexp(logp[self.no_ids], 0)
            out.append(float(yes - no))
        return np.asarray(out, dtype=np.float64)


def make_scorer(kind: str, simulator=None, vlm_weights: str | None = None, device: str = "cpu",
                weights: str | None = None):
    """``"embedding"`` (needs the simulator pipeline), ``"learned"`` (needs ``weights``, a trained scorer folder)
    or ``"vlm"`` (needs ``vlm_weights``)."""
    if kind == "embedding":
        if simulator is None:
            raise MMSimError("the embedding scorer needs the simulator pipeline (its context encoder)")
        return FrameEmbeddingScorer(simulator)
    if kind == "learned":
        return LearnedGoalScorer(weights, device=device)
    if kind == "vlm":
        return VLMGoalScorer(vlm_weights, device=device)
    raise ValueError(f"scorer must be one of {list(SCORERS)}, got {kind!r}")
