"""The model side of the studio: loading the simulator, rendering futures, sweeps, batch augmentation.

One pipeline is shared by every session. diffusers schedulers keep per-call state (``set_timesteps``),
so renders are serialised with a lock (the Gradio queue also gives them one worker); each render is
about a second with the demo preset on 2 CPU cores.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from mmsim.app.clip import Clip
from mmsim.app.edits import apply_op, apply_recipe
from mmsim_core import schema
from mmsim_core.errors import ActionInputError, MMSimError

logger = logging.getLogger("mmsim.app")

DEFAULT_CHECKPOINT = "examples/demo_checkpoint"
FALLBACK_PRESET = "mmsim-cpu"


@dataclass
class ModelInfo:
    source: str
    trained: bool
    note: str


def load_model(checkpoint: str | None, fallback_stats=None, preset: str = FALLBACK_PRESET, device: str = "cpu"):
    """``(pipeline, ModelInfo)``. ``checkpoint``: local folder or Hub id. When it is the default demo folder
    and that does not exist, an UNTRAINED ``preset`` pipeline with ``fallback_stats`` (said plainly)."""
    from mmsim_core import MultisensoryVideoPipeline
    from mmsim_core.evaluation.loading import load_pipeline

    default = checkpoint in (None, "", DEFAULT_CHECKPOINT)
    path = checkpoint or DEFAULT_CHECKPOINT
    if default and not Path(path).exists():
        pipe = MultisensoryVideoPipeline.from_preset(preset, normalization_stats=fallback_stats)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        note = (f"UNTRAINED {preset} model: the demo checkpoint {DEFAULT_CHECKPOINT}/ was not found, so predictions "
                f"are noise-like. Train one with `mmsim train` or pass --checkpoint FOLDER_OR_HUB_ID.")
        logger.warning(note)
        return pipe, ModelInfo(source=f"{preset} (untrained)", trained=False, note=note)
    pipe, resolved = load_pipeline(path, device)
    return pipe, ModelInfo(source=str(resolved), trained=True, note=f"checkpoint {resolved}")


def clip_latents(pipe, seed: int, batch: int = 1) -> torch.Tensor:
    """The same initial noise for a seed, whatever the actions: edits change the future, not the draw."""
    cfg = pipe.denoiser.config
    shape = (pipe.future_frames, cfg.in_channels, pipe.sample_size, pipe.sample_size)
    g = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=g).expand(batch, *shape).contiguous()


class Engine:
    """Renders futures of clips with one shared pipeline."""

    def __init__(self, pipe, info: ModelInfo, stats=None):
        self.pipe = pipe
        self.info = info
        self.stats = stats if stats is not None else getattr(pipe, "normalization_stats", None)
        self.lock = threading.Lock()

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.pipe.modalities)

    @property
    def has_text(self) -> bool:
        return self.pipe.text_encoder is not None

    @property
    def default_steps(self) -> int:
        return int(self.pipe.config.default_num_inference_steps)

    def _inputs(self, clip: Clip, modalities: Sequence[str], text: str | None):
        used = [m for m in schema.check_modality_names(modalities) if m in clip.actions and m in self.modalities]
        acts = {m: clip.actions[m][None] for m in used}  # (1, T, *shape)
        if text and not self.has_text:
            raise ActionInputError(f"this model ({self.info.source}) has no text encoder; clear the text prompt")
        return used, acts, ([text] if text else None)

    def render(self, clip: Clip, modalities: Sequence[str], text: str | None = None, seed: int = 0,
               steps: int | None = None, on_step: Callable[[int, int, np.ndarray], None] | None = None) -> dict:
        """Predict the future of ``clip`` with the chosen modalities. ``on_step(i, n, preview (F,S,S,3))``."""
        steps = int(steps or self.default_steps)
        if not 1 <= steps <= 100:
            raise ActionInputError(f"steps must be in [1, 100], got {steps}")
        used, acts, txt = self._inputs(clip, modalities, text)
        cb = None
        if on_step is not None:
            def cb(pipe, i, t, kw):
                on_step(i + 1, steps, kw["x0_preview"][0])
                return None
        t0 = time.perf_counter()
        with self.lock, torch.no_grad():
            out = self.pipe(context=clip.context[None], actions=acts, text=txt, num_inference_steps=steps,
                            latents=clip_latents(self.pipe, seed), callback_on_step_end=cb, output_type="np")
        return {"frames": out.frames[0], "modalities": used, "seconds": time.perf_counter() - t0, "steps": steps,
                "seed": int(seed), "text": text or ""}

    def sweep(self, clip: Clip, op: Mapping, values: Sequence[float], modalities: Sequence[str],
              text: str | None = None, seed: int = 0, steps: int | None = None) -> dict:
        """Render one future per value of ``op["amount"]`` (or ``op["value"]`` for set_point), one batch."""
        values = [float(v) for v in values]
        if not 1 <= len(values) <= 8:
            raise ActionInputError(f"a sweep takes 1 to 8 values, got {len(values)}")
        key = "value" if op.get("op") == "set_point" else "amount"
        variants = [apply_op(clip.actions, {**op, key: v}) for v in values]
        used, _, txt = self._inputs(clip, modalities, text)
        acts = {m: np.stack([v[m] for v in variants]) for m in used}  # (N, T, *shape)
        n = len(values)
        t0 = time.perf_counter()
        with self.lock, torch.no_grad():
            out = self.pipe(context=np.repeat(clip.context[None], n, axis=0), actions=acts,
                            text=txt * n if txt else None, num_inference_steps=int(steps or self.default_steps),
                            latents=clip_latents(self.pipe, seed, n), output_type="np")
        return {"frames": out.frames, "values": values, "seconds": time.perf_counter() - t0, "modalities": used}

    def augment(self, items: Sequence[Mapping], recipe: Sequence[Mapping], modalities: Sequence[str] | None = None,
                render: bool = True, seed: int = 0, steps: int | None = None, batch_size: int = 4,
                on_batch: Callable[[int, int], None] | None = None) -> list[tuple]:
        """Apply ``recipe`` to dataset items; the future frames are rendered by the model (``render``) or kept.
        Returns ``(frames, actions, text, meta)`` tuples for :func:`app.io.write_dataset`. Items the recipe
        cannot apply to (a modality they lack) raise ``ActionInputError`` naming the clip."""
        out = []
        mods = list(modalities) if modalities is not None else list(schema.MODALITY_NAMES)
        for b in range(0, len(items), batch_size):
            chunk = items[b:b + batch_size]
            edited = []
            for it in chunk:
                try:
                    edited.append(apply_recipe(it["actions"], recipe))
                except ActionInputError as e:
                    raise ActionInputError(f"clip {it['meta'].get('index', '?')}: {e}") from None
            if render:
                used = [m for m in mods if m in self.modalities and all(m in e for e in edited)]
                ctx = np.stack([it["context"] for it in chunk])
                with self.lock, torch.no_grad():
                    fut = self.pipe(context=ctx, actions={m: np.stack([e[m] for e in edited]) for m in used},
                                    num_inference_steps=int(steps or self.default_steps),
                                    latents=clip_latents(self.pipe, seed, len(chunk)), output_type="np").frames
            else:
                fut = np.stack([it["future"] for it in chunk])
            for it, e, f in zip(chunk, edited, fut):
                meta = {k: v for k, v in it["meta"].items()}
                meta.update({"augmented_from": {"index": it["meta"].get("index"), "split": it["meta"].get("split")},
                             "edit_recipe": list(recipe), "future_source": "generated" if render else "recorded",
                             "generator": self.info.source, "modalities": [m for m in schema.MODALITY_NAMES if m in e]})
                out.append((np.concatenate([it["context"], f]), e, dict(it["text"]), meta))
            if on_batch is not None:
                on_batch(min(b + batch_size, len(items)), len(items))
        return out


def frame_metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Per-frame PSNR (dB) and SSIM of uint8 (F, S, S, 3) frames."""
    from mmsim_core.evaluation.metrics import frame_psnr, frame_ssim, to_unit

    p, t = to_unit(pred[None]), to_unit(truth[None])  # (1, F, 3, S, S)
    return {"psnr": frame_psnr(p, t)[0].tolist(), "ssim": frame_ssim(p, t)[0].tolist()}


def check_model_error(e: Exception) -> str:
    """One line for the UI from any exception raised while rendering."""
    if isinstance(e, MMSimError):
        return str(e)
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unexpected error'}"
