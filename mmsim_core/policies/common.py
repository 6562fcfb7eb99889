"""Building blocks shared by the goal-conditioned policy and the action proposer.

- :func:`actions_to_vector` / :func:`vector_to_actions`: the multisensory action of one step as one vector of
  ``schema.ACTION_DIM`` = 2292 numbers (hand pose 144, body pose 84, EMG 16, hand force 2048, in
  ``schema.MODALITY_NAMES`` order), the action space the policy and the proposer act in;
- :class:`FrameEncoder`: a small residual CNN, one 64x64 frame -> one feature vector (the role ResNet-18 plays
  in diffusion policy, sized for a 2-core CPU);
- :class:`TemporalUNet1D`: a 1D convolutional U-Net over the time axis of an action sequence, every residual
  block modulated (FiLM) by a global condition vector, as diffusion policy's ``ConditionalUnet1D``. The action
  channels are first mapped to a small width per step, so the 2,048 tactile numbers do not set the size of
  every layer.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsim_core import schema


def _sizes() -> list[tuple[str, int, tuple[int, ...]]]:
    return [(n, schema.MODALITIES[n].size, tuple(schema.MODALITIES[n].shape)) for n in schema.MODALITY_NAMES]


def actions_to_vector(actions: Mapping[str, Tensor | np.ndarray]) -> Tensor:
    """``{name: (B, T, *shape)}`` with every modality -> float32 ``(B, T, ACTION_DIM)``."""
    missing = [n for n in schema.MODALITY_NAMES if n not in actions]
    if missing:
        raise ValueError(f"actions need every modality for the policy's action space; missing {missing}")
    parts = []
    for name, size, shape in _sizes():
        a = torch.as_tensor(actions[name]).float()
        if tuple(a.shape[2:]) != shape:
            raise ValueError(f"actions[{name!r}] must have shape (B, T, {', '.join(map(str, shape))}), "
                             f"got {tuple(a.shape)}")
        parts.append(a.reshape(*a.shape[:2], size))
    return torch.cat(parts, dim=-1)


def vector_to_actions(vector: Tensor) -> dict[str, Tensor]:
    """float ``(B, T, ACTION_DIM)`` -> ``{name: (B, T, *shape)}`` (views, no copy)."""
    if vector.shape[-1] != schema.ACTION_DIM:
        raise ValueError(f"action vectors must have {schema.ACTION_DIM} numbers per step, got {vector.shape[-1]}")
    out, start = {}, 0
    for name, size, shape in _sizes():
        out[name] = vector[..., start:start + size].reshape(*vector.shape[:-1], *shape)
        start += size
    return out


def modality_slices() -> dict[str, slice]:
    """Where each modality lies in an action vector."""
    out, start = {}, 0
    for name, size, _ in _sizes():
        out[name] = slice(start, start + size)
        start += size
    return out


def frames_to_unit(frames: Tensor | np.ndarray) -> Tensor:
    """uint8 ``(..., H, W, 3)`` -> float32 ``(..., 3, H, W)`` in [-1, 1], contiguous (a convolution's backward
    pass on the channels-last strides ``movedim`` leaves corrupts the heap on this CPU build of torch)."""
    x = torch.as_tensor(np.asarray(frames) if isinstance(frames, np.ndarray) else frames)
    return x.movedim(-1, -3).float().div(127.5).sub(1.0).contiguous()


class _ResBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.norm1 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.skip = nn.Conv2d(cin, cout, 1, stride) if (cin != cout or stride != 1) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.silu(h + self.skip(x))


class FrameEncoder(nn.Module):
    """One frame ``(B, 3, H, W)`` in [-1, 1] -> ``(B, feature_dim)``: a stem and one strided residual block
    per width, then global average pooling (GroupNorm, not BatchNorm, so batches of one behave).
    ``in_channels`` > 3 takes several frames stacked on the channel axis."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), feature_dim: int = 128, groups: int = 8,
                 in_channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1)
        blocks, cin = [], widths[0]
        for w in widths:
            blocks.append(_ResBlock2d(cin, w, 2, groups))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.proj = nn.Linear(cin, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(F.silu(self.stem(x)))  # (B, C, H/16, W/16)
        return self.proj(h.mean(dim=(-2, -1)))  # (B, feature_dim)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of (B,) diffusion timesteps -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class _ResBlock1d(nn.Module):
    """Two convolutions over time; the condition scales and shifts the first one's output (FiLM)."""

    def __init__(self, cin: int, cout: int, cond_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, 1, 1)
        self.norm1 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, 1, 1)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = F.mish(self.norm1(self.conv1(x)))
        scale, shift = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = h * (1 + scale) + shift
        h = F.mish(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class TemporalUNet1D(nn.Module):
    """``(B, T, in_dim)`` action-like sequence + ``(B, cond_dim)`` condition -> ``(B, T, out_dim)``.

    The time axis is halved once per level after the first (T = 8: 8 -> 4 -> 2 with three levels) and restored
    with skip connections. ``T`` must be divisible by ``2 ** (len(widths) - 1)``."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, widths: Sequence[int] = (64, 128, 256),
                 step_dim: int = 64, groups: int = 8):
        super().__init__()
        self.widths = tuple(widths)
        self.inp = nn.Linear(in_dim, step_dim)  # per step: 2292 numbers -> step_dim
        self.down = nn.ModuleList()
        cin = step_dim
        for w in self.widths:
            self.down.append(_ResBlock1d(cin, w, cond_dim, groups))
            cin = w
        self.mid = _ResBlock1d(cin, cin, cond_dim, groups)
        self.up = nn.ModuleList()
        for w in reversed(self.widths[:-1]):
            self.up.append(_ResBlock1d(cin + w, w, cond_dim, groups))
            cin = w
        self.out = nn.Linear(cin, out_dim)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        T = x.shape[1]
        if T % (2 ** (len(self.widths) - 1)):
            raise ValueError(f"sequence length {T} must be divisible by {2 ** (len(self.widths) - 1)}")
        h = self.inp(x).transpose(1, 2)  # (B, step_dim, T)
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                h = F.avg_pool1d(h, 2)
            h = block(h, cond)
            skips.append(h)
        h = self.mid(h, cond)
        for block in self.up:
            skips.pop()
            skip = skips[-1]
            h = F.interpolate(h, size=skip.shape[-1], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), cond)
        return self.out(h.transpose(1, 2))  # (B, T, out_dim)
