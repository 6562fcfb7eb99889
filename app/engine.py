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


def _card_sections(folder: Path) -> dict[str, str]:
    """``{heading: text}`` of the checkpoint's model card (README.md), front matter dropped."""
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text()
    if text.startswith("---"):
        text = text.split("---", 2)[-1]
    out, head = {}, ""
    for line in text.splitlines():
        if line.startswith("## "):
            head = line[3:].strip()
            out[head] = ""
        elif head:
            out[head] += line + "\n"
    return {k: v.strip() for k, v in out.items()}


def model_card(pipe, info: ModelInfo) -> dict:
    """What the page says about the model: preset, size, training data, held-out scores, which edits it
    follows, and the sampler steps it was trained for. Read from the pipeline's simulator config, its
    training recipe and the model card beside the weights (no new measurements)."""
    cfg = getattr(pipe, "simulator_config", None)
    recipe = getattr(pipe, "training_recipe", None) or {}
    params = sum(p.numel() for m in (pipe.denoiser, pipe.action_encoder, pipe.context_encoder)
                 if m is not None for p in m.parameters())
    warp = getattr(pipe, "action_warp", None)
    if warp is not None:
        params += sum(p.numel() for p in warp.parameters())
    folder = Path(info.source) if info.trained else None
    sections = _card_sections(folder) if folder is not None and folder.is_dir() else {}
    trained_on = next((ln.split(":", 1)[1].strip() for ln in sections.get("Training", "").splitlines()
                       if ln.lstrip("- ").startswith("Data:")), None)
    steps_line = next((ln.lstrip("- ") for ln in sections.get("Training", "").splitlines()
                       if ln.lstrip("- ").startswith("Steps:")), None)
    return {"preset": getattr(cfg, "name", None) or recipe.get("preset") or "custom",
            "parameters": int(params), "modalities": list(pipe.modalities),
            "default_steps": int(pipe.config.default_num_inference_steps),
            "trained_on": trained_on, "training": steps_line,
            "held_out": sections.get("Held-out evaluation"), "limitations": sections.get("Limitations"),
            "trained": info.trained, "synthetic": bool(trained_on and "synthetic" in trained_on.lower())}


def card_markdown(card: dict, info: ModelInfo) -> str:
    """The model card as page text (short first lines, details after)."""
    if not info.trained:
        return f"⚠️ **{info.note}**"
    lines = [f"**Model** `{card['preset']}` · {card['parameters'] / 1e6:.1f} M parameters · "
             f"actions {', '.join(card['modalities'])} · {card['default_steps']} sampler step(s) by default"]
    if card["trained_on"]:
        lines.append(f"**Trained on** {card['trained_on']}" + (f" · {card['training']}" if card["training"] else ""))
    if card["held_out"]:
        lines.append("**Held-out scores** (from the model card)\n\n" + card["held_out"])
    if card["limitations"]:
        lines.append("**Which edits it follows**\n\n" + card["limitations"])
    return "\n\n".join(lines)


def steps_control(card: dict) -> tuple[int, int, str]:
    """``(default, maximum, note)`` of the sampler-steps control, from the checkpoint's card."""
    default = max(1, int(card["default_steps"]))
    worse = bool(card.get("limitations") and "less accurate" in card["limitations"])
    maximum = max(8, 4 * default)
    note = (f"trained for {default}; more are slower and less accurate here" if worse
            else f"default {default} (the checkpoint's); more cost proportionally more time")
    return default, maximum, note


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
        # Folders whose clips may name an oracle to load (the bundled data): a clip's meta comes from an
        # upload too, and an uploaded file must not make the server open files elsewhere. None: any.
        self.world_roots: tuple[Path, ...] | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.pipe.modalities)

    @property
    def has_text(self) -> bool:
        return self.pipe.text_encoder is not None

    @property
    def default_steps(self) -> int:
        return int(self.pipe.config.default_num_inference_steps)

    @property
    def card(self) -> dict:
        if getattr(self, "_card", None) is None:
            self._card = model_card(self.pipe, self.info)
        return self._card

    def references(self, clip: Clip, prediction: np.ndarray, modalities: Sequence[str], text: str | None = None,
                   seed: int = 0, steps: int | None = None, prediction_metrics: dict | None = None) -> dict | None:
        """PSNR/SSIM (mean over future frames) of the prediction and of two references against the recorded
        future: copy the last context frame, and the model with every action dropped. ``None`` without
        ground truth. The no-action render is cached per clip, seed and steps."""
        if clip.future is None:
            return None
        key = (id(clip), int(seed), int(steps or self.default_steps), text or "")
        cache = clip.__dict__.setdefault("_reference_cache", {})  # lives and dies with the clip
        if key not in cache:
            still = np.repeat(clip.context[-1:], len(clip.future), axis=0)
            blind = self.render(clip, [], text, seed, steps)["frames"]
            cache[key] = {"copy-last": frame_metrics(still, clip.future), "no actions": frame_metrics(blind, clip.future)}
        have = prediction_metrics if prediction_metrics and "ssim" in prediction_metrics else None
        rows = {"prediction": have or frame_metrics(prediction, clip.future), **cache[key]}
        return {k: {"psnr": float(np.mean(v["psnr"])), "ssim": float(np.mean(v["ssim"]))} for k, v in rows.items()}

    def world_frames(self, clip: Clip, actions: Mapping[str, np.ndarray] | None = None) -> np.ndarray | None:
        """The world's own future (uint8 (F, S, S, 3)) for ``actions`` (default: the clip's current, edited
        actions): the synthetic world's oracle re-rendered under them. ``None`` when the clip carries no
        oracle (real recordings, uploads, data without oracle sidecars): the page then hides the view."""
        source = clip.meta.get("source")
        frames_idx = clip.meta.get("video_frame_indices")
        if not source or not frames_idx:
            return None
        from mmsim_core.synth.recording import oracle_path

        path = Path(source)  # datasets resolve bundled (relative) sources against their folder
        if self.world_roots is not None:
            resolved = path.resolve()
            if not any(resolved.is_relative_to(r) for r in self.world_roots):
                return None
        if not oracle_path(path).is_file():
            return None
        from mmsim_core.synth.oracle import load_oracle

        acts = actions if actions is not None else clip.actions
        try:
            raw = {m: schema.denormalize(m, v, self.stats) for m, v in acts.items()}
            frames = load_oracle(path).render_clip(frames_idx, raw, size=clip.context.shape[1])
        except (MMSimError, KeyError) as e:
            logger.warning("world view unavailable for %s: %s", clip.label, e)
            return None
        return frames[clip.h:]

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


