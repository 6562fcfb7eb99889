"""``ActionWarp``: what the actions say about *where* things move in the picture (ours, not in the paper).

An optional pipeline component beside the paper's action encoder. It reads the raw (normalised) action
signals and, optionally, the context frames, and hands the denoiser two things it already accepts:

* the **anchor** (B, F, 3, H, W): the last context frame moved to each future step, by the camera's
  ego-motion (:class:`~.ego_motion.EgoMotionHead`, an affine per frame from body pose and/or the motion the
  context frames show) and, with ``hand_placement="projected_warp"``, by the hands' own keypoint flow. A
  denoiser with ``target="warped_residual"`` diffuses only the difference from it.
* the **spatial condition** (B, F, C, G, G): where each hand is and what it does
  (:class:`~.hand_map.HandPlacementMap`), added to the denoiser's first feature map.

In egocentric video the camera rides on the head, so most of the pixel change is one global motion set by
body pose; a CPU-sized denoiser re-synthesises shifted texture only slowly, and a per-frame vector y°
cannot say where in the frame the hands act. This component gives both a geometric answer, trained by its
own losses (photometric for the warp, a label-free placement loss for a learned map).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import Tensor

from mmsim_core.configuration import config_init
from mmsim_core.models.action_warp.ego_motion import EgoMotionHead, warp
from mmsim_core.models.action_warp.hand_map import PLACEMENTS, WHAT_FROM, WHERE_FROM, HandPlacementMap
from mmsim_core.models.action_warp.hand_projection import ProjectionConfig
from mmsim_core.schema import CONTEXT_FRAMES, FRAME_SIZE, MODALITY_NAMES, check_modality_names


@dataclass
class ActionWarpConfig:
    """Sizes and parts of :class:`ActionWarp`. ``modalities``, ``context_steps`` and ``sample_size`` follow the
    simulator (``SimulatorConfig`` sets them); the rest choose what is built."""

    modalities: tuple[str, ...] = MODALITY_NAMES
    """The action modalities the simulator receives; parts skip those they read but do not get."""
    context_steps: int = CONTEXT_FRAMES
    """h: the warp moves the last context frame, step h-1."""
    sample_size: int = FRAME_SIZE
    ego_motion_from: tuple[str, ...] = ("body_pose",)
    """Modalities whose raw signals drive the ego-motion head (empty = no head unless ``context_motion``)."""
    ego_motion_hidden: int = 256
    context_motion: bool = False
    """The ego-motion head also reads the camera motion the context frames show, so a sample missing body
    pose (or a text-only model) still gets a warp. Needs ``context_steps >= 2``."""
    hand_map_channels: int = 0
    """Channels C of the hand placement map (C "now" + C "then" per future step); 0 = no map."""
    hand_map_grid: int = 16
    """Resolution G of the map (G x G cells over the frame)."""
    hand_map_hidden: int = 256
    hand_placement: str = "learned"
    """How the map finds the hands: ``learned`` (an MLP on body pose, trained by the placement loss),
    ``projected`` (their keypoints through the head camera; adds 28 keypoint channels) or ``projected_warp``
    (also moves the hands' pixels of the last context frame with their keypoints, in the anchor)."""
    camera: dict | None = None
    """:class:`~mmsim_core.models.action_warp.hand_projection.ProjectionConfig` fields of a projected map's
    initial camera rig; None = the defaults (the synthetic world's glasses)."""

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        self.ego_motion_from = tuple(self.ego_motion_from)
        self.context_motion = bool(self.context_motion)
        for name in ("modalities", "ego_motion_from"):
            try:
                check_modality_names(getattr(self, name))
            except ValueError as e:
                raise ValueError(f"action_warp.{name}: {e}") from None
        if self.hand_placement not in PLACEMENTS:
            raise ValueError(f"action_warp.hand_placement must be one of {list(PLACEMENTS)}, got {self.hand_placement!r}")
        if self.camera is not None:
            try:
                ProjectionConfig(**self.camera)
            except TypeError as e:
                raise ValueError(f"action_warp.camera: {e}") from None
        if self.hand_map_channels < 0:
            raise ValueError(f"action_warp.hand_map_channels must be >= 0 (0 = no map), got {self.hand_map_channels}")
        for name in ("ego_motion_hidden", "hand_map_grid", "hand_map_hidden", "sample_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"action_warp.{name} must be positive, got {getattr(self, name)!r}")
        if self.has_ego_motion and self.context_steps < 1:
            raise ValueError(f"action_warp.context_steps must be >= 1, got {self.context_steps}")
        if self.context_motion and self.context_steps < 2:
            raise ValueError(
                f"action_warp.context_motion needs context_steps >= 2 (a pair of frames to measure), got {self.context_steps}"
            )

    @property
    def ego_motion_modalities(self) -> tuple[str, ...]:
        """The ``ego_motion_from`` modalities the simulator actually receives."""
        return tuple(m for m in self.ego_motion_from if m in self.modalities)

    @property
    def has_ego_motion(self) -> bool:
        return bool(self.ego_motion_modalities) or self.context_motion

    @property
    def has_hand_map(self) -> bool:
        return self.hand_map_channels > 0 and any(m in self.modalities for m in (WHERE_FROM,) + WHAT_FROM)

    @property
    def builds_anything(self) -> bool:
        return self.has_ego_motion or self.has_hand_map

    @property
    def moves_hands(self) -> bool:
        """The anchor also moves the hands' pixels (a ``projected_warp`` map that can place them)."""
        return self.has_hand_map and self.hand_placement == "projected_warp" and WHERE_FROM in self.modalities

    @property
    def spatial_channels(self) -> int:
        """Channels of the spatial condition the denoiser receives (0 without a map)."""
        if not self.has_hand_map:
            return 0
        return HandPlacementMap.count_channels(self.modalities, self.hand_map_channels, self.hand_placement)


@dataclass
class ActionWarpOutput(BaseOutput):
    anchor: Tensor | None = None
    """(B, F, 3, H, W) the last context frame moved to each future step (None without frames to move or
    without a part that moves them)."""
    ego_motion: Tensor | None = None
    """(B, F, 2, 3) affine warps of the last context frame (None without an ego-motion head)."""
    spatial: Tensor | None = None
    """(B, F, C, G, G) the hand placement map (None without one)."""
    hand_occupancy: Tensor | None = None
    """(B, F+1, 2, G, G) where a learned map placed each hand at steps h-1..T-1, for the placement loss."""
    hand_flow: Tensor | None = None
    """(B, F, 4, H, W) a ``projected_warp`` map's local warp: offset x, y, how much the hands own each pixel
    now, and where they were."""


@config_init(ActionWarpConfig)
class ActionWarp(ModelMixin, ConfigMixin):
    """Raw actions (+ context frames) -> the anchor frame and spatial condition of the denoiser."""

    config_name = "config.json"

    def __init__(self, cfg: ActionWarpConfig):
        super().__init__()
        self.cfg = cfg
        self.ego_motion = None
        if cfg.has_ego_motion:
            self.ego_motion = EgoMotionHead(cfg.ego_motion_modalities, cfg.context_steps, cfg.ego_motion_hidden,
                                            cfg.context_motion)
        self.hand_map = None
        if cfg.has_hand_map:
            camera = ProjectionConfig(**cfg.camera) if cfg.camera is not None else None
            self.hand_map = HandPlacementMap(cfg.modalities, cfg.context_steps, cfg.hand_map_channels, cfg.hand_map_grid,
                                             cfg.hand_map_hidden, cfg.hand_placement, camera, cfg.sample_size)

    def set_pose_frame(self, stats) -> None:
        """Give a projected hand map the data's min-max statistics (it takes the signals back to cm)."""
        if self.hand_map is not None:
            self.hand_map.set_pose_frame(stats)

    def forward(
        self,
        actions: dict[str, Tensor],
        action_mask: dict[str, Tensor] | None,
        batch: int,
        num_steps: int,
        context_frames: Tensor | None = None,
    ) -> ActionWarpOutput:
        """
        Args:
            actions: {name: (B, T, *shape)} normalised signals, any subset.
            action_mask: {name: bool (B,)}; False = absent for that sample (missing keys = present).
            batch, num_steps: B and T (T = h + F).
            context_frames: (B, h, 3, H, W) in [-1, 1]; the anchor needs them, and so do a head with
                ``context_motion`` and a projected map's per-clip camera calibration.
        """
        cfg = self.cfg
        out = ActionWarpOutput()
        if num_steps <= cfg.context_steps:
            return out
        device = self.device
        present = {}
        for name in cfg.modalities:  # (B,) per modality, like the action encoder's
            if name not in actions:
                present[name] = torch.zeros(batch, dtype=torch.bool, device=device)
            elif action_mask is not None and name in action_mask:
                present[name] = action_mask[name].to(device=device, dtype=torch.bool)
            else:
                present[name] = torch.ones(batch, dtype=torch.bool, device=device)
        actions = {k: v for k, v in actions.items() if k in cfg.modalities}
        if self.ego_motion is not None and self.ego_motion.can_run(context_frames):
            out.ego_motion = self.ego_motion(actions, present, batch, num_steps, context_frames)
        if self.hand_map is not None:
            out.spatial, out.hand_occupancy, out.hand_flow = self.hand_map(actions, present, batch, num_steps,
                                                                           context_frames)
        if context_frames is not None and (out.ego_motion is not None or out.hand_flow is not None):
            out.anchor = self.anchor(context_frames, out.ego_motion, out.hand_flow)
        return out

    @staticmethod
    def anchor(context_frames: Tensor, ego_motion: Tensor | None, hand_flow: Tensor | None) -> Tensor:
        """The last of ``context_frames`` (B, h, C, H, W) warped by ``ego_motion`` (B, F, 2, 3; None = the
        identity) and moved with ``hand_flow`` (B, F, 4, H, W) where it puts the hands: (B, F, C, H, W)."""
        last = context_frames[:, -1]  # (B, C, H, W)
        if ego_motion is None:
            f = hand_flow.shape[1]
            ego_motion = torch.eye(2, 3, device=last.device, dtype=torch.float32).expand(last.shape[0], f, 2, 3)
        return warp(last, ego_motion, hand_flow)


__all__ = ["ActionWarp", "ActionWarpConfig", "ActionWarpOutput"]
