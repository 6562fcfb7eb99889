"""The action proposer: a diffusion model over multisensory action trajectories, and its pipeline.

    prop = ActionProposalPipeline.from_pretrained(folder)            # or ActionProposalPipeline.untrained(stats)
    out = prop(context=ctx,          # uint8 (B, 4, 64, 64, 3)
               history=hist,         # {name: float32 (B, 4, *shape)} normalised, all four modalities
               text=None,            # optional list[str] of B goals ("slice a cucumber")
               goal=None,            # optional uint8 (B, 64, 64, 3) goal frame
               num_samples=K, num_inference_steps=None, generator=None)
    out.actions                      # {name: np.float32 (B, K, 12, *shape)} normalised; steps 0..3 = history

A planner asks the proposer for K candidate futures of the actions, rolls each out with the simulator and
keeps the one whose simulated end frame is closest to the goal. The proposer is a diffusion-policy denoiser
(:class:`ActionProposer`) over the F = 8 future steps of the 2292-number action vector
(:func:`~mmsim_core.policies.common.actions_to_vector`), conditioned on the observation (the last context
frame, or all of them), the h = 4 known history steps, and optionally a text goal and a goal frame. Both goals
are replaced by learned null embeddings at random during training, so either may be left out when sampling.

The diffused variable is the change of each future step from the last history step (normalised units): the
first thing training teaches is "keep doing what the hands were doing" rather than the dataset's mean pose, so
even an undertrained proposer's trajectory joins its history without a jump.
"""

from __future__ import annotations

import inspect

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor, nn

from mmsim_core import schema
from mmsim_core.errors import ActionInputError, MMSimError
from mmsim_core.models.text_encoder import BagOfWordsTextEncoder
from mmsim_core.policies.common import (
    FrameEncoder,
    TemporalUNet1D,
    actions_to_vector,
    frames_to_unit,
    timestep_embedding,
    vector_to_actions,
)

NORMALIZATION_FILE = "normalization.json"
DEFAULT_INFERENCE_STEPS = 10
"""DDIM steps per proposal: diffusion policy's 100 training timesteps sampled in 10 steps."""


def valid_range(name: str) -> tuple[float, float]:
    """The normalised range a proposed ``name`` is clipped to: [0, 1], i.e. the fixed clip range of a
    ``fixed_clip`` modality (tactile) and the training split's min..max of a ``minmax`` one. Raw values inside
    it are ones the dataset holds (so the world renders them: ``synth.world.check_actions`` never clips);
    a proposal beyond what any recording did is an extrapolation the simulator never saw."""
    schema.check_modality_names([name])
    return 0.0, 1.0


def make_training_scheduler(num_train_timesteps: int = 100, prediction_type: str = "sample") -> DDPMScheduler:
    """The noise schedule the proposer is trained with (``add_noise``): squared-cosine betas, as diffusion policy."""
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type=prediction_type, clip_sample=False)


def make_sampling_scheduler(training: DDPMScheduler) -> DDIMScheduler:
    """A deterministic few-step sampler on the training schedule."""
    return DDIMScheduler.from_config(training.config, clip_sample=False, set_alpha_to_one=True)


