"""Named size presets of the simulator: ONE registry, used by the pipeline, training and benchmarks.

* ``mmsim-tiny``  — unit tests: builds and runs in a fraction of a second.
* ``mmsim-cpu``   — the demo/default: one 8-frame 64x64 generation in about a second on 2 CPU cores
  (space-to-depth UNet at 16x16/8x8/4x4, DPM-Solver++ with few steps, small trainable context CNN).
* ``mmsim-paper`` — the paper's sizes at 64x64 (§7.4, Table 5): action encoder with d=1024, a
  pixel-space video backbone of ~252 M parameters, OpenCLIP ViT-H-14 context encoder. Built with
  random weights (loudly warned) when the OpenCLIP weights are not available offline.

``get_preset(name, **overrides)`` returns a validated :class:`SimulatorConfig`; nested parts take dicts,
e.g. ``get_preset("mmsim-cpu", denoiser={"patch_size": 2}, scheduler={"num_inference_steps": 12})``.
:func:`build_components` builds the (untrained) pipeline components of a config.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, fields, replace

from mmsim_core.configuration import apply_overrides, from_dict, nested_update, to_dict
from mmsim_core.errors import MMSimError
from mmsim_core.models.action_encoder import ActionEncoderConfig
from mmsim_core.models.action_warp import ActionWarp, ActionWarpConfig
from mmsim_core.models.baselines import action_encoder_config, build_action_encoder
from mmsim_core.models.denoiser import DenoiserConfig, VideoDenoiser
from mmsim_core.schema import CONTEXT_FRAMES, FRAME_SIZE, FUTURE_FRAMES, TEXT_KINDS

SIMULATOR_CONFIG_FILE = "simulator_config.json"
"""Where ``save_pretrained`` writes the :class:`SimulatorConfig` (and the training summary) of a pipeline."""
SIMULATOR_CONFIG_FORMAT = "mmsim-simulator-config-v1"
TRAINING_RECIPE_KEYS = ("preset", "data", "split", "modalities", "text_kind", "modality_drop", "max_steps", "batch_size",
                        "grad_accum", "lr", "betas", "weight_decay", "warmup_steps", "ema_decay", "ema_every", "seed",
                        "observational_only")
"""The training-run settings a checkpoint records as how it was trained (``simulator_config.json``, "training")."""

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SAMPLERS = ("dpmsolver++", "dpmsolver++_sde", "ddim", "unipc", "euler", "ddpm")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
CONTEXT_ENCODERS = ("small", "openclip")
TEXT_ENCODERS = ("bow", "openclip")


def _check_choice(field_name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{field_name} must be one of {sorted(choices)}, got {value!r}")


@dataclass
class SchedulerConfig:
    """Noise schedule for training and the few-step sampler for inference.

    Default: v-prediction on a cosine schedule (pixel space at 64x64), sampled with UniPC (order 2)
    on "trailing" timesteps (the first step starts at t=T-1, pure noise). ``training/experiments/samplers.py``
    measures the samplers with an exact denoiser: at 6-8 steps UniPC loses the least detail
    (8 steps: -0.8/-0.2/-2.0 dB power in low/mid/high bands vs DPM-Solver++ 2M -1.9/-0.5/-2.1,
    DDIM -2.6/-1.5/-2.8). One step returns the posterior mean: the best MSE/PSNR, and a blur.
    """

    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    sampler: str = "unipc"
    num_inference_steps: int = 8
    timestep_spacing: str = "trailing"
    rescale_betas_zero_snr: bool = False
    sampler_timestep_prob: float = 0.0
    """Fraction of training samples noised at exactly the timesteps the default sampler visits
    (``num_inference_steps``), the rest uniform. A few-step sampler queries the denoiser only there,
    and uniform sampling gives each of them 1/``num_train_timesteps`` of the training signal: at one
    step the output is the t=T-1 prediction alone, and an under-trained one leaks the input noise
    into the frames."""

    def __post_init__(self):
        _check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        _check_choice("sampler", self.sampler, SAMPLERS)
        _check_choice("beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        _check_choice("timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS)
        if self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}")
        if not 0.0 <= self.sampler_timestep_prob <= 1.0:
            raise ValueError(f"sampler_timestep_prob must be in [0, 1], got {self.sampler_timestep_prob}")
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be in [1, {self.num_train_timesteps}], got {self.num_inference_steps}"
            )

    def _common(self) -> dict:
        return dict(
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            prediction_type=self.prediction_type,
            timestep_spacing=self.timestep_spacing,
        )

    def build_train_scheduler(self):
        """DDPM scheduler used by the training forward (``add_noise``, ``get_velocity``)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler(
            **self._common(), clip_sample=False, rescale_betas_zero_snr=self.rescale_betas_zero_snr
        )

    def build_sampler(self):
        """The inference scheduler the pipeline registers (same betas as training)."""
        from diffusers import (
            DDIMScheduler,
            DDPMScheduler,
            DPMSolverMultistepScheduler,
            EulerDiscreteScheduler,
            UniPCMultistepScheduler,
        )

        common = self._common()
        zsnr = self.rescale_betas_zero_snr
        if self.sampler in ("dpmsolver++", "dpmsolver++_sde"):
            algo = "dpmsolver++" if self.sampler == "dpmsolver++" else "sde-dpmsolver++"
            return DPMSolverMultistepScheduler(
                **common, algorithm_type=algo, solver_order=2, lower_order_final=True,
                final_sigmas_type="zero", rescale_betas_zero_snr=zsnr,
            )  # fmt: skip
        if self.sampler == "ddim":
            return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True, rescale_betas_zero_snr=zsnr)
        if self.sampler == "unipc":
            return UniPCMultistepScheduler(**common, solver_order=2, rescale_betas_zero_snr=zsnr)
        if self.sampler == "euler":
            return EulerDiscreteScheduler(**common, rescale_betas_zero_snr=zsnr)
        return DDPMScheduler(**common, clip_sample=False, rescale_betas_zero_snr=zsnr)


