"""``GoalConditionedPolicy``: π(X_0, X_T, history) -> the future multisensory actions a[1:T].

    policy = GoalConditionedPolicy(frame_widths=(16, 32, 64, 128), unet_widths=(64, 128, 256))
    future = policy(start, goal, history)          # (B, 3, 64, 64) x2 in [-1, 1], (B, h, 2292) -> (B, F, 2292)
    actions = policy.act(context, goal, history)   # uint8 frames + {name: (B, h, *shape)} -> {name: (B, h+F, *shape)}
    policy.save_pretrained(folder, normalization_stats=stats)
    policy = GoalConditionedPolicy.from_pretrained(folder)

A deterministic regression policy in the action space of :func:`~mmsim_core.policies.common.actions_to_vector`
(2292 normalised numbers per step):

- the start frame X_0 (the last context frame) and the goal frame X_T (the last future frame) go through ONE
  shared :class:`~mmsim_core.policies.common.FrameEncoder`: both are views of the same world from the same
  camera, so one encoder sees twice the frames per update, and its features of start and goal live in one space,
  which makes their difference (what has to change) a meaningful part of the condition;
- the h known history steps are flattened and projected to a vector; condition = [z_0, z_T, z_T - z_0, z_hist];
- a :class:`~mmsim_core.policies.common.TemporalUNet1D` maps the last history action repeated over the F future
  steps to a residual added to that same sequence. Actions are smooth in time, so "keep doing what you did" is
  already a strong guess (most of the 2,048 tactile numbers barely move within a clip); the network only has to
  learn the change, and its output layer starts at zero, so the untrained policy IS that guess and the simulator
  loss starts from actions the simulator has seen, not from noise.

The folder of :meth:`save_pretrained` holds the weights, ``config.json`` and the dataset's ``normalization.json``,
so a policy folder alone turns its normalised output into raw signals (``schema.denormalize``).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from mmsim_core import schema
from mmsim_core.policies.common import (
    FrameEncoder,
    TemporalUNet1D,
    actions_to_vector,
    frames_to_unit,
    vector_to_actions,
)

NORMALIZATION_FILE = "normalization.json"


class GoalConditionedPolicy(ModelMixin, ConfigMixin):
    """Start frame, goal frame and action history -> normalised future action vectors.

    Args:
        context_frames: h, the known history steps (and context frames) per clip.
        future_frames: F, the future steps to predict (divisible by ``2 ** (len(unet_widths) - 1)``).
        action_dim: numbers per step (``schema.ACTION_DIM``).
        frame_widths: channel widths of the frame encoder, one strided residual block each.
        frame_feature_dim: the frame encoder's output size.
        history_dim: size of the projected action history.
        unet_widths: channel widths of the temporal U-Net's levels.
        step_dim: width each 2292-number step is first mapped to inside the U-Net.
        norm_groups: GroupNorm groups.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        context_frames: int = 4,
        future_frames: int = 8,
        action_dim: int = schema.ACTION_DIM,
        frame_widths: Sequence[int] = (32, 64, 128, 256),
        frame_feature_dim: int = 256,
        history_dim: int = 256,
        unet_widths: Sequence[int] = (128, 256, 512),
        step_dim: int = 128,
        norm_groups: int = 8,
    ):
        super().__init__()
        self.frame_encoder = FrameEncoder(tuple(frame_widths), frame_feature_dim, norm_groups)  # shared by X_0, X_T
        self.history_proj = nn.Sequential(
            nn.Linear(context_frames * action_dim, history_dim), nn.Mish(), nn.Linear(history_dim, history_dim))
        cond_dim = 3 * frame_feature_dim + history_dim
        self.unet = TemporalUNet1D(action_dim, action_dim, cond_dim, tuple(unet_widths), step_dim, norm_groups)
        # Zero residual at initialisation: the untrained policy repeats the last history action.
        nn.init.zeros_(self.unet.out.weight)
        nn.init.zeros_(self.unet.out.bias)
        self.normalization_stats: schema.NormalizationStats | None = None
        """The dataset statistics the actions are normalised with (set by training, saved beside the weights)."""

    def forward(self, start: Tensor, goal: Tensor, history: Tensor) -> Tensor:
        """``start`` X_0, ``goal`` X_T: (B, 3, H, W) in [-1, 1]; ``history``: (B, h, action_dim) normalised
        -> future actions (B, F, action_dim) normalised."""
        cfg = self.config
        if history.shape[1:] != (cfg.context_frames, cfg.action_dim):
            raise ValueError(f"history must have shape (B, {cfg.context_frames}, {cfg.action_dim}), "
                             f"got {tuple(history.shape)}")
        z0 = self.frame_encoder(start)  # (B, Df)
        zT = self.frame_encoder(goal)  # (B, Df)
        zh = self.history_proj(history.flatten(1))  # (B, Dh)
        cond = torch.cat([z0, zT, zT - z0, zh], dim=-1)  # (B, 3*Df + Dh)
        hold = history[:, -1:].expand(-1, cfg.future_frames, -1)  # (B, F, A): "keep doing what you did"
        return hold + self.unet(hold, cond)  # (B, F, A)

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, context: np.ndarray | Tensor, goal: np.ndarray | Tensor,
            history: Mapping[str, np.ndarray | Tensor]) -> dict[str, np.ndarray]:
        """uint8 ``context`` (B, h, H, W, 3), uint8 ``goal`` (B, H, W, 3), normalised ``history``
        {name: (B, h, *shape)} for every modality -> {name: float32 (B, h+F, *shape)}: the history copied in,
        the F future steps predicted. Directly the ``actions`` of the simulator pipeline (and, after
        ``schema.denormalize``, of the oracle)."""
        cfg = self.config
        context = torch.as_tensor(np.asarray(context) if isinstance(context, np.ndarray) else context)
        goal = torch.as_tensor(np.asarray(goal) if isinstance(goal, np.ndarray) else goal)
        if context.dim() != 5 or context.shape[1] != cfg.context_frames or context.shape[-1] != 3:
            raise ValueError(f"context must be uint8 (B, {cfg.context_frames}, H, W, 3), got {tuple(context.shape)}")
        if goal.dim() != 4 or goal.shape[0] != context.shape[0] or goal.shape[1:] != context.shape[2:]:
            raise ValueError(f"goal must be uint8 (B, H, W, 3) matching the context, got {tuple(goal.shape)}")
        hist = actions_to_vector({k: v for k, v in history.items()})  # (B, h', A)
        if hist.shape[:2] != (context.shape[0], cfg.context_frames):
            raise ValueError(f"history must have (B, {cfg.context_frames}) leading dims = the context's, "
                             f"got {tuple(hist.shape[:2])}")
        was_training = self.training
        self.eval()
        try:
            device, dtype = self.device, self.dtype
            start = frames_to_unit(context[:, -1]).to(device, dtype)  # (B, 3, H, W)
            target = frames_to_unit(goal).to(device, dtype)  # (B, 3, H, W)
            hist = hist.to(device, dtype)
            future = self(start, target, hist)  # (B, F, A)
        finally:
            self.train(was_training)
        full = torch.cat([hist, future], dim=1).float().cpu()  # (B, h+F, A)
        return {k: v.numpy().copy() for k, v in vector_to_actions(full).items()}

    # ------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, normalization_stats: schema.NormalizationStats
                        | None = None, **kwargs):
        """diffusers' weights + ``config.json``, and the dataset statistics as ``normalization.json``."""
        super().save_pretrained(save_directory, **kwargs)
        stats = normalization_stats if normalization_stats is not None else self.normalization_stats
        if stats is not None:
            stats.save(os.path.join(save_directory, NORMALIZATION_FILE))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load a :meth:`save_pretrained` folder; its statistics become ``policy.normalization_stats``."""
        policy = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        stats_file = os.path.join(str(pretrained_model_name_or_path), NORMALIZATION_FILE)
        policy.normalization_stats = schema.NormalizationStats.load(stats_file) if os.path.isfile(stats_file) else None
        return policy


__all__ = ["GoalConditionedPolicy", "NORMALIZATION_FILE"]