# ----------------------------------------------------------------------------------------------
# The denoiser
# ----------------------------------------------------------------------------------------------
class ActionProposer(ModelMixin, ConfigMixin):
    """x0- (or ε-) predictor over the future action sequence ``(B, F, ACTION_DIM)``.

    x0 by default: the U-Net maps each step's 2292 numbers to ``step_dim`` channels, so it cannot carry 2292
    independent noise values through to an ε output (its ε loss stalls near 1), while the clean change of the
    actions is low-dimensional (fingers, taxels and muscles move together) and passes through.

    Condition (one vector per sample, FiLM into every block of a :class:`TemporalUNet1D`): the diffusion
    timestep, ``context_frames`` context frames (the last one by default) through a shared
    :class:`FrameEncoder`, the ``history`` known action steps (each step projected, then flattened), the text
    goal through a :class:`BagOfWordsTextEncoder` trained with the proposer, and the goal frame through the same
    frame encoder as the context (so "where I am" and "where I want to be" live in one feature space).
    A missing text or goal frame is its learned null embedding."""

    @register_to_config
    def __init__(
        self,
        horizon: int = schema.FUTURE_FRAMES,
        history: int = schema.CONTEXT_FRAMES,
        action_dim: int = schema.ACTION_DIM,
        context_frames: int = 1,
        frame_widths: Sequence[int] = (16, 32, 64, 128),
        frame_dim: int = 128,
        history_step_dim: int = 32,
        text_dim: int = 64,
        text_buckets: int = 4096,
        time_dim: int = 64,
        cond_dim: int = 256,
        unet_widths: Sequence[int] = (64, 128, 256),
        step_dim: int = 64,
        groups: int = 8,
        prediction_type: str = "sample",
        num_train_timesteps: int = 100,
    ):
        super().__init__()
        if prediction_type not in ("epsilon", "sample"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'sample', got {prediction_type!r}")
        if not 1 <= context_frames <= history:
            raise ValueError(f"context_frames must be in [1, {history}], got {context_frames}")
        self.frame_encoder = FrameEncoder(frame_widths, frame_dim, groups)
        self.history_proj = nn.Linear(action_dim, history_step_dim)  # per step: 2292 numbers -> history_step_dim
        self.text_encoder = BagOfWordsTextEncoder(text_dim, text_buckets)
        self.null_text = nn.Parameter(torch.zeros(text_dim))
        self.null_goal = nn.Parameter(torch.zeros(frame_dim))
        obs_dim = context_frames * frame_dim + history * history_step_dim + text_dim + frame_dim
        self.obs_mlp = nn.Sequential(nn.Linear(obs_dim, cond_dim), nn.Mish(), nn.Linear(cond_dim, cond_dim))
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, cond_dim), nn.Mish(), nn.Linear(cond_dim, cond_dim))
        self.unet = TemporalUNet1D(action_dim, action_dim, cond_dim, unet_widths, step_dim, groups)

    def encode_observation(self, context: Tensor, history: Tensor, text: Sequence[str] | None = None,
                           goal: Tensor | None = None, drop_text: Tensor | None = None,
                           drop_goal: Tensor | None = None) -> Tensor:
        """Everything but the timestep -> ``(B, cond_dim)``; computed once per clip, reused at every step.

        context: ``(B, h, 3, H, W)`` in [-1, 1] (the last ``context_frames`` are used); history: ``(B, h, D)``;
        text: B strings or None; goal: ``(B, 3, H, W)`` in [-1, 1] or None; drop_*: bool ``(B,)``, True puts
        the null embedding in (training's random drop)."""
        B = context.shape[0]
        n = self.config.context_frames
        frames = context[:, -n:].flatten(0, 1).contiguous()  # (B n, 3, H, W)
        z_ctx = self.frame_encoder(frames).reshape(B, -1)  # (B, n frame_dim)
        z_hist = self.history_proj(history).flatten(1)  # (B, h history_step_dim)
        null_t = self.null_text.expand(B, -1)
        z_text = null_t if text is None else self.text_encoder.encode(list(text)).to(z_ctx.dtype)  # (B, text_dim)
        if drop_text is not None:
            z_text = torch.where(drop_text[:, None], null_t, z_text)
        null_g = self.null_goal.expand(B, -1)
        z_goal = null_g if goal is None else self.frame_encoder(goal.contiguous())  # (B, frame_dim)
        if drop_goal is not None:
            z_goal = torch.where(drop_goal[:, None], null_g, z_goal)
        return self.obs_mlp(torch.cat([z_ctx, z_hist, z_text, z_goal], dim=-1))  # (B, cond_dim)

    def forward(self, sample: Tensor, timestep: Tensor | int, observation: Tensor) -> Tensor:
        """Noisy future ``(B, F, D)``, timestep(s), :meth:`encode_observation` ``(B, cond_dim)`` -> ``(B, F, D)``."""
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        cond = observation + self.time_mlp(timestep_embedding(t, self.config.time_dim))  # (B, cond_dim)
        return self.unet(sample, cond)


