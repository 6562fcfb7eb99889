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

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsim_core.errors import ActionInputError, MMSimError
from mmsim_core.models.action_encoder import MultisensoryActionEncoder
from mmsim_core.models.baselines import build_action_encoder
from mmsim_core.models.ego_motion import photometric_loss
from mmsim_core.models.hand_map import WHERE_FROM, placement_loss
from mmsim_core.models.denoiser import VideoDenoiser
from mmsim_core.presets import LossWeights, SimulatorConfig
from mmsim_core.schema import TEXT_KINDS

TEXT_SLOT = "text"  # the action encoder's mask key for the text expert


# ----------------------------------------------------------------------------------------------
# Building the components of a SimulatorConfig
# ----------------------------------------------------------------------------------------------
def build_context_encoder(cfg: SimulatorConfig):
    d = cfg.action_encoder.feature_dim
    kwargs = dict(cfg.context_encoder_kwargs)
    if cfg.context_encoder == "small":
        from mmsim_core.models.context_encoder import SmallContextEncoder

        if kwargs.setdefault("feature_dim", d) != d:
            raise ValueError(f"context_encoder_kwargs.feature_dim={kwargs['feature_dim']} must equal action_encoder.feature_dim={d}")
        kwargs.setdefault("image_size", cfg.sample_size)
        return SmallContextEncoder(**kwargs)

    from mmsim_core.models.context_encoder import OpenCLIPContextEncoder

    try:
        enc = OpenCLIPContextEncoder(**kwargs)
    except MMSimError as e:
        if kwargs.get("weights", "pretrained") != "pretrained":
            raise
        bar = "!" * 100
        warnings.warn(
            f"\n{bar}\n!! OpenCLIP weights unavailable: {e}\n"
            f"!! Building {kwargs.get('model_name', 'ViT-H-14')} with RANDOM weights. Results of this model are NOT the\n"
            "!! paper's: its context features are meaningless. Provide the weights for real runs.\n" + bar,
            stacklevel=2,
        )
        enc = OpenCLIPContextEncoder(**{**kwargs, "weights": "random"})
    if enc.feature_dim != d:
        raise ValueError(f"the OpenCLIP tower gives {enc.feature_dim}-d features but action_encoder.feature_dim={d}")
    return enc


def build_text_encoder(cfg: SimulatorConfig):
    if cfg.text_encoder is None:
        return None
    from mmsim_core.models import text_encoder as te

    kwargs = dict(cfg.text_encoder_kwargs)
    if cfg.text_encoder == "bow":
        kwargs.setdefault("text_dim", cfg.action_encoder.text_dim)
        return te.BagOfWordsTextEncoder(**kwargs)
    return te.OpenCLIPTextEncoder(**kwargs)


def build_components(cfg: SimulatorConfig) -> dict:
    """{denoiser, action_encoder, context_encoder, text_encoder} of a config (random init)."""
    return dict(
        denoiser=VideoDenoiser.from_config_dataclass(cfg.denoiser),
        action_encoder=build_action_encoder(cfg.feature_extractor, cfg.action_encoder),
        context_encoder=build_context_encoder(cfg),
        text_encoder=build_text_encoder(cfg),
    )


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
    """uint8 (B, N, H, W, 3) -> float32 (B, N, 3, H, W) in [-1, 1]."""
    x = _to_tensor(frames, device)
    if x.dtype != torch.uint8:
        raise ActionInputError(f"frames must be uint8 (B, N, H, W, 3), got {x.dtype}")
    return x.permute(0, 1, 4, 2, 3).float().div(127.5).sub(1.0)


