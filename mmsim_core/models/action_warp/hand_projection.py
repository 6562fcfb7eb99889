r"""Projected hand keypoints: the hands drawn where a head-mounted camera sees them (ours).

Not in the paper. :class:`~mmsim_core.models.action_warp.hand_map.HandPlacementMap` learns *where* the hands are
with an MLP on body pose, at a 16x16 grid; at CPU scale that never gets finer than a blob, and the
denoiser never learns to turn a finger configuration into finger pixels (``results/margin_ceiling``:
Ours has the same error as Body-pose only in the pixels hand pose, EMG and force decide, which hold
~62% of it). What is missing is geometry, and the geometry is known: Xsens gives 3D segment positions,
the world camera rides on the head. This module projects them.

Camera (the egocentric rig, a few learnable numbers). From the body pose's Head, Neck and upper-arm
segments (cm, CoM frame), per step:

    torso yaw   psi = atan2(v_y, v_x),            v = RightUpperArm - LeftUpperArm
    head tilt   d   = R_z(-psi) (Head - Neck);    pitch = pitch0 + atan2(d_y, d_z);  yaw = psi - asin(d_x / |d|)
    axes        fwd = R_z(yaw) (0, cos pitch, -sin pitch),  right = R_z(yaw) (1, 0, 0),  down = -(right x fwd)
    centre      c   = Head + R_z(yaw) (0, eye_forward, eye_up)
    pixel       (u, v) = (focal * x_c / z_c + c_u,  focal * y_c / z_c + c_v)   in units of the frame side

``pitch0`` (camera pitch at an upright head), the eye offset, focal length and principal point are
parameters, initialised to the synthetic world's rig as the centre-cropped 64x64 frames see it (a
calibration; for other recordings set :class:`ProjectionConfig` to theirs) and learned with the rest.
The per-subject spread of the true pitch0 (32-40 deg in the synthetic world, about +-5 px) is what
they cannot learn; the denoiser sees the hands in the context frames and the same map at the last
context step (the "then" channels), so it can measure the offset.

Keypoints per hand: the forearm (elbow -> carpus, 4 points) from body pose; with hand pose, the palm
(carpus, the thumb base and the four knuckles) and the five finger chains (segments and extrapolated
tips, densified to 7 points each). Each of the 7 groups is a heat channel: the max over its points of an
isotropic Gaussian of ``sigma`` frame-sides, zero behind the camera. Without hand pose, the five finger
channels and the palm's knuckles stay zero; without body pose nothing can be placed (hand pose is
carpus-relative) and the map is all zeros.

Inputs are the model's normalised signals; :meth:`ProjectedHandKeypoints.set_pose_frame` stores the
min-max statistics (buffers, saved with the weights) that take them back to centimetres.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsim_core import schema
from mmsim_core.models.action_warp.ego_motion import warp

logger = logging.getLogger(__name__)

SIDES = ("Left", "Right")
GROUPS = ("forearm", "palm", "thumb", "index", "middle", "ring", "pinky")
FOREARM_POINTS = 4
CHAIN_POINTS = 7


BODY = {name: schema.BODY_POSE_INDICES.index(schema.XSENS_BODY_SEGMENTS.index(name))
        for name in ("Head", "Neck", "T8", "Pelvis", "Left Upper Arm", "Right Upper Arm",
                     "Left Forearm", "Right Forearm", "Left Hand", "Right Hand")}
"""``body_pose[..., BODY[name], :]`` is that Xsens segment (cm minus CoM once denormalised)."""
FINGER_SEGMENT = [schema.HAND_POSE_INDICES.index(k) for k in range(schema.NUM_FINGER_SEGMENTS)]
"""``hand_pose[..., FINGER_SEGMENT[k], :]`` is Xsens finger segment k of that hand (carpus-relative)."""
# Xsens finger segment numbers within one hand (the order of ``schema.XSENS_FINGER_SEGMENTS``).
THUMB = (1, 2, 3)  # first metacarpal, proximal, distal
FINGERS = ((4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15), (16, 17, 18, 19))  # index..pinky: meta, prox, mid, dist
KNUCKLES = tuple(f[1] for f in FINGERS)  # proximal phalange origins = MCP joints
TIP_EXTENSION = {"thumb": 0.9, "finger": 0.8}
"""Fingertips extrapolated past the distal segment origin (Xsens has no tip segment)."""


@dataclass
class ProjectionConfig:
    """Initial egocentric rig, in the units of the model's square frames (one frame side = 1)."""

    pitch0_deg: float = 36.0
    """Camera pitch (down) at an upright head. Synthetic world: 32-40 deg per subject."""
    eye_offset_cm: tuple[float, float] = (5.0, 4.0)
    """Camera ahead of / above the Head segment."""
    focal: float = 220.0 / 180.0
    """Focal length in frame sides: the world camera's 220 px over the 180 px centre crop."""
    principal_point: tuple[float, float] = (0.5, 0.5)
    sigma: float = 1.25 / 64.0
    """Keypoint blob radius (frame sides): about a finger's width at 64x64."""
    calibration_deg: tuple[float, ...] = tuple(float(d) for d in range(-8, 9))
    """Pitch corrections :func:`calibrate_pitch` tries per clip (degrees); empty = no calibration."""
    flow_radius: float = 4.0 / 64.0
    """Reach of a keypoint's motion in :func:`keypoint_flow` (frame sides). On the synthetic test subject the
    moved anchor is best at 4 px of 64 (radius 2.5: -0.17 dB, 5.5: -0.01, 7: -0.12; 64 clips)."""

    def __post_init__(self):
        self.eye_offset_cm = tuple(float(v) for v in self.eye_offset_cm)
        self.principal_point = tuple(float(v) for v in self.principal_point)
        self.calibration_deg = tuple(float(v) for v in self.calibration_deg)
        if len(self.eye_offset_cm) != 2 or len(self.principal_point) != 2:
            raise ValueError("eye_offset_cm and principal_point must each have 2 values")
        if self.focal <= 0 or self.sigma <= 0 or self.flow_radius <= 0:
            raise ValueError(f"focal, sigma and flow_radius must be positive, got {self.focal}, {self.sigma}, "
                             f"{self.flow_radius}")