# ----------------------------------------------------------------------------------------------
# Input checks (shared by the pipeline and the training script)
# ----------------------------------------------------------------------------------------------
def _check_uint8_frames(x, name: str, shape_tail: tuple[int, ...], what: str) -> int:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise ActionInputError(f"{name} must be a uint8 numpy array or torch tensor {what}, got {type(x).__name__}")
    if x.dtype not in (np.uint8, torch.uint8):
        raise ActionInputError(f"{name} must be uint8 RGB in [0, 255] {what}, got dtype {x.dtype}")
    if x.ndim != len(shape_tail) + 1 or tuple(x.shape[1:]) != shape_tail or x.shape[0] < 1:
        raise ActionInputError(f"{name} must have shape {what}, got {tuple(x.shape)}")
    return int(x.shape[0])


def check_history(history, batch: int, steps: int) -> dict[str, np.ndarray]:
    """``{name: (B, h, *shape)}`` normalised, all four modalities, finite -> float32 numpy copies."""
    if not isinstance(history, Mapping):
        raise ActionInputError(f"history must be a dict {{name: float32 (B, {steps}, *shape)}}, "
                               f"got {type(history).__name__}")
    unknown = [n for n in history if n not in schema.MODALITIES]
    if unknown:
        raise ActionInputError(f"history: unknown modality {unknown[0]!r}; "
                               f"must be one of {list(schema.MODALITY_NAMES)}")
    missing = [n for n in schema.MODALITY_NAMES if n not in history]
    if missing:
        raise ActionInputError(f"history needs all four modalities (the proposer acts in all of them); "
                               f"missing {missing}")
    out = {}
    for n in schema.MODALITY_NAMES:
        v = history[n]
        v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        want = (batch, steps, *schema.MODALITIES[n].shape)
        if tuple(v.shape) != want:
            raise ActionInputError(f"history[{n!r}] must have shape {want} = (B, h, *shape), got {tuple(v.shape)}")
        if not np.issubdtype(v.dtype, np.floating):
            raise ActionInputError(f"history[{n!r}] must be float32 (normalised values), got {v.dtype}")
        if not np.isfinite(v).all():
            raise ActionInputError(f"history[{n!r}] contains NaN or inf values")
        out[n] = v.astype(np.float32)
    return out


def clip_to_valid(vector: Tensor) -> Tensor:
    """Clip an action vector ``(..., ACTION_DIM)`` to :func:`valid_range` per modality (a copy)."""
    out = vector.clone()
    parts = vector_to_actions(out)
    for n, part in parts.items():
        lo, hi = valid_range(n)
        part.clamp_(lo, hi)  # views into ``out``
    return out


# ----------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------
@dataclass
class ActionProposalOutput(BaseOutput):
    actions: dict
    """``{name: np.float32 (B, K, h + F, *shape)}`` normalised; steps ``0..h-1`` are the given history."""


