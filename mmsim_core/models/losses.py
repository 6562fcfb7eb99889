"""Action-side losses and the latent-interaction operators (paper §2.1–2.2), as pure functions.

- ``reconstruction_loss``: the self-supervised MoE term ``L_ssl = Σ_m ‖D_m(E_m(a_m)) − a_m‖²``, one
  modality at a time (the encoder sums over modalities).
- ``projection``: ``y° = y − (y·c / ‖c‖²) c`` — remove the component of the action vector along the
  context vector (Latent Projection Interaction).
- ``hyperplane``: relaxed hyperplane interaction — ``y° = y`` when ``y·c ≥ 0`` (the action lies in the
  context's positive half-space: significant consequence), else the projection onto the hyperplane.
- ``norm_loss``: ``L_norm = mean_t (‖y°_t‖ − ‖z_{x_t} − z_{x_{t−1}}‖)²`` for t = 1..T−1, matching the
  interaction magnitude to the frame-feature change (targets detached).
"""

from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-8


def reconstruction_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Squared reconstruction error, averaged over elements and over the rows that are present.

    pred, target: (N, ...) with N rows (e.g. sample×step); mask: optional bool (N,) of rows to count.
    Averaging over elements (instead of summing) keeps modalities of very different sizes (16 EMG
    values vs 2048 taxels) on the same scale, as the paper's loss weights assume.
    Returns a scalar; 0 when no row is present.
    """
    if pred.shape != target.shape:
        raise ValueError(f"reconstruction_loss: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    err = (pred - target).pow(2).flatten(1).mean(dim=1)  # (N,)
    if mask is None:
        return err.mean() if err.numel() else err.sum()
    mask = mask.to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def projection(y: Tensor, c: Tensor, eps: float = _EPS) -> Tensor:
    """Latent Projection Interaction ``y° = y − (y·c / ‖c‖²) c`` along the last axis.

    y, c: (..., d), broadcastable. The result is orthogonal to ``c`` (up to float error). A zero
    context vector leaves ``y`` unchanged (there is no direction to remove).
    """
    dot = (y * c).sum(-1, keepdim=True)  # (..., 1)
    c2 = (c * c).sum(-1, keepdim=True).clamp_min(eps)
    return y - (dot / c2) * c


def hyperplane(y: Tensor, c: Tensor, eps: float = _EPS) -> Tensor:
    """Relaxed Hyperplane Interaction: ``y`` if ``y·c ≥ 0`` else ``projection(y, c)``.

    Only actions on the negative side of the hyperplane with normal ``c`` are clipped onto it.
    """
    dot = (y * c).sum(-1, keepdim=True)
    return torch.where(dot >= 0, y, projection(y, c, eps))


def norm_loss(interaction: Tensor, target_features: Tensor, sample_mask: Tensor | None = None) -> Tensor:
    """``L_norm = mean_{b,t} (‖y°_{b,t}‖ − ‖z_{x_{b,t}} − z_{x_{b,t−1}}‖)²`` for t = 1..T−1.

    interaction: y° (B, T, d); target_features: ground-truth frame features z_x of all T frames
    (B, T, d), detached here (stop-gradient) so that a trainable frame encoder cannot shrink its
    own target; sample_mask: optional bool (B,) of samples to count (e.g. those with at least one
    action modality). Returns a scalar; 0 when nothing is counted.
    """
    if interaction.shape != target_features.shape:
        raise ValueError(
            f"norm_loss: interaction shape {tuple(interaction.shape)} != target_features shape "
            f"{tuple(target_features.shape)}"
        )
    target = target_features.detach()
    step = (target[:, 1:] - target[:, :-1]).norm(dim=-1)  # (B, T-1)
    pred = interaction[:, 1:].norm(dim=-1)  # (B, T-1)
    err = (pred - step).pow(2).mean(dim=1)  # (B,)
    if sample_mask is None:
        return err.mean() if err.numel() else err.sum()
    m = sample_mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)
