r"""Implicit cross-modal anchoring through channel-wise cross-attention (paper §2.1).

The paper encodes the h context frames to ``z_{x_i}`` (dim d), averages them into an anchor
``z̄_x``, projects every modality feature to d, and takes "a channel-wise cross-attention between
the anchor feature and the action features", so that channels of different modalities become
associated *through the channels of the anchor*. It gives no equation; this is ours.

Tokens are **channels**, not time steps: channel i of an action feature ``z = z_{t,m} ∈ R^d`` is a
query, channel j of the anchor ``a = z̄_x ∈ R^d`` is a key/value. To keep the cost linear in d
(d = 1024 on GPU, ~256 on CPU) channels are split into ``G = d / c`` groups of ``c`` channels
(``c = group_size``, 64 by default) and attention stays inside a group. With
``ẑ = LN(z)``, ``â = LN(a)`` (LayerNorm without affine) and per-channel (diagonal) parameters so
that a channel keeps its identity:

.. math::

    q_i = α_i ẑ_i + β_i, \qquad k_j = γ_j â_j + δ_j, \qquad v_j = ε_j â_j + ζ_j

    s_{g,ij} = \frac{q_{g,i}\, k_{g,j}}{\sqrt{c}} + B_{g,ij}, \qquad
    A_{g,ij} = \operatorname{softmax}_j(s_{g,ij})

    z'_{g,i} = z_{g,i} + λ_{g,i} \sum_j A_{g,ij}\, v_{g,j}

``B_g ∈ R^{c×c}`` is a learned channel-to-channel association prior shared by all modalities
(zero at init) and ``λ`` a per-channel layer scale (0.1 at init, so training starts close to the
plain projected features). Every modality attends to the *same* anchor with the *same* parameters:
channel i of hand pose and channel i' of EMG that attend to the same anchor channel j receive the
same value ``v_j`` — that shared pathway is what ties their channels together, and training the
projection heads ``P_m`` through it arranges which action channels meet which anchor channels.
The score is rank-1 in (q, k) plus the prior B, so a query with a large positive value selects the
anchor channels with the largest keys and a negative one the smallest.

Cost per (sample, step, modality) token: ``d·c`` scores (65 k for d = 1024, c = 64) — a few hundred
MFLOP for a training batch, memory ``B·T·M·d·c`` floats. Each token is processed independently, so
anchoring preserves permutation invariance and leaves absent modalities without influence.

``ChannelAnchoring`` is switched off with ``anchoring="none"`` in ``ActionEncoderConfig`` (ablation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class ChannelAnchoring(nn.Module):
    """Channel-wise cross-attention from action-feature channels to the anchor's channels."""

    def __init__(self, dim: int, group_size: int = 64, init_scale: float = 0.1):
        super().__init__()
        c = min(group_size, dim)
        if dim % c != 0:
            raise ValueError(f"anchoring: feature_dim ({dim}) must be divisible by the group size ({c})")
        self.dim, self.group_size, self.groups = dim, c, dim // c
        self.q_scale = nn.Parameter(torch.ones(dim))
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_scale = nn.Parameter(torch.ones(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim))
        self.v_scale = nn.Parameter(torch.ones(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.prior = nn.Parameter(torch.zeros(self.groups, c, c))
        self.gate = nn.Parameter(torch.full((dim,), init_scale))

    def attention(self, z: Tensor, anchor: Tensor) -> Tensor:
        """Attention maps ``A`` (B, ..., G, c, c) for features z (B, ..., d) and anchor (B, d)."""
        q = F.layer_norm(z, (self.dim,)) * self.q_scale + self.q_bias  # (B, ..., d)
        k = F.layer_norm(anchor, (self.dim,)) * self.k_scale + self.k_bias  # (B, d)
        q = rearrange(q, "... (g c) -> ... g c", g=self.groups)
        k = rearrange(k, "b (g c) -> b g c", g=self.groups)
        k = k.view(k.shape[0], *([1] * (q.dim() - 3)), self.groups, self.group_size) / math.sqrt(self.group_size)
        scores = torch.addcmul(self.prior, q.unsqueeze(-1), k.unsqueeze(-2))  # (B, ..., G, c, c) in one pass
        return scores.softmax(dim=-1)

    def forward(self, z: Tensor, anchor: Tensor) -> Tensor:
        """z: projected action features (B, ..., d); anchor: mean context feature z̄_x (B, d)."""
        attn = self.attention(z, anchor)  # (B, ..., G, c, c)
        v = F.layer_norm(anchor, (self.dim,)) * self.v_scale + self.v_bias  # (B, d)
        v = rearrange(v, "b (g c) -> b g c", g=self.groups)
        v = v.view(v.shape[0], *([1] * (z.dim() - 2)), self.groups, self.group_size)
        out = (attn @ v.unsqueeze(-1)).squeeze(-1)  # (B, ..., G, c); batched matmul beats einsum here
        out = rearrange(out, "... g c -> ... (g c)")  # (B, ..., d)
        return z + self.gate * out
