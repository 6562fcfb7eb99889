r"""Hand placement map: where each hand is in the picture and what it is doing, as an image (ours).

Not in the paper. The paper's conditioning ``y°_t`` is one vector per frame; the denoiser hears it
through FiLM and cross-attention to a few global tokens, which tells it *what* the hands do but not
*where* in the 64x64 frame that happens. At CPU scale the denoiser never learns to place that content
(``training/experiments/condition_pathway.py``: shuffling hand pose, EMG or force across clips moves the
output by under 0.002 RMS, though the oracle says hand pose alone decides about a quarter of the future
pixels' change). A spatial condition, ControlNet-style, gives that content a place.

The geometry is egocentric: the camera rides on the head and the hands hang from the same body, so
where a hand appears in frame ``t`` is a function of the body pose at ``t`` alone (the head segment
places and aims the camera, the hand segments place the hands); what the hand looks like — fingers
open or closed, gripping, lifting, twisting — is in that hand's own signals. The map factorises the two,
for each hand ``s`` (left, right) and step ``t``:

    where_{t,s} = sigmoid(MLP_where(bp_t))_s                                (G, G) occupancy, body pose only
    what_{t,s}  = MLP_what([hp_{t,s}, hp_{t,s} - hp_{h-1,s}, emg_{t,s}, pool(force_{t,s}), presence, side_s])
    map_t       = sum_s where_{t,s} (x) what_{t,s}                          (C, G, G)

for every future step (``C`` "now" channels) and for the last context step ``h-1`` (``C`` "then"
channels: where the hands were in the frame the warped residual is measured from, so the denoiser
can erase them there). Without body pose the occupancy is uniform (0.5 everywhere): a hand-pose-only
model gets its hand features everywhere, a global signal like ``y°``, and no location it cannot know.
Without any hand signal a body-pose model still gets "a hand is here" from the learned side bias.
Inputs are the raw normalised signals of the modalities the encoder is configured with, standardised
with batch statistics of the rows that carry them (as in :class:`~mmsim_core.models.action_warp.ego_motion.EgoMotionHead`);
a sample with none of them present (condition dropout, every action dropped) gets an all-zero map.
The denoiser adds the map to its first feature map through a zero-initialised convolution, so a model
with the map starts exactly as one without it.

``placement="projected"`` / ``"projected_warp"`` replace the learned *where* with geometry
(:mod:`~mmsim_core.models.action_warp.hand_projection`): the hands' keypoints projected through the head camera, whose
heat maps (forearm, palm, five fingers per hand, "now" and "then") join the map, and whose union is the
occupancy the *what* features are placed with. ``projected_warp`` also returns the keypoints' flow, which
moves the hands' pixels of the last context frame in the warped residual's anchor.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mmsim_core.models.action_warp.ego_motion import masked_batch_norm
from mmsim_core.models.action_warp.hand_projection import ProjectedHandKeypoints, ProjectionConfig, calibrate_pitch, keypoint_flow
from mmsim_core.schema import FRAME_SIZE, MODALITIES

WHERE_FROM = "body_pose"
WHAT_FROM = ("hand_pose", "emg", "hand_force")
PLACEMENTS = ("learned", "projected", "projected_warp")
"""How *where* is found: an MLP on body pose (``learned``), or the hands' keypoints projected through the
head camera (``projected``, :mod:`~mmsim_core.models.action_warp.hand_projection`), which also adds their heat maps;
``projected_warp`` also moves the hands' pixels of the last context frame with their keypoints
(:func:`~mmsim_core.models.action_warp.hand_projection.keypoint_flow`), into the anchor the residual is measured from."""


class HandMapOutput(NamedTuple):
    map: Tensor
    """(B, F, out_channels, G, G) the spatial condition."""
    occupancy: Tensor | None
    """(B, F+1, 2, G, G) where a learned map placed each hand, steps h-1..T-1, for :func:`placement_loss`."""
    flow: Tensor | None = None
    """(B, F, 4, H, W) a ``projected_warp`` map's local warp of the last context frame (offset x, y, alpha, hide)."""
FORCE_POOL = 4
"""Tactile maps (32x32 per hand) are average-pooled by this factor (to 8x8) before the MLP."""
SIDES = 2


