"""Context-aware latent interaction (paper §2.2, §7.4).

The context vector for step t is the feature of the context frame at that step for the h history
steps, and the mean context feature ``z̄_x`` for the F future steps (frames the model has not
seen). The interaction ``y°`` is then

- ``"projection"``: ``y° = y − (y·c/‖c‖²) c`` (orthogonal to the context),
- ``"hyperplane"`` (default): ``y° = y`` if ``y·c ≥ 0`` else the projection,
- ``"none"``: ``y° = y``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmsim_core.models.losses import hyperplane, projection

INTERACTIONS = ("hyperplane", "projection", "none")


def context_vectors(context_features: Tensor, num_steps: int) -> Tensor:
    """Per-step context vectors ``c`` (B, T, d) from the h context-frame features (B, h, d).

    ``c_t = z_{x_t}`` for t < h and ``z̄_x`` (mean over the h frames) for the remaining T − h steps.
    """
    B, h, d = context_features.shape
    if num_steps < h:
        raise ValueError(f"interaction: {num_steps} action steps but {h} context frames; need at least one step per frame")
    mean = context_features.mean(dim=1, keepdim=True)  # (B, 1, d)
    return torch.cat([context_features, mean.expand(B, num_steps - h, d)], dim=1)  # (B, T, d)


class LatentInteraction(nn.Module):
    def __init__(self, method: str = "hyperplane"):
        super().__init__()
        if method not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {list(INTERACTIONS)}, got {method!r}")
        self.method = method

    def forward(self, y: Tensor, c: Tensor) -> Tensor:
        """y: fused action features (B, T, d); c: context vectors (B, T, d) → y° (B, T, d)."""
        if self.method == "projection":
            return projection(y, c)
        if self.method == "hyperplane":
            return hyperplane(y, c)
        return y
