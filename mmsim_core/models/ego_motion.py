r"""Ego-motion from actions: an affine warp of the last context frame per future frame (ours).

Not in the paper; it is what lets a CPU-sized simulator show that actions matter. In egocentric
video the camera rides on the head, so most of the pixel change between frames is one global motion
set by body pose, and a small denoiser learns to re-draw shifted texture only slowly (on the
synthetic world a 14 M-parameter residual denoiser was still below copy-last after 2,800 steps).

:class:`EgoMotionHead` reads the raw (normalised) signals of the modalities it is given — body pose
by default — as ``[a_{h+k} - a_{h-1}, a_{h-1}]`` for each future step ``k`` (the motion since the
last context frame and the pose it starts from), standardises them with batch statistics (pose
deltas are ~1e-3 of the pose values, and differ by axis; statistics come only from samples that
carry those modalities), and an MLP outputs the ``2x3`` affine
``A_k``, identity at init. A sample without any of those modalities gets the identity: nothing is
known about its motion. :func:`warp` applies ``A_k`` to the last context frame with bilinear
sampling; :func:`photometric_loss` trains the head; the denoiser (``target="warped_residual"``) then
models only what the warp leaves unexplained (hands, objects, disocclusions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mmsim_core.schema import MODALITIES

PYRAMID_LEVELS = 4


class EgoMotionHead(nn.Module):
    """Raw action signals (B, h+F, *shape) -> affine warps (B, F, 2, 3) of the last context frame."""

    def __init__(self, modalities: tuple[str, ...], context_steps: int, hidden: int = 256):
        super().__init__()
        self.modalities, self.context_steps = tuple(modalities), int(context_steps)
        in_dim = 2 * sum(MODALITIES[m].size for m in self.modalities)
        self.norm = nn.BatchNorm1d(in_dim, affine=False)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 6))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("identity", torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), persistent=False)

    def forward(self, actions: dict[str, Tensor], present: dict[str, Tensor], batch: int, steps: int) -> Tensor:
        """actions: {name: (B, T, *shape)}; present: {name: bool (B,)} -> (B, F, 2, 3), F = T - h."""
        h = self.context_steps
        f = steps - h
        device = self.identity.device
        parts, known = [], torch.zeros(batch, dtype=torch.bool, device=device)
        for name in self.modalities:
            size = MODALITIES[name].size
            mask = present.get(name)
            if name not in actions or mask is None or not bool(mask.any()):
                parts.append(torch.zeros(batch, f, 2 * size, device=device))
                continue
            a = actions[name].to(device=device, dtype=torch.float32).reshape(batch, steps, size)  # (B, T, D)
            last = a[:, h - 1 : h]  # (B, 1, D)
            x = torch.cat([a[:, h:] - last, last.expand(-1, f, -1)], dim=-1)  # (B, F, 2D)
            parts.append(x * mask[:, None, None].float())
            known = known | mask
        x = rearrange(torch.cat(parts, dim=-1), "b f c -> (b f) c")  # (B*F, C)
        x = masked_batch_norm(self.norm, x, known.repeat_interleave(f))  # rows whose motion is known
        delta = rearrange(self.net(x), "(b f) (r c) -> b f r c", b=batch, r=2)  # (B, F, 2, 3)
        return self.identity + delta * known[:, None, None, None].float()


def masked_batch_norm(norm: nn.BatchNorm1d, x: Tensor, rows: Tensor) -> Tensor:
    """Batch-norm ``x`` (N, D) whose training statistics come from ``rows`` (N,) bool only: the zero rows
    of samples that lack the signal would skew them. In training the other rows pass through unchanged;
    in eval every row is normalised with the running statistics."""
    if norm.training and int(rows.sum()) > 1:
        return x.masked_scatter(rows[:, None], norm(x[rows]))
    return F.batch_norm(x, norm.running_mean, norm.running_var, training=False, eps=norm.eps)


def warp(frame: Tensor, affine: Tensor) -> Tensor:
    """Warp one frame (B, C, H, W) by each of F affines (B, F, 2, 3) -> (B, F, C, H, W).

    The affine maps output to input coordinates in [-1, 1] (``F.affine_grid``); pixels that come from
    outside the frame repeat its border."""
    b, f = affine.shape[:2]
    src = frame.float().repeat_interleave(f, dim=0)  # (B*F, C, H, W)
    grid = F.affine_grid(rearrange(affine.float(), "b f r c -> (b f) r c"), list(src.shape), align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return rearrange(out, "(b f) c y x -> b f c y x", b=b).to(frame.dtype)


def photometric_loss(warped: Tensor, future: Tensor, levels: int = PYRAMID_LEVELS) -> Tensor:
    """Mean L1 of warped frames against the true future frames (B, F, C, H, W), over an average-pool
    pyramid: tiled, high-frequency textures give a full-resolution loss a basin about one pixel wide;
    the coarse levels widen it so the head can find large motions."""
    a = rearrange(warped.float(), "b f c y x -> (b f) c y x")
    g = rearrange(future.float(), "b f c y x -> (b f) c y x")
    loss = a.new_zeros(())
    for level in range(levels):
        if level:
            a, g = F.avg_pool2d(a, 2), F.avg_pool2d(g, 2)
        loss = loss + F.l1_loss(a, g)
    return loss / levels


__all__ = ["EgoMotionHead", "masked_batch_norm", "photometric_loss", "warp"]