def _rz(angle: Tensor, v: Tensor) -> Tensor:
    """Rotate (..., 3) vectors ``v`` about z by ``angle`` (...)."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = v.unbind(-1)
    return torch.stack([c * x - s * y, s * x + c * y, z], dim=-1)


class EgocentricCamera(nn.Module):
    """Body pose (..., 28, 3) in cm -> the head camera: centre (..., 3) and rows right/down/forward (..., 3, 3)."""

    def __init__(self, cfg: ProjectionConfig):
        super().__init__()
        self.pitch0 = nn.Parameter(torch.tensor(math.radians(cfg.pitch0_deg)))
        self.eye_offset = nn.Parameter(torch.tensor(cfg.eye_offset_cm))
        self.log_focal = nn.Parameter(torch.tensor(math.log(cfg.focal)))
        self.principal_point = nn.Parameter(torch.tensor(cfg.principal_point))

    def pose(self, body: Tensor, pitch_offset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``pitch_offset`` (B,) radians: a per-sample correction of ``pitch0`` (:func:`calibrate_pitch`)."""
        head, neck = body[..., BODY["Head"], :], body[..., BODY["Neck"], :]
        v = body[..., BODY["Right Upper Arm"], :] - body[..., BODY["Left Upper Arm"], :]
        torso_yaw = torch.atan2(v[..., 1], v[..., 0])
        d = _rz(-torso_yaw, head - neck)
        head_pitch = torch.atan2(d[..., 1], d[..., 2])
        tilt = torch.asin((d[..., 0] / d.norm(dim=-1).clamp_min(1e-6)).clamp(-1.0, 1.0))
        yaw, pitch = torso_yaw - tilt, self.pitch0 + head_pitch
        if pitch_offset is not None:
            pitch = pitch + pitch_offset.reshape(pitch_offset.shape + (1,) * (pitch.dim() - 1))
        zero = torch.zeros_like(yaw)
        fwd = _rz(yaw, torch.stack([zero, torch.cos(pitch), -torch.sin(pitch)], dim=-1))
        right = _rz(yaw, torch.stack([torch.ones_like(yaw), zero, zero], dim=-1))
        down = -torch.linalg.cross(right, fwd)
        eye = torch.stack([zero, zero + self.eye_offset[0], zero + self.eye_offset[1]], dim=-1)
        return head + _rz(yaw, eye), torch.stack([right, down, fwd], dim=-2)

    def project(self, points: Tensor, centre: Tensor, rot: Tensor) -> tuple[Tensor, Tensor]:
        """points (..., P, 3), centre (..., 3), rot (..., 3, 3) -> uv (..., P, 2) in frame sides, depth (..., P) cm."""
        pc = torch.einsum("...ij,...pj->...pi", rot, points - centre[..., None, :])
        z = pc[..., 2]
        uv = torch.exp(self.log_focal) * pc[..., :2] / z.clamp_min(1e-3)[..., None] + self.principal_point
        return uv, z


