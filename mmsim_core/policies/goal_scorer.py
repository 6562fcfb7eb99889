"""``OutcomeGoalScorer``: does this end frame show the goal's outcome? A small classifier the planner ranks
simulated roll-outs with.

    model = OutcomeGoalScorer()
    logits = model(start, end, goal)       # (B, 3, 64, 64) x3 in [-1, 1] -> (B,) logit of "same outcome"
    model.save_pretrained(folder); model = OutcomeGoalScorer.from_pretrained(folder)

A whole-frame embedding ranks end frames by how much they look like the goal frame overall, and in an egocentric
video that is mostly where the camera points. Whether the goal is reached (the plate is held, the jar is open, the
pan is clean) shows in a few pixels. This model is trained on exactly that question: given the clip's start
frame, a candidate end frame and the goal frame, is the candidate's task outcome the goal's? Its training pairs
come from the simulator's own roll-outs of proposed actions, labelled by the synthetic world's oracle
(``mmsim scorer train``), so it learns to read outcomes the way the simulator draws them.

The three frames are stacked on the channel axis with the end-minus-goal difference (12 channels) and go through
one :class:`~mmsim_core.policies.common.FrameEncoder`: stacking keeps them pixel-aligned, so the network compares
the same image region across frames instead of comparing pooled summaries.
"""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from mmsim_core.policies.common import FrameEncoder


class OutcomeGoalScorer(ModelMixin, ConfigMixin):
    """(start, end, goal) frames -> the logit that the end frame's task outcome equals the goal frame's.

    Args:
        frame_widths: channel widths of the encoder, one strided residual block each.
        feature_dim: the encoder's output size.
        hidden_dim: width of the classification head.
        norm_groups: GroupNorm groups.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, frame_widths: Sequence[int] = (32, 64, 128, 128), feature_dim: int = 128,
                 hidden_dim: int = 128, norm_groups: int = 8):
        super().__init__()
        self.encoder = FrameEncoder(tuple(frame_widths), feature_dim, norm_groups, in_channels=12)
        self.head = nn.Sequential(nn.Mish(), nn.Linear(feature_dim, hidden_dim), nn.Mish(), nn.Linear(hidden_dim, 1))

    def forward(self, start: Tensor, end: Tensor, goal: Tensor) -> Tensor:
        """``start``, ``end``, ``goal``: (B, 3, H, W) in [-1, 1] -> logits (B,)."""
        if not (start.shape == end.shape == goal.shape) or start.dim() != 4 or start.shape[1] != 3:
            raise ValueError(f"start, end and goal must be (B, 3, H, W) alike, got {tuple(start.shape)}, "
                             f"{tuple(end.shape)}, {tuple(goal.shape)}")
        x = torch.cat([start, end, goal, end - goal], dim=1)  # (B, 12, H, W)
        return self.head(self.encoder(x)).squeeze(-1)  # (B,)


__all__ = ["OutcomeGoalScorer"]
