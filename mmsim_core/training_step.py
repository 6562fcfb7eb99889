"""One training forward of the simulator: ``L = 10·L_diff + 1·L_ssl + 0.1·L_norm`` (paper §2.3).

The training LOOP (optimiser, EMA, accelerate, logging) lives in ``training/``; this module gives it
the model and the loss:

    sim = MultisensorySimulator.from_config(get_preset("mmsim-cpu"))        # or .from_pipeline(pipe)
    losses = sim(batch, generator=g)       # batch from the data engineer's collate_clips
    losses.total.backward()
    pipe = sim.to_pipeline()               # shares the weights, for previews / save_pretrained

Batch format: ``{"context": uint8 (B,h,H,W,3), "future": uint8 (B,F,H,W,3),
"actions": {name: float32 (B,T,*shape)}, "action_mask": {name: bool (B,)},
"text": {"verb"|"phrase"|"sentence": list[str]}}`` (numpy arrays or tensors).
Guidance and samplers stay out of this forward: training only needs the noise schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsim_core.errors import ActionInputError
from mmsim_core.models.action_encoder import MultisensoryActionEncoder
from mmsim_core.models.action_warp import ActionWarp
from mmsim_core.models.action_warp.ego_motion import photometric_loss
from mmsim_core.models.action_warp.hand_map import WHERE_FROM, placement_loss
from mmsim_core.models.denoiser import VideoDenoiser
from mmsim_core.pipelines.multisensory import MultisensoryVideoPipeline, encode_text, uint8_to_model
from mmsim_core.presets import LossWeights, SimulatorConfig, build_components

TEXT_SLOT = "text"  # the action encoder's mask key for the text expert


# ----------------------------------------------------------------------------------------------
# The training forward
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainingLosses:
    total: Tensor
    """weights.diffusion·diffusion + weights.ssl·ssl + weights.norm·norm + weights.motion·motion
    (what to backpropagate)."""
    diffusion: Tensor
    ssl: Tensor
    norm: Tensor
    motion: Tensor
    """Photometric loss of the ego-motion warp (zero unless the denoiser's target is a warped residual)."""
    placement: Tensor
    """Self-supervised placement loss of the hand map's occupancy (zero without a map placed by body pose)."""

    def as_floats(self) -> dict[str, float]:
        keys = ("total", "diffusion", "ssl", "norm", "motion", "placement")
        return {k: float(getattr(self, k).detach()) for k in keys}


def _to_tensor(x, device) -> Tensor:
    return (x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))).to(device)


def frames_to_model(frames, device) -> Tensor:
    """uint8 (B, N, H, W, 3) -> float32 (B, N, 3, H, W) in [-1, 1], on ``device``."""
    x = _to_tensor(frames, device)
    if x.dtype != torch.uint8:
        raise ActionInputError(f"frames must be uint8 (B, N, H, W, 3), got {x.dtype}")
    return uint8_to_model(x)


