"""Downstream uses of the simulator: a goal-conditioned policy, an action proposer, and goal scorers."""

from mmsim_core.policies.common import (
    FrameEncoder,
    TemporalUNet1D,
    actions_to_vector,
    modality_slices,
    vector_to_actions,
)

__all__ = ["FrameEncoder", "TemporalUNet1D", "actions_to_vector", "vector_to_actions", "modality_slices"]
