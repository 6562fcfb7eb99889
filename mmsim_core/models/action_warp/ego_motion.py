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

With ``from_context`` the head also reads the motion the context frames already show:
:func:`estimate_context_motion` fits one affine per pair of consecutive context frames (Gauss-Newton,
coarse to fine, no parameters), and the head gets those motions and their constant-velocity
extrapolation to each future step. The camera's motion does not stop when a body-pose sensor drops
out, and the video shows where it was going; without this a model missing body pose can only copy
the last frame (on the synthetic benchmark, continuing the last context motion at constant velocity
scores 25.62 dB against 25.09 for copying the last frame; ``training/experiments/condition_pathway.py``). Every sample then has a known motion, so text-only models get the same warp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mmsim_core.schema import MODALITIES

PYRAMID_LEVELS = 4


class EgoMotionHead(nn.Module):
    """Raw action signals (B, h+F, *shape) [+ the context frames' motion] -> affine warps (B, F, 2, 3) of
    the last context frame."""

    def __init__(self, modalities: tuple[str, ...], context_steps: int, hidden: int = 256, from_context: bool = False):
        super().__init__()
        self.modalities, self.context_steps = tuple(modalities), int(context_steps)
        self.from_context = bool(from_context)
        if self.from_context and self.context_steps < 2:
            raise ValueError(f"from_context needs context_steps >= 2 (a pair of frames to measure), got {context_steps}")
        if not self.modalities and not self.from_context:
            raise ValueError("EgoMotionHead needs a modality to read or from_context=True, got neither")
        action_dim = 2 * sum(MODALITIES[m].size for m in self.modalities)
        # Layout kept from heads without context motion, so their checkpoints load unchanged.
        self.norm = nn.BatchNorm1d(action_dim, affine=False) if action_dim else None
        in_dim = action_dim
        if self.from_context:
            in_dim += len(self.modalities) + self.context_dim
            self.context_norm = nn.BatchNorm1d(self.context_dim, affine=False)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 6))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("identity", torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), persistent=False)

    @property
    def context_dim(self) -> int:
        """Per future step: the h-1 measured context motions and the last one extrapolated to that step."""
        return 6 * self.context_steps

    def can_run(self, context_frames: Tensor | None) -> bool:
        """Whether the head has what it reads (a head ``from_context`` needs the context frames)."""
        return context_frames is not None or not self.from_context

    def forward(self, actions: dict[str, Tensor], present: dict[str, Tensor], batch: int, steps: int,
                context_frames: Tensor | None = None) -> Tensor:
        """actions: {name: (B, T, *shape)}; present: {name: bool (B,)}; context_frames: (B, h, C, H, W), read
        only ``from_context`` -> (B, F, 2, 3), F = T - h."""
        h = self.context_steps
        f = steps - h
        device = self.identity.device
        parts, flags, known = [], [], torch.zeros(batch, dtype=torch.bool, device=device)
        for name in self.modalities:
            size = MODALITIES[name].size
            mask = present.get(name)
            if name not in actions or mask is None or not bool(mask.any()):
                parts.append(torch.zeros(batch, f, 2 * size, device=device))
                flags.append(torch.zeros(batch, device=device))
                continue
            a = actions[name].to(device=device, dtype=torch.float32).reshape(batch, steps, size)  # (B, T, D)
            last = a[:, h - 1 : h]  # (B, 1, D)
            x = torch.cat([a[:, h:] - last, last.expand(-1, f, -1)], dim=-1)  # (B, F, 2D)
            parts.append(x * mask[:, None, None].float())
            flags.append(mask.float())
            known = known | mask
        inputs = []
        if self.norm is not None:
            x = rearrange(torch.cat(parts, dim=-1), "b f c -> (b f) c")  # (B*F, C)
            x = masked_batch_norm(self.norm, x, known.repeat_interleave(f))  # rows whose motion is known
            inputs.append(x)
        if self.from_context:
            if context_frames is None:
                raise ValueError("this ego-motion head reads the context frames' motion (from_context=True): "
                                 "pass context_frames (B, h, C, H, W)")
            if context_frames.dim() != 5 or tuple(context_frames.shape[:2]) != (batch, h):
                raise ValueError(f"context_frames must have shape ({batch}, {h}, C, H, W), got {tuple(context_frames.shape)}")
            # Rows without the modality hold zeros, in eval too (running statistics would shift them),
            # and a flag says which rows carry it.
            row_mask = torch.stack(flags, dim=1) if flags else torch.zeros(batch, 0, device=device)  # (B, M)
            if inputs:
                sizes = [2 * MODALITIES[m].size for m in self.modalities]
                keep = torch.repeat_interleave(row_mask, torch.tensor(sizes, device=device), dim=1)  # (B, 2D)
                inputs[0] = inputs[0] * keep.repeat_interleave(f, dim=0)
            ctx = context_motion_features(estimate_context_motion(context_frames), f)  # (B, F, 6h)
            ctx = self.context_norm(rearrange(ctx, "b f c -> (b f) c"))
            inputs += [row_mask.repeat_interleave(f, dim=0), ctx]
            known = torch.ones_like(known)
        x = torch.cat(inputs, dim=-1)  # (B*F, in_dim)
        delta = rearrange(self.net(x), "(b f) (r c) -> b f r c", b=batch, r=2)  # (B, F, 2, 3)
        return self.identity + delta * known[:, None, None, None].float()


