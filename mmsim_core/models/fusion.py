"""Fusion of per-modality features into one action feature per step (paper §2.1, ablations §3.3).

All functions take ``features`` (B, T, M, d) — absent modalities may hold anything — and
``present`` bool (B, M). A modality that is absent for a sample is left out of that sample's
fusion entirely, so its data has no influence. Samples with no modality present get a finite
placeholder here; the action encoder replaces them with its learned null embedding.

- softmax (paper default): ``y_t = Σ_m w_{t,m} ⊙ z_{t,m}``, ``w_{t,m,j} = exp(z_{t,m,j}) /
  Σ_{m' present} exp(z_{t,m',j})`` — channel-wise, permutation invariant.
- mean, max: symmetric baselines.
- concat: zero-fill absent modalities, concatenate in the configured order, linear to d — NOT
  permutation invariant; that is the point of the ablation.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

FUSIONS = ("softmax", "mean", "max", "concat")


def _safe_mask(present: Tensor) -> tuple[Tensor, Tensor]:
    """Masks (B, 1, M, 1) for computation: all-absent samples pretend everything is present so that
    no NaN (softmax over nothing) can reach the gradient; their output is replaced downstream."""
    none = ~present.any(dim=1, keepdim=True)  # (B, 1)
    mask = present | none
    return mask[:, None, :, None], none


def softmax_fusion(features: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """Channel-wise masked softmax fusion. Returns (y (B, T, d), weights (B, T, M, d))."""
    mask, _ = _safe_mask(present)
    logits = features.masked_fill(~mask, float("-inf"))
    weights = logits.softmax(dim=2)  # (B, T, M, d); exactly 0 for absent modalities
    features = features.masked_fill(~mask, 0.0)  # absent data must not reach the sum, not even as 0*inf
    return (weights * features).sum(dim=2), weights


def mean_fusion(features: Tensor, present: Tensor) -> Tensor:
    mask, _ = _safe_mask(present)
    mask = mask.to(features.dtype)
    return (features * mask).sum(dim=2) / mask.sum(dim=2).clamp_min(1.0)


def max_fusion(features: Tensor, present: Tensor) -> Tensor:
    mask, _ = _safe_mask(present)
    return features.masked_fill(~mask, float("-inf")).amax(dim=2)


class ConcatFusion(nn.Module):
    """Concatenate the M modality slots (absent → zeros) and map to d with one linear layer."""

    def __init__(self, num_modalities: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(num_modalities * dim, dim)

    def forward(self, features: Tensor, present: Tensor) -> Tensor:
        features = features.masked_fill(~present[:, None, :, None], 0.0)
        return self.proj(rearrange(features, "b t m d -> b t (m d)"))  # (B, T, d)


class Fusion(nn.Module):
    """Dispatch to one of ``FUSIONS``; returns (y (B, T, d), softmax weights or None)."""

    def __init__(self, method: str, num_modalities: int, dim: int):
        super().__init__()
        if method not in FUSIONS:
            raise ValueError(f"fusion must be one of {list(FUSIONS)}, got {method!r}")
        self.method = method
        self.concat = ConcatFusion(num_modalities, dim) if method == "concat" else None

    def forward(self, features: Tensor, present: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.method == "softmax":
            return softmax_fusion(features, present)
        if self.method == "mean":
            return mean_fusion(features, present), None
        if self.method == "max":
            return max_fusion(features, present), None
        return self.concat(features, present), None


__all__ = ["FUSIONS", "Fusion", "ConcatFusion", "softmax_fusion", "mean_fusion", "max_fusion"]
