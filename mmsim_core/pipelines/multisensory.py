"""``MultisensoryVideoPipeline``: the simulator as a diffusers ``DiffusionPipeline``.

    pipe = MultisensoryVideoPipeline.from_pretrained(path_or_hub_id)
    pipe = MultisensoryVideoPipeline.from_preset("mmsim-cpu")        # untrained
    out = pipe(context=ctx,     # uint8 (B, h, H, W, 3)
               actions=acts,    # {name: float32 (B, h+F, *shape)} normalised; any subset; missing = dropped
               text=None, num_inference_steps=None, generator=None)
    out.frames                  # uint8 (B, F, H, W, 3)

Components (``register_modules``): ``denoiser`` (:class:`VideoDenoiser`), ``action_encoder`` (the paper's
:class:`MultisensoryActionEncoder` or a Table 2 baseline), ``context_encoder``, ``scheduler`` (a diffusers
scheduler), and the optional ``text_encoder`` and ``action_warp`` (:class:`ActionWarp`: the anchor frame and
hand map, ours). Beside the weights, a ``save_pretrained`` folder holds ``normalization.json`` (the action
statistics) and ``simulator_config.json`` (the :class:`SimulatorConfig` the model was built and trained with:
text kind, loss weights, and a summary of the training run) — all that loading, evaluation and the studio
need. Folders saved before the action warp was its own component load through
:mod:`mmsim_core.conversion`.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from mmsim_core.errors import ActionInputError, MMSimError
from mmsim_core.models.denoiser import own_memory
from mmsim_core.presets import SIMULATOR_CONFIG_FILE, SIMULATOR_CONFIG_FORMAT, SimulatorConfig, build_components
from mmsim_core.schema import MODALITIES, MODALITY_NAMES, NormalizationStats

NORMALIZATION_FILE = "normalization.json"
MAX_INFERENCE_STEPS = 1000
"""Most sampler steps one call may take (also never more than the scheduler's training timesteps): a typo
like 10**9 is refused at once instead of running for days."""
MAX_ACTION_MAGNITUDE = 1e4
"""Largest absolute normalised action value accepted. Normalised signals lie around [0, 1]; values near 1e30
overflow the encoders and come out as NaN frames, so anything beyond this (raw units, a x10^4 slip) is
refused naming the modality."""


@dataclass
class MultisensoryPipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor
    """``output_type="np"``: uint8 (B, F, H, W, 3). ``output_type="pt"``: float32 (B, F, 3, H, W) in [0, 1]."""


def uint8_to_model(x: torch.Tensor) -> torch.Tensor:
    """Integer frames (B, N, H, W, 3) in [0, 255] -> float32 (B, N, 3, H, W) in [-1, 1]: the model's range."""
    # diffusers' VideoProcessor gives bit-identical values but loops over frames: 0.5 s for one (8, 12, 64, 64)
    # training batch on 2 cores (0.3 s back to uint8 for 8 x 8 frames) against well under 1 ms here.
    return x.permute(0, 1, 4, 2, 3).float().div(127.5).sub(1.0)


def frames_to_model(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (B, N, H, W, 3) -> float32 (B, N, 3, H, W) in [-1, 1]."""
    return uint8_to_model(torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames))


def model_to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, N, 3, H, W) in [-1, 1] -> uint8 (B, N, H, W, 3)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 1, 3, 4, 2).cpu().numpy()


def encode_text(text_encoder, texts: Sequence[str], device) -> torch.Tensor:
    """(B,) strings -> (B, text_dim) with whichever entry point the text encoder offers."""
    fn = getattr(text_encoder, "encode", None) or text_encoder
    return fn(list(texts)).to(device)


def prediction_to_x0(pred: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str):
    """x0 estimate from the network output at a VP state x_t (used for previews and by training)."""
    a = alpha_bar.to(x_t.dtype).view(-1, *([1] * (x_t.ndim - 1)))
    if prediction_type == "epsilon":
        return (x_t - (1 - a).sqrt() * pred) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * pred
    return pred


def _check_component_weights(path: str) -> None:
    """Every component folder's weights are whole safetensors files (a pickle is refused), named if not."""
    from mmsim_core.checkpoint_files import check_weights_folder

    for sub in sorted(os.listdir(path)):
        folder = os.path.join(path, sub)
        if os.path.isdir(folder) and os.path.isfile(os.path.join(folder, "config.json")):
            check_weights_folder(folder)


class MultisensoryVideoPipeline(DiffusionPipeline):
    """Predict F future frames from h context frames and multisensory action signals (paper §2)."""

    model_cpu_offload_seq = "text_encoder->context_encoder->action_encoder->action_warp->denoiser"
    _optional_components = ["text_encoder", "action_warp"]
    _callback_tensor_inputs = ["latents", "prediction"]

    def __init__(
        self,
        denoiser,
        action_encoder,
        context_encoder,
        scheduler,
        text_encoder=None,
        action_warp=None,
        default_num_inference_steps: int = 8,
        normalization_stats: NormalizationStats | None = None,
        simulator_config: SimulatorConfig | None = None,
        training_recipe: dict | None = None,
    ):
        super().__init__()
        self.register_modules(
            denoiser=denoiser,
            action_encoder=action_encoder,
            action_warp=action_warp,
            context_encoder=context_encoder,
            scheduler=scheduler,
            text_encoder=text_encoder,
        )
        self.register_to_config(default_num_inference_steps=int(default_num_inference_steps))
        self.normalization_stats = normalization_stats
        self.simulator_config = simulator_config
        """The :class:`SimulatorConfig` this pipeline was built from (None for hand-assembled pipelines)."""
        self.training_recipe = training_recipe
        """How it was trained (data, steps, batch, learning rate...), as saved by ``mmsim train``; None if unknown."""

    # ------------------------------------------------------------------------------------------
    # Construction, saving and loading
    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, normalization_stats: NormalizationStats | None = None, **overrides):
        """An untrained pipeline of the named preset (see :mod:`mmsim_core.presets`)."""
        from mmsim_core.presets import get_preset

        cfg = get_preset(name, **overrides)
        return cls.from_config_dataclass(cfg, normalization_stats=normalization_stats)

    @classmethod
    def from_config_dataclass(cls, cfg: SimulatorConfig, normalization_stats: NormalizationStats | None = None):
        """An untrained pipeline of ``cfg``."""
        comps = build_components(cfg)
        for m in comps.values():
            if isinstance(m, torch.nn.Module):
                m.eval()
        return cls(
            **comps,
            scheduler=cfg.scheduler.build_sampler(),
            default_num_inference_steps=cfg.scheduler.num_inference_steps,
            normalization_stats=normalization_stats,
            simulator_config=cfg,
        )

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """diffusers' folder (model_index.json, one sub-folder per component, safetensors) plus
        ``normalization.json`` and ``simulator_config.json`` when the pipeline carries them."""
        super().save_pretrained(save_directory, **kwargs)
        if self.normalization_stats is not None:
            self.normalization_stats.save(os.path.join(save_directory, NORMALIZATION_FILE))
        if self.simulator_config is not None:
            record = {"format": SIMULATOR_CONFIG_FORMAT, "simulator": self.simulator_config.to_dict()}
            if self.training_recipe is not None:
                record["training"] = self.training_recipe
            with open(os.path.join(save_directory, SIMULATOR_CONFIG_FILE), "w") as f:
                json.dump(record, f, indent=2)
                f.write("\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load from a local ``save_pretrained`` folder (offline) or a Hub id (diffusers download)."""
        path = str(pretrained_model_name_or_path)
        if not os.path.isdir(path):
            if os.path.exists(path) or path.startswith((".", "/", "~")):
                raise MMSimError(f"{path}: not a pipeline folder (expected model_index.json inside a directory)")
            download_keys = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
            dl = {k: kwargs[k] for k in download_keys if k in kwargs}
            path = cls.download(path, **dl)
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            raise MMSimError(f"{path}: no model_index.json; is this a MultisensoryVideoPipeline folder?")
        from mmsim_core.conversion import converted_legacy_folder

        with converted_legacy_folder(path) as path:  # a folder saved before the action warp split, or `path` itself
            stats_file = os.path.join(path, NORMALIZATION_FILE)
            if "normalization_stats" not in kwargs and os.path.isfile(stats_file):
                kwargs["normalization_stats"] = NormalizationStats.load(stats_file)
            if "simulator_config" not in kwargs:
                kwargs["simulator_config"], kwargs["training_recipe"] = load_simulator_config(path)
            _check_component_weights(path)
            kwargs.setdefault("use_safetensors", True)  # never fall back to a pickle weight file
            pipe = super().from_pretrained(path, **kwargs)
            for component in pipe.components.values():
                if isinstance(component, torch.nn.Module):
                    own_memory(component)  # bit-identical outputs to the saved pipeline
        return pipe

    # ------------------------------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------------------------------
    @property
    def context_frames(self) -> int:
        return self.denoiser.config.context_frames

    @property
    def future_frames(self) -> int:
        return self.denoiser.config.num_frames

    @property
    def sample_size(self) -> int:
        return self.denoiser.config.sample_size

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.action_encoder.config.modalities)

    @property
    def text_kind(self) -> str | None:
        """Which text of a clip the model was trained to condition on ("verb" | "phrase" | "sentence"), None
        for a model without text."""
        return self.simulator_config.text_kind if self.simulator_config is not None else None

    # ------------------------------------------------------------------------------------------
    # Input validation
    # ------------------------------------------------------------------------------------------
    def check_inputs(self, context, actions, text, action_mask, output_type, guidance_scale,
                     num_inference_steps=None) -> int:
        """Raise :class:`ActionInputError` naming what is wrong; return the batch size."""
        h, f, s = self.context_frames, self.future_frames, self.sample_size
        if context is None:
            raise ActionInputError("context is required: uint8 frames of shape (B, h, H, W, 3)")
        if not isinstance(context, (np.ndarray, torch.Tensor)):
            raise ActionInputError(f"context must be a numpy array or torch tensor, got {type(context).__name__}")
        shape = tuple(context.shape)
        if len(shape) != 5 or shape[1:] != (h, s, s, 3):
            raise ActionInputError(f"context must have shape (B, {h}, {s}, {s}, 3) (uint8 RGB), got {shape}")
        if shape[0] < 1:  # before the value checks below, which need at least one frame
            raise ActionInputError("context has an empty batch")
        dtype = context.dtype
        is_uint8 = dtype in (np.uint8, torch.uint8)
        if not is_uint8:
            is_int = (isinstance(context, np.ndarray) and np.issubdtype(dtype, np.integer)) or (
                isinstance(context, torch.Tensor) and not dtype.is_floating_point and dtype != torch.bool
            )
            if not is_int:
                raise ActionInputError(
                    f"context must be uint8 RGB in [0, 255], got dtype {dtype}; "
                    "convert float frames with (x * 255).round().astype(np.uint8)"
                )
            lo, hi = int(context.min()), int(context.max())
            if lo < 0 or hi > 255:
                raise ActionInputError(f"context values must be in [0, 255], got range [{lo}, {hi}]")
        batch = shape[0]
        if batch < 1:
            raise ActionInputError("context has an empty batch")

        actions = {} if actions is None else actions
        if not isinstance(actions, Mapping):
            raise ActionInputError(f"actions must be a dict {{name: array}}, got {type(actions).__name__}")
        for name, value in actions.items():
            if name not in MODALITIES:
                raise ActionInputError(f"unknown action modality {name!r}; must be one of {list(MODALITY_NAMES)}")
            if not isinstance(value, (np.ndarray, torch.Tensor)):
                raise ActionInputError(f"actions[{name!r}] must be an array, got {type(value).__name__}")
            expected = (batch, h + f, *MODALITIES[name].shape)
            if tuple(value.shape) != expected:
                if len(value.shape) >= 1 and value.shape[0] != batch:
                    raise ActionInputError(
                        f"actions[{name!r}] has batch size {value.shape[0]} but context has {batch}"
                    )
                raise ActionInputError(
                    f"actions[{name!r}] must have shape {expected} = (B, h+F, *{MODALITIES[name].shape}), "
                    f"got {tuple(value.shape)}"
                )
            floating = (
                np.issubdtype(value.dtype, np.floating)
                if isinstance(value, np.ndarray)
                else value.dtype.is_floating_point
            )
            if not floating:
                raise ActionInputError(f"actions[{name!r}] must be float32 (normalised values), got {value.dtype}")
            finite = np.isfinite(value).all() if isinstance(value, np.ndarray) else bool(torch.isfinite(value).all())
            if not finite:
                raise ActionInputError(f"actions[{name!r}] contains NaN or inf values")
            # (the batch and steps are >= 1 here, so the array is not empty)
            peak = float(np.abs(value).max()) if isinstance(value, np.ndarray) else float(value.abs().max())
            if peak > MAX_ACTION_MAGNITUDE:
                raise ActionInputError(
                    f"actions[{name!r}] reaches {peak:.3g}; normalised values lie around [0, 1] and must stay "
                    f"within +-{MAX_ACTION_MAGNITUDE:g} (raw units? normalise them with the pipeline's "
                    f"normalization_stats)")

        if action_mask is not None:
            if not isinstance(action_mask, Mapping):
                raise ActionInputError(f"action_mask must be a dict {{name: bool (B,)}}, got {type(action_mask).__name__}")
            for name, m in action_mask.items():
                if name not in actions:
                    raise ActionInputError(f"action_mask names {name!r}, which is not in actions")
                if tuple(np.shape(m)) != (batch,):
                    raise ActionInputError(f"action_mask[{name!r}] must have shape ({batch},), got {tuple(np.shape(m))}")

        if text is not None:
            if self.text_encoder is None:
                raise ActionInputError("text was given but this pipeline has no text encoder")
            if isinstance(text, str) or not all(isinstance(t, str) for t in text):
                raise ActionInputError("text must be a list of strings, one per sample")
            if len(text) != batch:
                raise ActionInputError(f"text has {len(text)} strings but context has batch size {batch}")
        if output_type not in ("np", "pt"):
            raise ActionInputError(f"output_type must be one of ['np', 'pt'], got {output_type!r}")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float, np.floating, np.integer)):
            raise ActionInputError(f"guidance_scale must be a number, got {type(guidance_scale).__name__}")
        if not np.isfinite(guidance_scale) or guidance_scale < 0:
            raise ActionInputError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}")
        if num_inference_steps is not None:
            if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)):
                raise ActionInputError(f"num_inference_steps must be an integer, got {num_inference_steps!r}")
            top = min(MAX_INFERENCE_STEPS, int(self.scheduler.config.num_train_timesteps))
            if not 1 <= num_inference_steps <= top:
                raise ActionInputError(f"num_inference_steps must be in [1, {top}], got {num_inference_steps}")
        return batch

    # ------------------------------------------------------------------------------------------
    # Encoding
    # ------------------------------------------------------------------------------------------
    def encode_context(self, context) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, h, H, W, 3) -> frames (B, h, 3, H, W) in [-1, 1] and features z_x (B, h, d)."""
        frames = frames_to_model(context).to(self._execution_device)
        return frames, self.context_encoder.encode(frames)

    def _action_tensors(self, actions, action_mask):
        device = self._execution_device
        acts = {k: torch.as_tensor(np.asarray(v) if isinstance(v, np.ndarray) else v).float().to(device)
                for k, v in (actions or {}).items()}  # fmt: skip
        mask = None
        if action_mask is not None:
            mask = {k: torch.as_tensor(np.asarray(v)).bool().to(device) for k, v in action_mask.items()}
        return acts, mask

    def encode_actions(self, actions, context_features, action_mask=None, text=None) -> torch.Tensor:
        """Normalised action arrays -> y° (B, h+F, d). Missing modalities are dropped."""
        acts, mask = self._action_tensors(actions, action_mask)
        text_features = encode_text(self.text_encoder, text, self._execution_device) if text is not None else None
        return self.action_encoder(acts, context_features, action_mask=mask, text_features=text_features).interaction

    def warp_actions(self, actions, context_frames, action_mask=None):
        """What the action warp makes of the actions (an :class:`ActionWarpOutput`: anchor frame, hand map),
        or None without one. ``context_frames`` (B, h, 3, H, W) in [-1, 1]."""
        if self.action_warp is None:
            return None
        acts, mask = self._action_tensors(actions, action_mask)
        batch = context_frames.shape[0]
        return self.action_warp(acts, mask, batch, self.context_frames + self.future_frames, context_frames)

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        context: np.ndarray | torch.Tensor,
        actions: Mapping[str, np.ndarray | torch.Tensor] | None = None,
        text: list[str] | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        guidance_scale: float = 1.0,
        action_mask: Mapping[str, np.ndarray | torch.Tensor] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict | None] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> MultisensoryPipelineOutput | tuple:
        """Generate the F future frames.

        Args:
            context: uint8 (B, h, H, W, 3) context frames.
            actions: {name: float32 (B, h+F, *shape)} normalised signals; any subset of the four
                modalities, missing ones are dropped (no influence on the output). Modalities the model
                was not trained with (see ``pipe.modalities``) are validated, then ignored.
            text: optional list of B strings (needs a text encoder).
            num_inference_steps: sampler steps (default: the preset's, ``config.default_num_inference_steps``);
                at most :data:`MAX_INFERENCE_STEPS` and the scheduler's training timesteps.
            generator: torch generator(s) for the initial noise (and stochastic samplers).
            guidance_scale: classifier-free guidance on the actions; the unconditional branch is the
                all-dropped null embedding. 1.0 (default) = off, one denoiser forward per step.
            action_mask: optional {name: bool (B,)}; False drops that modality for that sample.
            latents: optional initial noise (B, F, 3, H, W).
            output_type: "np" -> uint8 (B, F, H, W, 3); "pt" -> float32 (B, F, 3, H, W) in [0, 1].
            callback_on_step_end: ``fn(pipe, step_index, timestep, callback_kwargs) -> dict | None``, called
                after every step with the tensors named in ``callback_on_step_end_tensor_inputs`` plus
                ``"x0_preview"``: the current clean-frame estimate as uint8 (B, F, H, W, 3). A returned
                ``{"latents": ...}`` replaces the latents.
        """
        # 1. Validate inputs.
        batch = self.check_inputs(context, actions, text, action_mask, output_type, guidance_scale,
                                  num_inference_steps)
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ActionInputError(
                    f"callback_on_step_end_tensor_inputs must be among {self._callback_tensor_inputs}, got {name!r}"
                )
        steps = int(num_inference_steps or self.config.default_num_inference_steps)
        device = self._execution_device
        do_cfg = guidance_scale != 1.0
        modules = [m for m in (self.denoiser, self.action_encoder, self.action_warp, self.context_encoder,
                               self.text_encoder) if isinstance(m, torch.nn.Module)]  # fmt: skip
        was_training = [m.training for m in modules]
        for m in modules:  # BatchNorm/dropout must be in inference mode, whatever the caller did.
            m.eval()
        try:
            # 2. Encode the context frames: x (B, h, 3, H, W) in [-1, 1], z_x (B, h, d).
            context_frames, context_features = self.encode_context(context)

            # 3. Encode the actions -> y° (B, h+F, d); the null (all-dropped) embedding for CFG.
            y = self.encode_actions(actions, context_features, action_mask, text)
            dtype = self.denoiser.dtype
            context_in = context_frames.to(dtype)

            # 4. The action warp (optional): what the sample is measured from, None | (B, F, 3, H, W) (the last
            #    context frame moved by the ego-motion and the hands), shared by both guidance halves, and the
            #    hand map (B, F, C, G, G).
            warp = self.warp_actions(actions, context_frames, action_mask)
            anchor = warp.anchor.to(dtype) if warp is not None and warp.anchor is not None else self.denoiser.anchor(context_in)
            spatial = warp.spatial if warp is not None else None
            anchor_in = anchor
            if do_cfg:
                y_null = self.encode_actions({}, context_features)
                y = torch.cat([y_null, y])  # (2B, T, d)
                context_in = torch.cat([context_in, context_in])
                anchor_in = torch.cat([anchor, anchor]) if anchor is not None else None
                if spatial is not None:  # the unconditional half knows nothing of the hands
                    spatial = torch.cat([torch.zeros_like(spatial), spatial])

            # 5. Prepare the initial noise (B, F, 3, H, W).
            self.scheduler.set_timesteps(steps, device=device)
            timesteps = self.scheduler.timesteps
            shape = (batch, self.future_frames, self.denoiser.config.in_channels, self.sample_size, self.sample_size)
            if latents is None:
                latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            else:
                if tuple(latents.shape) != shape:
                    raise ActionInputError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
                if not bool(torch.isfinite(torch.as_tensor(latents)).all()):
                    raise ActionInputError("latents contains NaN or inf values")
                latents = latents.to(device=device, dtype=dtype)
            latents = latents * self.scheduler.init_noise_sigma

            # 6. Denoising loop.
            step_kwargs = {}
            if "generator" in inspect.signature(self.scheduler.step).parameters:
                step_kwargs["generator"] = generator
            prediction_type = self.scheduler.config.prediction_type
            alphas_cumprod = self.scheduler.alphas_cumprod.to(device)
            with self.progress_bar(total=len(timesteps)) as progress:
                for i, t in enumerate(timesteps):
                    model_in = self.scheduler.scale_model_input(latents, t)  # the VP state x_t
                    model_in2 = torch.cat([model_in, model_in]) if do_cfg else model_in
                    pred = self.denoiser(model_in2, t, context_in, y, anchor=anchor_in, spatial=spatial).sample
                    if do_cfg:
                        pred_null, pred_cond = pred.chunk(2)
                        pred = pred_null + guidance_scale * (pred_cond - pred_null)
                    latents = self.scheduler.step(pred, t, latents, **step_kwargs).prev_sample

                    if callback_on_step_end is not None:
                        x0 = prediction_to_x0(pred, model_in, alphas_cumprod[int(t)], prediction_type)
                        cb_kwargs = {"latents": latents, "prediction": pred}
                        cb_kwargs = {k: cb_kwargs[k] for k in callback_on_step_end_tensor_inputs}
                        cb_kwargs["x0_preview"] = model_to_uint8(self.denoiser.sample_to_frames(x0, context_frames, anchor))
                        ret = callback_on_step_end(self, i, t, cb_kwargs)
                        if ret is not None and "latents" in ret:
                            latents = ret["latents"]
                    progress.update()

            # 7. Decode: pixel space (plus the anchor frame for a residual target), clamped.
            anchor = anchor.to(latents.dtype) if anchor is not None else None
            frames = self.denoiser.sample_to_frames(latents, context_frames.to(latents.dtype), anchor)
        finally:
            for m, mode in zip(modules, was_training):
                m.train(mode)
        self.maybe_free_model_hooks()
        if output_type == "np":
            frames = model_to_uint8(frames)
        else:
            frames = ((frames + 1) / 2).float()
        if not return_dict:
            return (frames,)
        return MultisensoryPipelineOutput(frames=frames)


def load_simulator_config(path: str) -> tuple[SimulatorConfig | None, dict | None]:
    """The :class:`SimulatorConfig` and training summary saved in a pipeline folder (None, None if absent)."""
    file = os.path.join(path, SIMULATOR_CONFIG_FILE)
    if not os.path.isfile(file):
        return None, None
    try:
        with open(file) as f:
            record = json.load(f)
        return SimulatorConfig.from_dict(record["simulator"]), record.get("training")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MMSimError(f"{file}: unreadable simulator config ({e})") from None


__all__ = ["MultisensoryVideoPipeline", "MultisensoryPipelineOutput", "NORMALIZATION_FILE", "MAX_INFERENCE_STEPS",
           "MAX_ACTION_MAGNITUDE",
           "SIMULATOR_CONFIG_FILE",
           "load_simulator_config"]