def _per_hand_dim(name: str) -> int:
    """Size of one hand's input from modality ``name`` (per step)."""
    shape = MODALITIES[name].shape  # leading axis: left, right
    if name == "hand_force":
        return (shape[1] // FORCE_POOL) * (shape[2] // FORCE_POOL)
    size = 1
    for s in shape[1:]:
        size *= s
    return 2 * size if name == "hand_pose" else size  # hand pose: [pose, motion since h-1]


class HandPlacementMap(nn.Module):
    """Raw action signals (B, h+F, *shape) -> spatial condition (B, F, 2C, G, G): C "now" + C "then"."""

    def __init__(self, modalities: tuple[str, ...], context_steps: int, channels: int = 8, grid: int = 16,
                 hidden: int = 256, placement: str = "learned", camera: ProjectionConfig | None = None,
                 frame_size: int = FRAME_SIZE):
        super().__init__()
        if channels < 1 or grid < 1 or hidden < 1:
            raise ValueError(f"channels, grid and hidden must be positive, got {channels}, {grid}, {hidden}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {list(PLACEMENTS)}, got {placement!r}")
        self.context_steps, self.channels, self.grid = int(context_steps), int(channels), int(grid)
        self.where_from = WHERE_FROM in modalities
        self.what_from = tuple(m for m in WHAT_FROM if m in modalities)
        if not self.where_from and not self.what_from:
            raise ValueError(f"a hand placement map needs body_pose or a hand modality {list(WHAT_FROM)}, got {list(modalities)}")
        # Projection needs body pose (hand pose is carpus-relative); without it the map stays learned/uniform.
        self.projection = None
        self.warps = placement == "projected_warp" and self.where_from
        self.flow_size = max(1, int(frame_size) // 2)  # the warp is smooth; half resolution, upsampled
        self.frame_size = int(frame_size)
        if placement in ("projected", "projected_warp") and self.where_from:
            self.projection = ProjectedHandKeypoints(grid, "hand_pose" in modalities, camera)
        elif self.where_from:
            size = MODALITIES[WHERE_FROM].size
            self.where_norm = nn.BatchNorm1d(size, affine=False)
            self.where = nn.Sequential(nn.Linear(size, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                       nn.Linear(hidden, SIDES * grid * grid))
            # Zero logits = uniform occupancy 0.5 at init; the location is learned, not assumed.
            nn.init.zeros_(self.where[-1].weight)
            nn.init.zeros_(self.where[-1].bias)
        self.what_norms = nn.ModuleDict({m: nn.BatchNorm1d(_per_hand_dim(m), affine=False) for m in self.what_from})
        what_in = sum(_per_hand_dim(m) for m in self.what_from) + len(self.what_from) + SIDES
        self.what = nn.Sequential(nn.Linear(what_in, hidden), nn.SiLU(), nn.Linear(hidden, 2 * channels))
        self.register_buffer("sides", torch.eye(SIDES), persistent=False)

    @property
    def out_channels(self) -> int:
        return 2 * self.channels + (2 * self.projection.channels if self.projection is not None else 0)

    @staticmethod
    def count_channels(modalities: tuple[str, ...], channels: int, placement: str) -> int:
        """:attr:`out_channels` of a map built with these arguments, without building it."""
        projected = placement in ("projected", "projected_warp") and WHERE_FROM in modalities
        return 2 * channels + (2 * ProjectedHandKeypoints.CHANNELS if projected else 0)

    def set_pose_frame(self, stats) -> None:
        """Give a projected map the min-max statistics of the data (no-op for a learned one)."""
        if self.projection is not None:
            self.projection.set_pose_frame(stats)

    def _keypoints(self, actions: dict[str, Tensor], present: dict[str, Tensor], batch: int,
                   steps: int, context_frames: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Projected keypoint heat maps at steps h-1..T-1, (B, F+1, 14, G, G), and for ``projected_warp`` the
        local warp (B, F, 4, H, W); zero for samples without body pose, forearm and carpus alone for samples
        without hand pose. With ``context_frames`` (B, h, 3, H, W), each clip's camera pitch is first
        calibrated on them (:func:`~mmsim_core.models.action_warp.hand_projection.calibrate_pitch`)."""
        h = self.context_steps
        body_rows = self._mask(present, actions, WHERE_FROM, batch)
        body_all = actions[WHERE_FROM].float().reshape(batch, steps, -1, 3)  # (B, T, 28, 3)
        body = body_all[:, h - 1:]  # (B, n, 28, 3)
        hand_rows = self._mask(present, actions, "hand_pose", batch) if self.projection.with_hand_pose else None
        hand_all = None
        if hand_rows is not None and bool(hand_rows.any()):
            hand_all = actions["hand_pose"].float().reshape(batch, steps, SIDES, -1, 3)  # (B, T, 2, 24, 3)
        hand = hand_all[:, h - 1:] if hand_all is not None else None  # (B, n, 2, 24, 3) | None
        offset = None
        if context_frames is not None and h >= 2 and self.projection.cfg.calibration_deg:
            ends = [0, h - 1]
            offset = calibrate_pitch(self.projection, body_all[:, ends], hand_all[:, ends] if hand is not None else None,
                                     context_frames[:, 0], context_frames[:, h - 1], hand_rows)
        pts = self.projection.points(body, hand, offset, hand_rows)
        heat = self.projection.heat(pts)  # (B, n, 14, G, G)
        flow = None
        if self.warps:
            flow = keypoint_flow(pts, self.flow_size, self.projection.cfg.flow_radius)  # (B, F, 4, H/2, W/2)
            flow = F.interpolate(rearrange(flow, "b f c y x -> (b f) c y x"), size=(self.frame_size,) * 2,
                                 mode="bilinear", align_corners=False)
            flow = rearrange(flow, "(b f) c y x -> b f c y x", b=batch)  # (B, F, 4, H, W)
        keep = body_rows[:, None, None, None, None].to(heat.dtype)
        return heat * keep, (flow * keep if flow is not None else None)

    @staticmethod
    def _standardise(norm: nn.BatchNorm1d, x: Tensor, rows: Tensor) -> Tensor:
        """Batch-norm (N, D) with statistics from ``rows`` (N,) only; other rows come out zero."""
        return masked_batch_norm(norm, x, rows) * rows[:, None].to(x.dtype)

    def _hand_inputs(self, name: str, a: Tensor, h: int) -> Tensor:
        """One modality's per-hand inputs for steps h-1..T-1: (B, F+1, 2, D)."""
        b, t = a.shape[:2]
        if name == "hand_force":
            x = F.avg_pool2d(rearrange(a, "b t s y x -> (b t s) 1 y x"), FORCE_POOL)  # (B*T*2, 1, 8, 8)
            return rearrange(x, "(b t s) 1 y x -> b t s (y x)", b=b, t=t)[:, h - 1:]
        x = a.reshape(b, t, SIDES, -1)[:, h - 1:]  # (B, F+1, 2, D)
        if name == "hand_pose":
            x = torch.cat([x, x - x[:, :1]], dim=-1)  # pose and its motion since the last context step
        return x

    def _mask(self, present: dict[str, Tensor], actions: dict[str, Tensor], name: str, batch: int) -> Tensor:
        m = present.get(name)
        if name not in actions or m is None:
            return torch.zeros(batch, dtype=torch.bool, device=self.sides.device)
        return m.to(device=self.sides.device, dtype=torch.bool)

    def occupancy(self, actions: dict[str, Tensor], present: dict[str, Tensor], batch: int, steps: int) -> Tensor:
        """Where each hand is at steps h-1..T-1: (B, F+1, 2, G, G) in (0, 1); 0.5 everywhere without body pose."""
        h, g, n = self.context_steps, self.grid, steps - self.context_steps + 1
        logits = torch.zeros(batch, n, SIDES, g, g, device=self.sides.device)
        if self.where_from and self.projection is None:
            m = self._mask(present, actions, WHERE_FROM, batch)
            if bool(m.any()):
                bp = actions[WHERE_FROM].to(logits).reshape(batch, steps, -1)[:, h - 1:]  # (B, n, 84)
                x = self._standardise(self.where_norm, rearrange(bp, "b n d -> (b n) d"), m.repeat_interleave(n))
                out = rearrange(self.where(x), "(b n) (s y x) -> b n s y x", b=batch, s=SIDES, y=g)
                logits = out * m[:, None, None, None, None].to(out.dtype)
        return torch.sigmoid(logits)

    def features(self, actions: dict[str, Tensor], present: dict[str, Tensor], batch: int, steps: int) -> Tensor:
        """What each hand does at steps h-1..T-1: (B, F+1, 2, 2C) ("now" channels, then "then" channels)."""
        h, n, device = self.context_steps, steps - self.context_steps + 1, self.sides.device
        parts, flags = [], []
        for name in self.what_from:
            m = self._mask(present, actions, name, batch)
            if bool(m.any()):
                x = self._hand_inputs(name, actions[name].to(device=device, dtype=torch.float32), h)  # (B, n, 2, D)
                rows = m.repeat_interleave(n * SIDES)
                x = self._standardise(self.what_norms[name], rearrange(x, "b n s d -> (b n s) d"), rows)
                x = rearrange(x, "(b n s) d -> b n s d", b=batch, n=n)
            else:
                x = torch.zeros(batch, n, SIDES, _per_hand_dim(name), device=device)
            parts.append(x)
            flags.append(m[:, None, None, None].float().expand(batch, n, SIDES, 1))
        side = self.sides[None, None].expand(batch, n, SIDES, SIDES)
        return self.what(torch.cat(parts + flags + [side], dim=-1))

    def forward(self, actions: dict[str, Tensor], present: dict[str, Tensor], batch: int,
                steps: int, context_frames: Tensor | None = None) -> HandMapOutput:
        """actions: {name: (B, T, *shape)}; present: {name: bool (B,)} -> the map (B, F, 2C, G, G), F = T - h,
        the occupancy it was placed with (B, F+1, 2, G, G), steps h-1..T-1, for :func:`placement_loss`
        (None for a map without body pose: its uniform occupancy has nothing to learn, or a projected one),
        and a ``projected_warp`` map's local warp (see :class:`HandMapOutput`). ``context_frames`` (B, h, 3, H, W)
        in [-1, 1] let a projected map calibrate each clip's camera pitch."""
        c, f = self.channels, steps - self.context_steps
        keypoints = flow = None
        if self.projection is not None and WHERE_FROM in actions:
            keypoints, flow = self._keypoints(actions, present, batch, steps, context_frames)  # (B, F+1, 14, G, G), (B, F, 4, H, W)
            # a hand is where any of its groups is; without body pose the blob-free 0.5 of a learned map
            where = rearrange(keypoints, "b n (s k) y x -> b n s k y x", s=SIDES).amax(dim=3)
            placed = self._mask(present, actions, WHERE_FROM, batch)[:, None, None, None, None]
            where = torch.where(placed, where, torch.full_like(where, 0.5))
        else:
            where = self.occupancy(actions, present, batch, steps)  # (B, F+1, 2, G, G)
        what = self.features(actions, present, batch, steps)  # (B, F+1, 2, 2C)
        now = torch.einsum("bnsyx,bnsc->bncyx", where[:, 1:], what[:, 1:, :, :c])  # (B, F, C, G, G)
        then = torch.einsum("bsyx,bsc->bcyx", where[:, 0], what[:, 0, :, c:])  # (B, C, G, G)
        out = torch.cat([now, then[:, None].expand(-1, f, -1, -1, -1)], dim=2)  # (B, F, 2C, G, G)
        if self.projection is not None:
            if keypoints is None:  # built with body pose, called without it
                keypoints = where.new_zeros(batch, f + 1, self.projection.channels, self.grid, self.grid)
            kp_then = keypoints[:, :1].expand(-1, f, -1, -1, -1)
            out = torch.cat([out, keypoints[:, 1:], kp_then], dim=2)  # (B, F, 2C + 28, G, G)
        known = torch.zeros(batch, dtype=torch.bool, device=self.sides.device)
        for name in ((WHERE_FROM,) if self.where_from else ()) + self.what_from:
            known |= self._mask(present, actions, name, batch)
        out = out * known[:, None, None, None, None].to(out.dtype)  # nothing present: no map
        if flow is not None:
            flow = flow * known[:, None, None, None, None].to(flow.dtype)
        # a projected map has no occupancy to learn: its placement comes from the camera
        return HandMapOutput(out, where if self.where_from and self.projection is None else None, flow)


def placement_loss(occupancy: Tensor, future: Tensor, anchor: Tensor, mask: Tensor) -> Tensor:
    """Self-supervision of *where*: the future frames' change beyond the ego-motion warp.

    What the warp of the last context frame leaves unexplained, ``|future - anchor|``, is where the hands
    and what they hold moved; pooled to the map's grid and scaled to a peak of 1 per frame, it is the
    target of the union of the two hands' occupancies (binary cross-entropy). It needs no labels, so it
    trains on real recordings as on the synthetic world; without it the occupancy learns only through the
    diffusion loss, slowly. ``occupancy`` (B, F+1, 2, G, G) from :class:`HandPlacementMap`; ``future`` and
    ``anchor`` (B, F, 3, H, W) in [-1, 1]; ``mask`` (B,) the samples whose body pose placed the hands."""
    if not bool(mask.any()):
        return occupancy.new_zeros(())
    g = occupancy.shape[-1]
    change = (future.float() - anchor.float()).abs().mean(dim=2)  # (B, F, H, W)
    target = F.adaptive_avg_pool2d(change, g)  # (B, F, G, G)
    target = target / target.flatten(-2).amax(-1).clamp_min(1e-6)[..., None, None]
    occ = occupancy[:, 1:].float()
    either = 1 - (1 - occ[:, :, 0]) * (1 - occ[:, :, 1])  # (B, F, G, G): a hand in the cell
    loss = F.binary_cross_entropy(either.clamp(1e-6, 1 - 1e-6), target.detach(), reduction="none")
    return loss[mask].mean()


__all__ = ["HandMapOutput", "HandPlacementMap", "PLACEMENTS", "placement_loss"]