def frame_metrics(pred: np.ndarray, truth: np.ndarray, ssim: bool = True) -> dict:
    """Per-frame PSNR (dB) and SSIM (unless ``ssim`` is False) of uint8 (F, S, S, 3) frames."""
    from mmsim_core.evaluation.metrics import frame_psnr, frame_ssim, to_unit

    p, t = to_unit(pred[None]), to_unit(truth[None])  # (1, F, 3, S, S)
    out = {"psnr": frame_psnr(p, t)[0].tolist()}
    if ssim:
        out["ssim"] = frame_ssim(p, t)[0].tolist()
    return out


def control_scores(prediction: np.ndarray, world: np.ndarray, before: np.ndarray | None = None,
                   world_before: np.ndarray | None = None, ssim: bool = False) -> dict:
    """The live control score of one clip (uint8 (F, S, S, 3) frames, means over the future frames).

    ``psnr`` (and ``ssim`` when asked: it costs more than a render on a CPU): the prediction against the
    world's future for the same (edited) actions. With the
    prediction for the ORIGINAL actions (``before``, same noise draw) and the world's future under them
    (``world_before``), also: ``gain_psnr`` = PSNR(prediction, world) - PSNR(before, world), what following
    the edit earned over ignoring it (> 0: the model follows it); ``delta_cosine``, the cosine between the
    predicted change (prediction - before) and the true change (world - world_before), 1 when the model moves
    exactly the right pixels, 0 when it ignores the edit or the world did not change; ``change_psnr``, how much
    the edit changed the world's video (PSNR world vs world_before; above ``VISIBLE_PSNR`` the world barely
    shows the edit, so neither score can say much)."""
    m = frame_metrics(prediction, world, ssim=ssim)
    out = {k: float(np.mean(v)) for k, v in m.items()}
    if before is not None and world_before is not None:
        out["gain_psnr"] = out["psnr"] - float(np.mean(frame_metrics(before, world, ssim=False)["psnr"]))
        dp = prediction.astype(np.float64) - before.astype(np.float64)
        dw = world.astype(np.float64) - world_before.astype(np.float64)
        denom = float(np.linalg.norm(dp) * np.linalg.norm(dw))
        out["delta_cosine"] = float((dp * dw).sum() / denom) if denom > 0 else 0.0
        out["change_psnr"] = float(np.mean(frame_metrics(world, world_before, ssim=False)["psnr"]))
        out["visible"] = bool(out["change_psnr"] < VISIBLE_PSNR)
    return out


VISIBLE_PSNR = 40.0
"""An edit is visible in the world's video when its edited and original futures differ by more than this
(PSNR below it): about one object or hand moving by a few pixels."""


def control_markdown(c: dict) -> str:
    """The control score as one short paragraph of page text."""
    line = (f"**Control score** (prediction vs. the world's future for these actions): PSNR {c['psnr']:.2f} dB"
            + (f", SSIM {c['ssim']:.3f}" if "ssim" in c else ""))
    if "gain_psnr" in c:
        gain, cos = round(c["gain_psnr"], 2) + 0.0, round(c["delta_cosine"], 2) + 0.0  # no "-0.00"
        line += (f" · **gain** {gain:+.2f} dB over the prediction for the original actions · "
                 f"**Δ-cosine** {cos:.2f} (predicted vs. true change)")
        if not c["visible"]:
            line += (f" · the world barely shows this edit (original vs. edited {c['change_psnr']:.1f} dB), "
                     "so these two say little")
    return line


def check_model_error(e: Exception) -> str:
    """One line for the UI from any exception raised while rendering."""
    if isinstance(e, MMSimError):
        return str(e)
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unexpected error'}"