@torch.no_grad()
def estimate_context_motion(frames: Tensor, levels: int = PYRAMID_LEVELS, iters: int = 4, damping: float = 1e-4,
                            robust: float = 0.02) -> Tensor:
    """The global affine motion between consecutive frames (B, h, C, H, W) -> (B, h-1, 2, 3).

    ``A_j`` is the affine with ``warp(frames[:, j], A_j) ~= frames[:, j+1]`` (:func:`warp`'s convention:
    output to input coordinates in [-1, 1]). Gauss-Newton on the grey-level difference (forward additive,
    gradients of the warped frame, so it assumes the near-identity motions of consecutive frames),
    coarse to fine over an average-pool pyramid; a measurement of the input, with no parameters."""
    b, h = frames.shape[:2]
    grey = frames.float().mean(dim=2, keepdim=True)  # (B, h, 1, H, W)
    src = rearrange(grey[:, :-1], "b j c y x -> (b j) c y x")  # (N, 1, H, W), N = B*(h-1)
    dst = rearrange(grey[:, 1:], "b j c y x -> (b j) c y x")
    pyramid = [(src, dst)]
    for _ in range(levels - 1):
        if min(pyramid[-1][0].shape[-2:]) < 8:
            break
        pyramid.append((F.avg_pool2d(pyramid[-1][0], 2), F.avg_pool2d(pyramid[-1][1], 2)))
    n = src.shape[0]
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=frames.device)
    affine = eye.expand(n, 2, 3).clone()
    reg = damping * torch.eye(6, device=frames.device)
    for s, d in reversed(pyramid):  # coarse to fine; the affine is resolution-free
        hh, ww = s.shape[-2:]
        ys = (torch.arange(hh, device=frames.device, dtype=torch.float32) * 2 + 1) / hh - 1
        xs = (torch.arange(ww, device=frames.device, dtype=torch.float32) * 2 + 1) / ww - 1
        gy_, gx_ = torch.meshgrid(ys, xs, indexing="ij")
        cx, cy = gx_.reshape(1, -1), gy_.reshape(1, -1)  # (1, P) pixel centres
        for _ in range(iters):
            grid = F.affine_grid(affine, list(s.shape), align_corners=False)
            w = F.grid_sample(s, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (N, 1, h, w)
            dy, dx = torch.gradient(w[:, 0], spacing=(2.0 / hh, 2.0 / ww), dim=(1, 2))  # per unit of [-1, 1]
            gx, gy = dx.reshape(n, -1), dy.reshape(n, -1)  # (N, P)
            jac = torch.stack([gx * cx, gx * cy, gx, gy * cx, gy * cy, gy], dim=-1)  # (N, P, 6)
            r = (w - d).reshape(n, -1, 1)  # (N, P, 1)
            # Iteratively reweighted toward L1: the hands move on their own and must not pull the fit.
            wr = 1.0 / torch.sqrt(r.square() + robust**2)  # (N, P, 1)
            hess = jac.transpose(1, 2) @ (jac * wr) / jac.shape[1]  # (N, 6, 6)
            grad = jac.transpose(1, 2) @ (r * wr) / jac.shape[1]  # (N, 6, 1)
            step = torch.linalg.solve(hess + reg, -grad)  # (N, 6, 1)
            affine = affine + step.view(n, 2, 3)
    return rearrange(affine, "(b j) r c -> b j r c", b=b)


def context_motion_features(motion: Tensor, future_steps: int) -> Tensor:
    """Measured context motions (B, h-1, 2, 3) -> head inputs (B, F, 6h): for every future step k the h-1
    motions (minus identity) and the last one compounded k+1 times (constant velocity, minus identity)."""
    b = motion.shape[0]
    eye = torch.eye(3, device=motion.device)
    bottom = eye[2:].expand(b, 1, 3)
    last = torch.cat([motion[:, -1], bottom], dim=1)  # (B, 3, 3)
    cur, ahead = eye.expand(b, 3, 3), []
    for _ in range(future_steps):
        cur = cur @ last
        ahead.append(cur[:, :2] - eye[:2])
    ahead = rearrange(torch.stack(ahead, dim=1), "b f r c -> b f (r c)")  # (B, F, 6)
    seen = rearrange(motion - eye[:2], "b j r c -> b (j r c)")  # (B, 6(h-1))
    return torch.cat([seen[:, None].expand(-1, future_steps, -1), ahead], dim=-1)


def masked_batch_norm(norm: nn.BatchNorm1d, x: Tensor, rows: Tensor) -> Tensor:
    """Batch-norm ``x`` (N, D) whose training statistics come from ``rows`` (N,) bool only: the zero rows
    of samples that lack the signal would skew them. In training the other rows pass through unchanged;
    in eval every row is normalised with the running statistics."""
    if norm.training and int(rows.sum()) > 1:
        return x.masked_scatter(rows[:, None], norm(x[rows]))
    return F.batch_norm(x, norm.running_mean, norm.running_var, training=False, eps=norm.eps)


def _box_mean(x: Tensor, k: int) -> Tensor:
    """Mean over a k x k box around each pixel, the box cut at the borders (``avg_pool2d`` with
    ``count_include_pad=False``), as two 1-D passes: 2k instead of k^2 operations per pixel."""
    x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)