class ActionProposalPipeline(DiffusionPipeline):
    """Sample K multisensory action trajectories per clip from context frames, history and an optional goal."""

    model_cpu_offload_seq = "proposer"

    def __init__(self, proposer: ActionProposer, scheduler, default_num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
                 normalization_stats: schema.NormalizationStats | None = None):
        super().__init__()
        self.register_modules(proposer=proposer, scheduler=scheduler)
        self.register_to_config(default_num_inference_steps=int(default_num_inference_steps))
        self.normalization_stats = normalization_stats
        """The dataset's statistics: what turns a proposal into raw signals (``schema.denormalize``)."""

    @classmethod
    def untrained(cls, normalization_stats: schema.NormalizationStats | None = None,
                  default_num_inference_steps: int = DEFAULT_INFERENCE_STEPS, **proposer_config):
        """A pipeline around a freshly initialised :class:`ActionProposer` (``proposer_config`` = its arguments)."""
        proposer = ActionProposer(**proposer_config).eval()
        training = make_training_scheduler(proposer.config.num_train_timesteps, proposer.config.prediction_type)
        return cls(proposer, make_sampling_scheduler(training), default_num_inference_steps, normalization_stats)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """diffusers' folder (model_index.json, proposer/, scheduler/) plus ``normalization.json``."""
        super().save_pretrained(save_directory, **kwargs)
        if self.normalization_stats is not None:
            self.normalization_stats.save(os.path.join(save_directory, NORMALIZATION_FILE))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load a local ``save_pretrained`` folder (safetensors only; never downloads)."""
        path = str(pretrained_model_name_or_path)
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            raise MMSimError(f"{path}: not an action proposer folder (expected model_index.json inside a "
                             "directory; train one with `mmsim proposer train`)")
        from mmsim_core.checkpoint_files import check_weights_folder

        check_weights_folder(os.path.join(path, "proposer"))
        stats_file = os.path.join(path, NORMALIZATION_FILE)
        if "normalization_stats" not in kwargs and os.path.isfile(stats_file):
            kwargs["normalization_stats"] = schema.NormalizationStats.load(stats_file)
        kwargs.setdefault("use_safetensors", True)
        pipe = super().from_pretrained(path, **kwargs)
        pipe.proposer.eval()
        return pipe

    @property
    def history_steps(self) -> int:
        return self.proposer.config.history

    @property
    def horizon(self) -> int:
        return self.proposer.config.horizon

    def check_inputs(self, context, history, text, goal, num_samples, num_inference_steps) -> tuple[int, dict]:
        """Raise :class:`ActionInputError` naming the argument; return the batch size and the checked history."""
        h, s = self.history_steps, schema.FRAME_SIZE
        if context is None:
            raise ActionInputError(f"context is required: uint8 frames of shape (B, {h}, {s}, {s}, 3)")
        batch = _check_uint8_frames(context, "context", (h, s, s, 3), f"(B, {h}, {s}, {s}, 3)")
        hist = check_history(history, batch, h)
        if text is not None:
            if isinstance(text, str) or not isinstance(text, Sequence) or not all(isinstance(t, str) for t in text):
                raise ActionInputError("text must be a list of strings, one goal per clip (or None)")
            if len(text) != batch:
                raise ActionInputError(f"text has {len(text)} strings but context has batch size {batch}")
        if goal is not None:
            n = _check_uint8_frames(goal, "goal", (s, s, 3), f"(B, {s}, {s}, 3)")
            if n != batch:
                raise ActionInputError(f"goal has {n} frames but context has batch size {batch}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ActionInputError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        if num_inference_steps is not None:
            top = int(self.scheduler.config.num_train_timesteps)
            if (isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer))
                    or not 1 <= num_inference_steps <= top):
                raise ActionInputError(f"num_inference_steps must be an integer in [1, {top}], "
                                       f"got {num_inference_steps!r}")
        return batch, hist

    @torch.no_grad()
    def __call__(
        self,
        context: np.ndarray | torch.Tensor,
        history: Mapping[str, np.ndarray | torch.Tensor],
        text: list[str] | None = None,
        goal: np.ndarray | torch.Tensor | None = None,
        num_samples: int = 1,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        eta: float = 0.0,
        return_dict: bool = True,
    ) -> ActionProposalOutput | tuple:
        """Propose ``num_samples`` action trajectories per clip.

        Args:
            context: uint8 ``(B, h, H, W, 3)`` context frames.
            history: ``{name: float32 (B, h, *shape)}`` normalised actions of the context steps, all four modalities.
            text: optional B goal phrases; None = the null text embedding.
            goal: optional uint8 ``(B, H, W, 3)`` goal frames; None = the null goal embedding.
            num_samples: K trajectories per clip (independent noise draws).
            num_inference_steps: sampler steps (default ``config.default_num_inference_steps``).
            generator: torch generator(s) for the initial noise (a list: one per clip x sample, B*K of them).
            eta: DDIM's stochasticity, 0 (deterministic given the initial noise, the default) to 1 (DDPM-like fresh
                noise at every step: more varied proposals). Only for schedulers whose ``step`` takes ``eta``.
        Returns:
            ``out.actions``: ``{name: np.float32 (B, K, h + F, *shape)}``, history copied into the first h steps,
            the future clipped to :func:`valid_range`.
        """
        # 1. Validate inputs.
        batch, hist = self.check_inputs(context, history, text, goal, num_samples, num_inference_steps)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise ActionInputError(f"eta must be a number in [0, 1], got {eta!r}")
        if eta and "eta" not in inspect.signature(self.scheduler.step).parameters:
            raise ActionInputError(f"eta needs a DDIM-type scheduler; this proposer samples with "
                                   f"{type(self.scheduler).__name__}")
        steps = int(num_inference_steps or self.config.default_num_inference_steps)
        device, dtype = self._execution_device, self.proposer.dtype
        K, F_, D = int(num_samples), self.horizon, self.proposer.config.action_dim
        was_training = self.proposer.training
        self.proposer.eval()
        try:
            # 2. Encode the observation once per clip, then repeat it for the K samples: (B K, cond_dim).
            ctx = frames_to_unit(context).to(device, dtype)  # (B, h, 3, H, W)
            hist_vec = actions_to_vector(hist).to(device, dtype)  # (B, h, D)
            goal_in = frames_to_unit(goal).to(device, dtype) if goal is not None else None  # (B, 3, H, W)
            obs = self.proposer.encode_observation(ctx, hist_vec, text, goal_in)
            obs = obs.repeat_interleave(K, dim=0)  # (B K, cond_dim), clip-major

            # 3. The initial noise (B K, F, D).
            self.scheduler.set_timesteps(steps, device=device)
            sample = randn_tensor((batch * K, F_, D), generator=generator, device=device, dtype=dtype)
            sample = sample * self.scheduler.init_noise_sigma

            # 4. Denoising loop (with eta > 0, DDIM draws fresh noise from the same generator at every step).
            step_kwargs = {}
            if eta:
                step_kwargs = {"eta": float(eta), "generator": generator}
            with self.progress_bar(total=len(self.scheduler.timesteps)) as progress:
                for t in self.scheduler.timesteps:
                    model_in = self.scheduler.scale_model_input(sample, t)
                    pred = self.proposer(model_in, t, obs)
                    sample = self.scheduler.step(pred, t, sample, **step_kwargs).prev_sample
                    progress.update()

            # 5. The change from the last history step -> actions, clipped into the valid ranges; history in front.
            last = hist_vec[:, -1:].repeat_interleave(K, dim=0)  # (B K, 1, D)
            future = clip_to_valid(last + sample.float())  # (B K, F, D)
            full = torch.cat([hist_vec.float().repeat_interleave(K, dim=0), future], dim=1)  # (B K, h+F, D)
        finally:
            self.proposer.train(was_training)
        self.maybe_free_model_hooks()
        full = full.reshape(batch, K, *full.shape[1:])
        actions = {n: v.cpu().numpy().astype(np.float32) for n, v in vector_to_actions(full).items()}
        for n in actions:  # the history exactly as given (no float round trip through the model's dtype)
            actions[n][:, :, : self.history_steps] = hist[n][:, None]
        if not return_dict:
            return (actions,)
        return ActionProposalOutput(actions=actions)


def proposer_loss(proposer: ActionProposer, noise_scheduler: DDPMScheduler, context: Tensor, actions: Tensor,
                  text: Sequence[str] | None, goal: Tensor | None, drop_text: Tensor | None, drop_goal: Tensor | None,
                  generator: torch.Generator | None = None) -> Tensor:
    """The denoising loss of one batch (mean squared error on ε or x0).

    context ``(B, h, 3, H, W)`` in [-1, 1]; actions ``(B, h + F, D)`` normalised; goal ``(B, 3, H, W)`` or None."""
    h = proposer.config.history
    history, future = actions[:, :h], actions[:, h:]  # (B, h, D), (B, F, D)
    x0 = future - history[:, -1:]  # the diffused variable: change from the last known step
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator,
                      device=x0.device)
    noisy = noise_scheduler.add_noise(x0, noise, t)  # (B, F, D)
    obs = proposer.encode_observation(context, history, text, goal, drop_text, drop_goal)
    pred = proposer(noisy, t, obs)
    target = noise if proposer.config.prediction_type == "epsilon" else x0
    return F.mse_loss(pred, target)