@dataclass
class LossWeights:
    """L = diffusion·L_diff + ssl·L_ssl + norm·L_norm (paper §2.3: 10, 1, 0.1), plus the action warp's own
    losses (ours; zero without one): motion·L_motion (photometric, the warped anchor) and placement·L_place
    (a hand placement map placed by body pose)."""

    diffusion: float = 10.0
    ssl: float = 1.0
    norm: float = 0.1
    motion: float = 10.0
    placement: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"loss weight {f.name} must be >= 0, got {getattr(self, f.name)}")


@dataclass
class SimulatorConfig:
    """Everything that defines a simulator: component sizes, schedule, losses, clip geometry."""

    name: str = "custom"
    sample_size: int = FRAME_SIZE
    context_frames: int = CONTEXT_FRAMES
    future_frames: int = FUTURE_FRAMES
    action_encoder: ActionEncoderConfig = field(default_factory=ActionEncoderConfig)
    feature_extractor: str = "multisensory"
    """Which action feature extractor conditions the denoiser: ours ("multisensory") or a paper Table 2
    baseline ("mutex", "imagebind", "languagebind", "signal_agnostic"; ``models/baselines.py``). Each has its
    own typed ``action_encoder`` config, sharing our encoder's sizes."""
    action_warp: ActionWarpConfig | None = None
    """The optional action warp component (ours, ``models/action_warp/``): ego-motion anchor and hand map.
    None = the paper's conditioning only."""
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    context_encoder: str = "small"
    """"small": trainable CNN (offline default); "openclip": frozen OpenCLIP image tower."""
    context_encoder_kwargs: dict = field(default_factory=dict)
    """Extra constructor arguments of the context encoder (e.g. ``width`` or ``model_name``/``pretrained``)."""
    text_encoder: str | None = None
    """None (no text), "bow" (hashed bag of words, trainable) or "openclip"."""
    text_encoder_kwargs: dict = field(default_factory=dict)
    text_kind: str | None = None
    """Which text of a clip to condition on in training ("verb" | "phrase" | "sentence"), None = none."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    condition_drop_prob: float = 0.1
    """Probability of dropping ALL actions (and text) of a training sample: trains the null
    condition used by classifier-free guidance and the 'actions dropped' baseline."""

    def __post_init__(self):
        # Plain dicts for the nested parts (JSON round trips, overrides) become their typed configs.
        self.action_encoder = action_encoder_config(self.feature_extractor, self.action_encoder)
        for name, config_class in (("denoiser", DenoiserConfig), ("scheduler", SchedulerConfig),
                                   ("loss_weights", LossWeights), ("action_warp", ActionWarpConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, from_dict(config_class, value, name))
        _check_choice("context_encoder", self.context_encoder, CONTEXT_ENCODERS)
        if self.text_encoder is not None:
            _check_choice("text_encoder", self.text_encoder, TEXT_ENCODERS)
        if self.text_kind is not None:
            _check_choice("text_kind", self.text_kind, TEXT_KINDS)
            if self.text_encoder is None:
                raise ValueError(f"text_kind={self.text_kind!r} needs a text_encoder ('bow' or 'openclip')")
        if not 0.0 <= self.condition_drop_prob < 1.0:
            raise ValueError(f"condition_drop_prob must be in [0, 1), got {self.condition_drop_prob}")
        if self.context_frames < 1 or self.future_frames < 1:
            raise ValueError("context_frames and future_frames must be >= 1")
        if self.text_encoder is not None and self.action_encoder.text_dim is None:
            raise ValueError("text_encoder is set but action_encoder.text_dim is None (the text expert's input size)")
        # One source of truth for the clip geometry, the modalities and the feature size d: the parts follow it.
        self.action_encoder = replace(self.action_encoder, num_steps=self.num_steps)
        if self.action_warp is not None:
            self.action_warp = replace(self.action_warp, modalities=self.action_encoder.modalities,
                                       context_steps=self.context_frames, sample_size=self.sample_size)
            if self.action_warp.builds_anything and self.denoiser.target != "warped_residual":
                raise ValueError(
                    "action_warp moves the last context frame into the anchor of a warped residual: it needs "
                    f"denoiser.target='warped_residual', got {self.denoiser.target!r} (or set action_warp to null)"
                )
        warp = self.action_warp if self.action_warp is not None and self.action_warp.builds_anything else None
        self.denoiser = replace(
            self.denoiser,
            context_frames=self.context_frames,
            num_frames=self.future_frames,
            sample_size=self.sample_size,
            cross_attention_dim=self.action_encoder.feature_dim,
            spatial_channels=warp.spatial_channels if warp is not None else 0,
        )

    @property
    def num_steps(self) -> int:
        return self.context_frames + self.future_frames

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SimulatorConfig":
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------
def _tiny() -> SimulatorConfig:
    return SimulatorConfig(
        name="mmsim-tiny",
        action_encoder=ActionEncoderConfig(
            feature_dim=32, expert_hidden=16, expert_layers=4, projection_dims=(32, 32), expert_dropout=0.0,
        ),
        action_warp=ActionWarpConfig(ego_motion_from=("body_pose",), ego_motion_hidden=32),
        denoiser=DenoiserConfig(
            patch_size=4, block_channels=(32, 64), attention_levels=(False, True),
            attention_head_dim=16, cond_tokens=2, norm_groups=8, ff_mult=2, target="warped_residual",
        ),  # fmt: skip
        context_encoder="small",
        context_encoder_kwargs={"width": 8, "depth": 3},
        scheduler=SchedulerConfig(num_inference_steps=2),
    )


def _cpu() -> SimulatorConfig:
    return SimulatorConfig(
        name="mmsim-cpu",
        action_encoder=ActionEncoderConfig(
            feature_dim=256, expert_hidden=128, expert_layers=4, projection_dims=(256, 256),
        ),
        action_warp=ActionWarpConfig(ego_motion_from=("body_pose",)),
        denoiser=DenoiserConfig(
            patch_size=4, block_channels=(64, 128, 192), attention_levels=(True, True, True),
            attention_head_dim=32, cond_tokens=4, ff_mult=2, target="warped_residual",
        ),  # fmt: skip
        context_encoder="small",
        context_encoder_kwargs={"width": 32, "depth": 4},
        scheduler=SchedulerConfig(num_inference_steps=8),
    )


def _paper() -> SimulatorConfig:
    return SimulatorConfig(
        name="mmsim-paper",
        # Paper §7.4: experts 4-layer MLP hidden/out 128, projection [in, 512, 768, 1024], d = 1024.
        action_encoder=ActionEncoderConfig(
            feature_dim=1024, expert_hidden=128, expert_layers=4, projection_dims=(512, 768)
        ),
        # Pixel space (patch 1) like the paper's modified I2VGen; sized to ~252 M parameters
        # (Table 5: video model 252,380,168). Attention only at 16x16 and 8x8.
        denoiser=DenoiserConfig(
            patch_size=1, block_channels=(192, 320, 576, 640), attention_levels=(False, False, True, True),
            layers_per_block=2, attention_head_dim=64, cond_tokens=4, ff_mult=4,
        ),  # fmt: skip
        context_encoder="openclip",
        context_encoder_kwargs={"model_name": "ViT-H-14", "pretrained": "laion2b_s32b_b79k"},
        scheduler=SchedulerConfig(num_inference_steps=25),
    )


PRESETS = {"mmsim-tiny": _tiny, "mmsim-cpu": _cpu, "mmsim-paper": _paper}


def get_preset(name: str, **overrides) -> SimulatorConfig:
    """The named preset's :class:`SimulatorConfig`, with ``overrides`` applied and validated."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    cfg = PRESETS[name]()
    if overrides:
        overrides = copy.deepcopy(overrides)
        if "feature_extractor" in overrides:  # with its action_encoder overrides: they meet its typed config
            encoder = nested_update(to_dict(cfg.action_encoder), overrides.pop("action_encoder", {}))
            cfg = replace(cfg, feature_extractor=overrides.pop("feature_extractor"), action_encoder=encoder)
        cfg = apply_overrides(cfg, overrides, "model")
    return cfg


def list_presets() -> list[str]:
    return sorted(PRESETS)


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
    """{denoiser, action_encoder, action_warp, context_encoder, text_encoder} of a config (random init; the
    optional ones None when the config has none)."""
    warp = cfg.action_warp if cfg.action_warp is not None and cfg.action_warp.builds_anything else None
    return dict(
        denoiser=VideoDenoiser.from_config_object(cfg.denoiser),
        action_encoder=build_action_encoder(cfg.feature_extractor, cfg.action_encoder),
        action_warp=ActionWarp.from_config_object(warp) if warp is not None else None,
        context_encoder=build_context_encoder(cfg),
        text_encoder=build_text_encoder(cfg),
    )


__all__ = [
    "LossWeights",
    "build_components",
    "PRESETS",
    "SchedulerConfig",
    "SimulatorConfig",
    "get_preset",
    "list_presets",
]