def hand_keypoints(carpus: Tensor, elbow: Tensor, hand: Tensor | None) -> list[Tensor]:
    """One hand's keypoints per group (``GROUPS`` order), each (..., P, 3) in cm.

    ``carpus``/``elbow`` (..., 3) from body pose; ``hand`` (..., 24, 3) carpus-relative hand pose or None."""
    w = torch.linspace(0.0, 1.0, FOREARM_POINTS, device=carpus.device, dtype=carpus.dtype)
    forearm = elbow[..., None, :] + w[:, None] * (carpus - elbow)[..., None, :]
    if hand is None:
        return [forearm, carpus[..., None, :]] + [carpus.new_zeros(carpus.shape[:-1] + (0, 3))] * 5
    seg = carpus[..., None, :] + hand[..., FINGER_SEGMENT, :]  # (..., 20, 3)
    palm = torch.cat([carpus[..., None, :], seg[..., [THUMB[0], FINGERS[0][0], FINGERS[3][0]], :],
                      seg[..., list(KNUCKLES), :]], dim=-2)
    chains = [(THUMB, TIP_EXTENSION["thumb"])] + [(f[1:], TIP_EXTENSION["finger"]) for f in FINGERS]
    out = [forearm, palm]
    t = torch.linspace(0.0, 1.0, CHAIN_POINTS, device=carpus.device, dtype=carpus.dtype)
    for idx, ext in chains:
        joints = seg[..., list(idx), :]
        tip = joints[..., -1, :] + ext * (joints[..., -1, :] - joints[..., -2, :])
        poly = torch.cat([joints, tip[..., None, :]], dim=-2)  # (..., 4, 3)
        # densify the polyline: positions at CHAIN_POINTS even parameter values along its 3 pieces
        s = t * (poly.shape[-2] - 1)
        lo = s.floor().long().clamp(max=poly.shape[-2] - 2)
        frac = (s - lo.to(s.dtype))[:, None]
        out.append(poly[..., lo, :] + frac * (poly[..., lo + 1, :] - poly[..., lo, :]))
    return out