class MultisensorySimulator(nn.Module):
    """The trainable parts of the simulator and its training loss."""

    def __init__(
        self,
        denoiser: VideoDenoiser,
        action_encoder: MultisensoryActionEncoder,
        context_encoder: nn.Module,
        noise_scheduler,
        text_encoder: nn.Module | None = None,
        loss_weights: LossWeights | None = None,
        text_kind: str | None = None,
        condition_drop_prob: float = 0.1,
        sampler=None,
        default_num_inference_steps: int = 8,
        sampler_timestep_prob: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= sampler_timestep_prob <= 1.0:
            raise ValueError(f"sampler_timestep_prob must be in [0, 1], got {sampler_timestep_prob}")
        if sampler_timestep_prob > 0 and sampler is None:
            raise ValueError("sampler_timestep_prob > 0 needs the sampler whose timesteps it trains")
        if text_kind is not None:
            if text_kind not in TEXT_KINDS:
                raise ValueError(f"text_kind must be one of {list(TEXT_KINDS)}, got {text_kind!r}")
            if text_encoder is None:
                raise ValueError(f"text_kind={text_kind!r} needs a text encoder")
        if not 0.0 <= condition_drop_prob < 1.0:
            raise ValueError(f"condition_drop_prob must be in [0, 1), got {condition_drop_prob}")
        self.denoiser = denoiser
        self.action_encoder = action_encoder
        self.context_encoder = context_encoder
        self.text_encoder = text_encoder
        self.noise_scheduler = noise_scheduler
        self.loss_weights = loss_weights or LossWeights()
        self.text_kind = text_kind
        self.condition_drop_prob = condition_drop_prob
        self.sampler = sampler
        self.default_num_inference_steps = default_num_inference_steps
        self.sampler_timestep_prob = sampler_timestep_prob
        sampler_timesteps = torch.zeros(0, dtype=torch.long)
        if sampler_timestep_prob > 0:
            probe = sampler.__class__.from_config(sampler.config)  # leaves the pipeline's sampler untouched
            probe.set_timesteps(default_num_inference_steps)
            sampler_timesteps = torch.as_tensor(probe.timesteps, dtype=torch.long)
        self.register_buffer("sampler_timesteps", sampler_timesteps, persistent=False)
        self.register_buffer(
            "alphas_cumprod", noise_scheduler.alphas_cumprod.detach().clone().float(), persistent=False
        )

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: SimulatorConfig) -> "MultisensorySimulator":
        comps = build_components(cfg)
        return cls(
            **comps,
            noise_scheduler=cfg.scheduler.build_train_scheduler(),
            loss_weights=cfg.loss_weights,
            text_kind=cfg.text_kind,
            condition_drop_prob=cfg.condition_drop_prob,
            sampler=cfg.scheduler.build_sampler(),
            default_num_inference_steps=cfg.scheduler.num_inference_steps,
            sampler_timestep_prob=cfg.scheduler.sampler_timestep_prob,
        )

    @classmethod
    def from_pipeline(cls, pipe, **kwargs) -> "MultisensorySimulator":
        """Train (or fine-tune) a pipeline's components; shares their weights with ``pipe``."""
        from diffusers import DDPMScheduler

        sc = pipe.scheduler.config
        noise_scheduler = DDPMScheduler(
            num_train_timesteps=sc.num_train_timesteps, beta_schedule=sc.beta_schedule,
            prediction_type=sc.prediction_type, trained_betas=sc.get("trained_betas"),
            beta_start=sc.beta_start, beta_end=sc.beta_end, clip_sample=False,
            rescale_betas_zero_snr=sc.get("rescale_betas_zero_snr", False),
        )  # fmt: skip
        kwargs.setdefault("sampler", pipe.scheduler)
        kwargs.setdefault("default_num_inference_steps", pipe.config.default_num_inference_steps)
        return cls(
            denoiser=pipe.denoiser,
            action_encoder=pipe.action_encoder,
            context_encoder=pipe.context_encoder,
            text_encoder=pipe.text_encoder,
            noise_scheduler=noise_scheduler,
            **kwargs,
        )

    def to_pipeline(self, scheduler=None, normalization_stats=None):
        """A :class:`MultisensoryVideoPipeline` sharing these modules (no copy)."""
        from mmsim_core.pipelines import MultisensoryVideoPipeline

        scheduler = scheduler or self.sampler
        if scheduler is None:
            raise ValueError("to_pipeline needs a scheduler (this simulator was built without a sampler)")
        return MultisensoryVideoPipeline(
            denoiser=self.denoiser,
            action_encoder=self.action_encoder,
            context_encoder=self.context_encoder,
            scheduler=scheduler,
            text_encoder=self.text_encoder,
            default_num_inference_steps=self.default_num_inference_steps,
            normalization_stats=normalization_stats,
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
            from mmsim_core.pipelines.multisensory import encode_text

            text_features = encode_text(self.text_encoder, texts, device)
            mask.setdefault(TEXT_SLOT, torch.ones(b, dtype=torch.bool, device=device))
        if self.training and self.condition_drop_prob > 0:
            keep = torch.rand(b, generator=generator, device=device) >= self.condition_drop_prob
            mask = {k: m & keep for k, m in mask.items()}

        enc = self.action_encoder(
            actions, context_features, action_mask=mask or None, text_features=text_features, target_features=feats,
            context_frames=context,
        )
        y = enc.interaction  # (B, T, d)

        # Diffusion loss on the future frames (or their residual from the last context frame, possibly
        # warped by the actions' ego-motion; the warp learns from its own photometric loss).
        ego_motion = getattr(enc, "ego_motion", None)  # (B, F, 2, 3) | None
        hand_flow = getattr(enc, "hand_flow", None)  # (B, F, 3, H, W) | None
        anchor = self.denoiser.anchor(context, ego_motion, hand_flow)  # None | (B, F, 3, H, W)
        if (ego_motion is not None or hand_flow is not None) and self.denoiser.config.target == "warped_residual":
            motion = photometric_loss(anchor, future)
            anchor = anchor.detach()
        else:
            motion = future.new_zeros(())
        # Where the hand map places the hands: self-supervised by what the warp leaves unexplained.
        occupancy = getattr(enc, "hand_occupancy", None)  # (B, F+1, 2, G, G) | None: only a body-pose map has one
        placement = future.new_zeros(())
        if occupancy is not None and anchor is not None and WHERE_FROM in actions:
            placement = placement_loss(occupancy, future, anchor.detach(), mask[WHERE_FROM])
        x0 = self.denoiser.frames_to_sample(future, context, anchor)  # (B, F, 3, H, W)
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        t = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=generator, device=device
        )
        if self.sampler_timestep_prob > 0:
            on_grid = torch.rand(b, generator=generator, device=device) < self.sampler_timestep_prob
            pick = torch.randint(0, len(self.sampler_timesteps), (b,), generator=generator, device=device)
            t = torch.where(on_grid, self.sampler_timesteps[pick], t)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(x0, noise, t)
        else:
            target = x0
        spatial = getattr(enc, "hand_map", None)  # (B, F, 2C, G, G) | None
        pred = self.denoiser(noisy, t, context, y, anchor=anchor, spatial=spatial).sample
        diffusion = F.mse_loss(pred.float(), target.float())

        zero = diffusion.new_zeros(())
        ssl = enc.ssl_loss if enc.ssl_loss is not None else zero
        norm = enc.norm_loss if enc.norm_loss is not None else zero
        w = self.loss_weights
        total = w.diffusion * diffusion + w.ssl * ssl + w.norm * norm + w.motion * motion + w.placement * placement
        return TrainingLosses(total=total, diffusion=diffusion, ssl=ssl, norm=norm, motion=motion, placement=placement)


__all__ = [
    "MultisensorySimulator",
    "TrainingLosses",
    "build_components",
    "build_context_encoder",
    "build_text_encoder",
]