def fill_hidden(frame: Tensor, hide: Tensor, sizes: tuple[int, ...] = (9, 25)) -> Tensor:
    """``frame`` (N, C, H, W) with the pixels ``hide`` (N, 1, H, W) in [0, 1] covers replaced by the mean of
    the uncovered pixels around them (a box of the first of ``sizes`` that holds enough of them)."""
    keep = 1.0 - hide
    fill = frame.mean(dim=(-2, -1), keepdim=True).expand_as(frame)
    for k in reversed(sizes):  # coarse first, finer where it has support
        num = _box_mean(frame * keep, k)
        den = _box_mean(keep, k)
        fill = torch.where(den > 0.1, num / den.clamp_min(1e-6), fill)
    return frame * keep + fill * hide


def warp(frame: Tensor, affine: Tensor, local: Tensor | None = None) -> Tensor:
    """Warp one frame (B, C, H, W) by each of F affines (B, F, 2, 3) -> (B, F, C, H, W).

    The affine maps output to input coordinates in [-1, 1] (``F.affine_grid``); pixels that come from
    outside the frame repeat its border. ``local`` (B, F, 3 or 4, H, W) is a hand map's keypoint flow
    (:func:`~mmsim_core.models.action_warp.hand_projection.keypoint_flow`: offset x, y in those units, alpha, hide).
    Where alpha says the hands are now, the pixel comes from itself plus the offset; elsewhere from the
    affine's source, in a copy of the frame whose pixels under ``hide`` (where the hands were) are filled
    from their surroundings, so that the affine does not carry the hands' old picture along."""
    b, f = affine.shape[:2]
    src = frame.float().repeat_interleave(f, dim=0)  # (B*F, C, H, W)
    grid = F.affine_grid(rearrange(affine.float(), "b f r c -> (b f) r c"), list(src.shape), align_corners=False)
    if local is None:
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return rearrange(out, "(b f) c y x -> b f c y x", b=b).to(frame.dtype)
    local = rearrange(local.float(), "b f c y x -> (b f) c y x")
    eye = torch.eye(2, 3, device=grid.device, dtype=grid.dtype).expand(b * f, 2, 3)
    here = F.affine_grid(eye, list(src.shape), align_corners=False)  # (B*F, H, W, 2)
    alpha = local[:, 2:3]
    background = fill_hidden(src, local[:, 3:4]) if local.shape[1] > 3 else src
    rest = F.grid_sample(background, grid, mode="bilinear", padding_mode="border", align_corners=False)
    hands = F.grid_sample(src, here + rearrange(local[:, :2], "n c y x -> n y x c"), mode="bilinear",
                          padding_mode="border", align_corners=False)
    out = (1 - alpha) * rest + alpha * hands
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


__all__ = [
    "EgoMotionHead", "context_motion_features", "estimate_context_motion", "masked_batch_norm", "photometric_loss",
    "warp",
]