class MultisensorySimulator(nn.Module):
    """The trainable parts of the simulator and its training loss. ``config`` is the
    :class:`~mmsim_core.presets.SimulatorConfig` it was built from; it travels with :meth:`to_pipeline` into
    the saved checkpoint (text kind, loss weights, condition dropout)."""

    def __init__(
        self,
        config: SimulatorConfig,
        denoiser: VideoDenoiser,
        action_encoder: MultisensoryActionEncoder,
        context_encoder: nn.Module,
        noise_scheduler,
        sampler,
        text_encoder: nn.Module | None = None,
        action_warp: ActionWarp | None = None,
        default_num_inference_steps: int | None = None,
    ):
        super().__init__()
        self.config = config
        self.denoiser = denoiser
        self.action_encoder = action_encoder
        self.action_warp = action_warp
        self.context_encoder = context_encoder
        self.text_encoder = text_encoder
        self.noise_scheduler = noise_scheduler
        self.sampler = sampler
        self.default_num_inference_steps = int(default_num_inference_steps or config.scheduler.num_inference_steps)
        sampler_timesteps = torch.zeros(0, dtype=torch.long)
        if config.scheduler.sampler_timestep_prob > 0:
            probe = sampler.__class__.from_config(sampler.config)  # leaves the pipeline's sampler untouched
            probe.set_timesteps(self.default_num_inference_steps)
            sampler_timesteps = torch.as_tensor(probe.timesteps, dtype=torch.long)
        self.register_buffer("sampler_timesteps", sampler_timesteps, persistent=False)
        self.register_buffer(
            "alphas_cumprod", noise_scheduler.alphas_cumprod.detach().clone().float(), persistent=False
        )

    @property
    def loss_weights(self) -> LossWeights:
        return self.config.loss_weights

    @property
    def text_kind(self) -> str | None:
        return self.config.text_kind

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: SimulatorConfig) -> "MultisensorySimulator":
        return cls(cfg, **build_components(cfg), noise_scheduler=cfg.scheduler.build_train_scheduler(),
                   sampler=cfg.scheduler.build_sampler())

    @classmethod
    def from_pipeline(cls, pipe: MultisensoryVideoPipeline, config: SimulatorConfig | None = None) -> "MultisensorySimulator":
        """Train (or fine-tune) a pipeline's components; shares their weights with ``pipe``. ``config`` defaults
        to the one saved with the pipeline."""
        config = config or pipe.simulator_config
        if config is None:
            raise ValueError("this pipeline carries no simulator config; pass config= (a SimulatorConfig)")
        return cls(config, denoiser=pipe.denoiser, action_encoder=pipe.action_encoder, action_warp=pipe.action_warp,
                   context_encoder=pipe.context_encoder, text_encoder=pipe.text_encoder,
                   noise_scheduler=config.scheduler.build_train_scheduler(), sampler=pipe.scheduler,
                   default_num_inference_steps=pipe.config.default_num_inference_steps)

    def to_pipeline(self, scheduler=None, normalization_stats=None, training_recipe: dict | None = None):
        """A :class:`MultisensoryVideoPipeline` sharing these modules (no copy), carrying this config (and,
        when given, a summary of how it was trained) for ``save_pretrained``."""
        return MultisensoryVideoPipeline(
            denoiser=self.denoiser,
            action_encoder=self.action_encoder,
            action_warp=self.action_warp,
            context_encoder=self.context_encoder,
            scheduler=scheduler or self.sampler,
            text_encoder=self.text_encoder,
            default_num_inference_steps=self.default_num_inference_steps,
            normalization_stats=normalization_stats,
            simulator_config=self.config,
            training_recipe=training_recipe,
        )

    @property
    def prediction_type(self) -> str:
        return self.noise_scheduler.config.prediction_type

    # ------------------------------------------------------------------------------------------
    def forward(self, batch: Mapping, generator: torch.Generator | None = None) -> TrainingLosses:
        device = next(self.denoiser.parameters()).device
        h, f = self.denoiser.config.context_frames, self.denoiser.config.num_frames

        # Frames: context x_{0:h} and the target future x_{h:T}, both (B, N, 3, H, W) in [-1, 1].
        context = frames_to_model(batch["context"], device)
        future = frames_to_model(batch["future"], device)
        b = context.shape[0]
        if context.shape[1] != h or future.shape[1] != f:
            raise ActionInputError(
                f"batch must have {h} context and {f} future frames, got {context.shape[1]} and {future.shape[1]}"
            )

        # z_x of all T frames: the first h condition the actions, all T supervise L_norm
        # (the action encoder detaches the targets).
        feats = self.context_encoder.encode(torch.cat([context, future], dim=1))  # (B, T, d)
        context_features = feats[:, :h]

        # Actions and which are present; condition dropout removes ALL of a sample's conditions,
        # which trains the null embedding used by classifier-free guidance.
        actions = {k: _to_tensor(v, device).float() for k, v in batch["actions"].items()}
        mask = {k: _to_tensor(v, device).bool() for k, v in (batch.get("action_mask") or {}).items()}
        for k in actions:
            mask.setdefault(k, torch.ones(b, dtype=torch.bool, device=device))
        text_features = None
        if self.text_kind is not None:
            texts = batch["text"][self.text_kind]
            text_features = encode_text(self.text_encoder, texts, device)
            mask.setdefault(TEXT_SLOT, torch.ones(b, dtype=torch.bool, device=device))
        if self.training and self.config.condition_drop_prob > 0:
            keep = torch.rand(b, generator=generator, device=device) >= self.config.condition_drop_prob
            mask = {k: m & keep for k, m in mask.items()}

        enc = self.action_encoder(
            actions, context_features, action_mask=mask or None, text_features=text_features, target_features=feats,
        )
        y = enc.interaction  # (B, T, d)

        # The action warp (ours, optional): the anchor the residual is measured from, trained by its own
        # photometric loss (the denoiser sees it detached), and the hand map placed by its placement loss.
        warp = self.action_warp(actions, mask, b, h + f, context) if self.action_warp is not None else None
        anchor = warp.anchor if warp is not None and warp.anchor is not None else self.denoiser.anchor(context)
        motion = placement = future.new_zeros(())
        if warp is not None and warp.anchor is not None:
            motion = photometric_loss(anchor, future)
            anchor = anchor.detach()
        if warp is not None and warp.hand_occupancy is not None and anchor is not None and WHERE_FROM in actions:
            placement = placement_loss(warp.hand_occupancy, future, anchor, mask[WHERE_FROM])
        spatial = warp.spatial if warp is not None else None  # (B, F, C, G, G) | None

        # Diffusion loss on the future frames (or their residual from the anchor).
        x0 = self.denoiser.frames_to_sample(future, context, anchor)  # (B, F, 3, H, W)
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        t = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=generator, device=device
        )
        if self.config.scheduler.sampler_timestep_prob > 0:
            on_grid = torch.rand(b, generator=generator, device=device) < self.config.scheduler.sampler_timestep_prob
            pick = torch.randint(0, len(self.sampler_timesteps), (b,), generator=generator, device=device)
            t = torch.where(on_grid, self.sampler_timesteps[pick], t)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(x0, noise, t)
        else:
            target = x0
        pred = self.denoiser(noisy, t, context, y, anchor=anchor, spatial=spatial).sample
        diffusion = F.mse_loss(pred.float(), target.float())

        zero = diffusion.new_zeros(())
        ssl = enc.ssl_loss if enc.ssl_loss is not None else zero
        norm = enc.norm_loss if enc.norm_loss is not None else zero
        w = self.loss_weights
        total = w.diffusion * diffusion + w.ssl * ssl + w.norm * norm + w.motion * motion + w.placement * placement
        return TrainingLosses(total=total, diffusion=diffusion, ssl=ssl, norm=norm, motion=motion, placement=placement)


__all__ = ["MultisensorySimulator", "TrainingLosses"]