class ProjectedHandKeypoints(nn.Module):
    """Normalised body/hand pose (B, n, *shape) -> keypoint heat maps (B, n, 2 * len(GROUPS), G, G)."""

    def __init__(self, grid: int, with_hand_pose: bool, cfg: ProjectionConfig | None = None):
        super().__init__()
        self.cfg = cfg or ProjectionConfig()
        self.grid, self.with_hand_pose = int(grid), bool(with_hand_pose)
        self.camera = EgocentricCamera(self.cfg)
        # cm = normalised * scale + offset, per axis (min-max statistics); identity until set_pose_frame
        for name in ("body", "hand"):
            self.register_buffer(f"{name}_offset", torch.zeros(3))
            self.register_buffer(f"{name}_scale", torch.ones(3))
        self.register_buffer("pose_frame_set", torch.zeros((), dtype=torch.bool))
        self._warned_pose_frame = False

    CHANNELS = len(SIDES) * len(GROUPS)

    @property
    def channels(self) -> int:
        return self.CHANNELS

    def set_pose_frame(self, stats: schema.NormalizationStats) -> None:
        """Store the min-max statistics that take the normalised body and hand pose back to cm."""
        for name, modality in (("body", "body_pose"), ("hand", "hand_pose")):
            if modality not in stats.minimum:
                raise KeyError(f"the projected hand map needs min-max statistics for {modality!r}")
            lo = np.asarray(stats.minimum[modality], dtype=np.float32).reshape(-1, 3)
            hi = np.asarray(stats.maximum[modality], dtype=np.float32).reshape(-1, 3)
            if lo.shape[0] != 1:
                raise ValueError(f"{modality} statistics must be per axis (1, 3), got {lo.shape}")
            getattr(self, f"{name}_offset").copy_(torch.from_numpy(lo[0]))
            getattr(self, f"{name}_scale").copy_(torch.from_numpy(np.maximum(hi[0] - lo[0], 1e-6)))
        self.pose_frame_set.fill_(True)

    def splat(self, uv: Tensor, depth: Tensor) -> Tensor:
        """uv (..., P, 2), depth (..., P) -> (..., G, G): max over points of a Gaussian at each, 0 behind the camera."""
        g = self.grid
        centres = (torch.arange(g, device=uv.device, dtype=uv.dtype) + 0.5) / g
        du = (centres - uv[..., 0:1]) ** 2  # (..., P, G) along x
        dv = (centres - uv[..., 1:2]) ** 2  # (..., P, G) along y
        heat = torch.exp(-(dv[..., :, None] + du[..., None, :]) / (2 * self.cfg.sigma ** 2))  # (..., P, G, G)
        heat = heat * (depth > 2.0).to(heat.dtype)[..., None, None]
        return heat.amax(dim=-3) if heat.shape[-3] else heat.new_zeros(heat.shape[:-3] + (g, g))

    def points(self, body: Tensor, hand: Tensor | None, pitch_offset: Tensor | None = None,
               hand_rows: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        """body (B, n, 28, 3) normalised; hand (B, n, 2, 24, 3) normalised or None -> per (side, group), in
        ``SIDES`` x ``GROUPS`` order, the projected points: uv (B, n, P, 2) in frame sides and depth (B, n, P) cm.
        ``pitch_offset`` (B,): per-sample camera pitch correction (radians). ``hand_rows`` (B,) bool: the samples
        whose hand pose is real; the others' hand points get depth -1 (not drawn, not moved), which leaves them
        the forearm and the carpus, as with ``hand=None``."""
        if not bool(self.pose_frame_set) and not self._warned_pose_frame:
            logger.warning("projected hand map without min-max statistics: its input is taken as cm "
                           "(train with `mmsim train`, or call set_pose_frame)")
            self._warned_pose_frame = True
        body_cm = body.float() * self.body_scale + self.body_offset
        hand_cm = hand.float() * self.hand_scale + self.hand_offset if hand is not None else None
        centre, rot = self.camera.pose(body_cm, pitch_offset)  # (B, n, 3), (B, n, 3, 3)
        out = []
        for s, side in enumerate(SIDES):
            groups = hand_keypoints(body_cm[..., BODY[f"{side} Hand"], :], body_cm[..., BODY[f"{side} Forearm"], :],
                                    hand_cm[..., s, :, :] if hand_cm is not None else None)
            for g, points in enumerate(groups):
                uv, z = self.camera.project(points, centre, rot)
                if hand_rows is not None and hand_cm is not None and g > 0:  # palm and fingers come from hand pose
                    hidden = ~hand_rows[:, None, None].expand_as(z)
                    if g == GROUPS.index("palm"):
                        hidden = hidden.clone()
                        hidden[..., 0] = False  # the palm's first point is the carpus (body pose)
                    z = z.masked_fill(hidden, -1.0)
                out.append((uv, z))
        return out

    def heat(self, points: list[tuple[Tensor, Tensor]]) -> Tensor:
        """:meth:`points` -> heat maps (B, n, 14, G, G), one per (side, group)."""
        return torch.stack([self.splat(uv, z) for uv, z in points], dim=2)

    def forward(self, body: Tensor, hand: Tensor | None, hand_rows: Tensor | None = None) -> Tensor:
        """body (B, n, 28, 3) normalised; hand (B, n, 2, 24, 3) normalised or None -> (B, n, 14, G, G)."""
        return self.heat(self.points(body, hand, hand_rows=hand_rows))


def keypoint_flow(points: list[tuple[Tensor, Tensor]], size: int, radius: float) -> Tensor:
    """Where each pixel of the hands at step t was at the first step: a local warp, (B, n-1, 3, size, size).

    ``points``: :meth:`ProjectedHandKeypoints.points` at steps 0..n-1 (step 0 the last context step). Each
    keypoint visible at both steps moves by ``delta_k = uv_k(t) - uv_k(0)``; around where it is now, a pixel
    ``q`` takes the others' motion weighted by ``w_k(q) = exp(-|q - uv_k(t)|^2 / 2 radius^2)`` (first-order
    motion transfer with zero-order, translation-only keypoints):

        offset(q) = -sum_k w_k delta_k / sum_k w_k        (source = q + offset, in [-1, 1] grid units x 0.5)
        alpha(q)  = max_k w_k                             (how much the hands own the pixel)
        hide(p)   = max_k exp(-|p - uv_k(0)|^2 / 2 radius^2)   (where the hands were, first step's picture)

    Channels: offset_x, offset_y in the [-1, 1] units of ``F.grid_sample``, alpha and hide in [0, 1]."""
    uv = torch.cat([p[0] for p in points], dim=-2)  # (B, n, P, 2)
    z = torch.cat([p[1] for p in points], dim=-1)  # (B, n, P)
    seen = (z > 2.0)
    valid = (seen[:, :1] & seen[:, 1:]).to(uv.dtype)  # (B, n-1, P): in front of the camera at both steps
    now, delta = uv[:, 1:], uv[:, 1:] - uv[:, :1]  # (B, n-1, P, 2)
    centres = (torch.arange(size, device=uv.device, dtype=uv.dtype) + 0.5) / size
    wx = torch.exp(-((centres - now[..., 0:1]) ** 2) / (2 * radius**2))  # (B, n-1, P, X)
    wy = torch.exp(-((centres - now[..., 1:2]) ** 2) / (2 * radius**2))  # (B, n-1, P, Y)
    w = torch.einsum("bnpy,bnpx->bnpyx", wy * valid[..., None], wx)  # (B, n-1, P, Y, X)
    total = w.sum(dim=2).clamp_min(1e-8)
    offset = -torch.einsum("bnpyx,bnpc->bncyx", w, delta) / total[:, :, None] * 2.0  # frame sides -> [-1, 1]
    alpha = w.amax(dim=2) if w.shape[2] else total.new_zeros(total.shape)
    # where the hands were at the first step, in its own picture: what the warp must not carry along
    was = uv[:, 0]  # (B, P, 2)
    seen0 = seen[:, 0].to(uv.dtype)
    vx = torch.exp(-((centres - was[..., 0:1]) ** 2) / (2 * radius**2))  # (B, P, X)
    vy = torch.exp(-((centres - was[..., 1:2]) ** 2) / (2 * radius**2))  # (B, P, Y)
    hide = torch.einsum("bpy,bpx->bpyx", vy * seen0[..., None], vx)
    hide = hide.amax(dim=1) if hide.shape[1] else total.new_zeros(total.shape[:1] + total.shape[2:])  # (B, Y, X)
    hide = hide[:, None].expand_as(alpha)  # (B, n-1, Y, X)
    return torch.cat([offset, alpha[:, :, None], hide[:, :, None]], dim=2)


@torch.no_grad()
def calibrate_pitch(projection: ProjectedHandKeypoints, body: Tensor, hand: Tensor | None, first: Tensor,
                    last: Tensor, hand_rows: Tensor | None = None) -> Tensor:
    """Per clip, the pitch correction (radians, (B,)) under which the hands' keypoint flow best explains the
    context frames: ``first`` (B, 3, H, W) warped by the flow of the keypoints from its step to ``last``'s,
    for each of ``projection.cfg.calibration_deg``, against ``last`` (mean absolute error over the frame).

    The rig's pitch is the one camera number a subject changes (how the glasses sit; 32-40 deg across the
    synthetic world's subjects): a wrong pitch puts the hands' motion onto the background beside them, which
    the frames show. ``body``/``hand``: (B, 2, ...) normalised poses at the two steps; ``hand_rows`` as in
    :meth:`ProjectedHandKeypoints.points`."""
    cands = projection.cfg.calibration_deg
    b = body.shape[0]
    if not cands:
        return body.new_zeros(b)
    size = first.shape[-1]
    identity = torch.eye(2, 3, device=first.device, dtype=torch.float32).expand(b, 1, 2, 3)
    errors = []
    for deg in cands:
        offset = body.new_full((b,), math.radians(deg))
        flow = keypoint_flow(projection.points(body, hand, offset, hand_rows), size // 2, projection.cfg.flow_radius)
        # without the hide channel: the fill is the costly part and the moved hands decide the match
        flow = F.interpolate(flow[:, 0, :3].float(), size=first.shape[-2:], mode="bilinear", align_corners=False)
        moved = warp(first, identity, flow[:, None])[:, 0]  # (B, 3, H, W)
        errors.append((moved - last.float()).abs().flatten(1).mean(1))
    best = torch.stack(errors, dim=1).argmin(dim=1)  # (B,)
    return torch.tensor([math.radians(d) for d in cands], device=body.device, dtype=body.dtype)[best]


__all__ = ["EgocentricCamera", "ProjectedHandKeypoints", "ProjectionConfig", "GROUPS", "calibrate_pitch", "hand_keypoints",
           "keypoint_flow"]
