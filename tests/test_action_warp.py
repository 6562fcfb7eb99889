"""The action warp component: its config, what it builds and outputs, and how the simulator config links it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mmsim_core.models.action_warp import ActionWarp, ActionWarpConfig
from mmsim_core.models.action_warp.ego_motion import warp
from mmsim_core.presets import build_components, get_preset
from mmsim_core.schema import MODALITIES, MODALITY_NAMES

IDENTITY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
H, F, T = 4, 8, 12


def _actions(b=2, seed=0, names=MODALITY_NAMES) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {n: torch.from_numpy(rng.random((b, T, *MODALITIES[n].shape), dtype=np.float32)) for n in names}


def _frames(b=2, seed=0, size=32) -> torch.Tensor:
    """Smooth random context frames (B, h, 3, H, W) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b * H, 3, size // 4, size // 4, generator=g) * 2 - 1
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.view(b, H, 3, size, size)


def _build(**fields) -> ActionWarp:
    torch.manual_seed(0)
    return ActionWarp.from_config_object(ActionWarpConfig(ego_motion_hidden=16, hand_map_hidden=16, sample_size=32,
                                                          **fields))


@pytest.mark.parametrize(
    "fields, msg",
    [
        ({"ego_motion_from": ("gaze",)}, "action_warp.ego_motion_from: modality must be one of"),
        ({"hand_map_channels": -1}, "action_warp.hand_map_channels must be >= 0"),
        ({"hand_map_channels": 2, "hand_placement": "guessed"}, "action_warp.hand_placement must be one of"),
        ({"hand_map_channels": 2, "hand_placement": "projected", "camera": {"fov": 1.0}}, "action_warp.camera"),
        ({"context_motion": True, "context_steps": 1}, "action_warp.context_motion needs context_steps >= 2"),
        ({"hand_map_grid": 0}, "action_warp.hand_map_grid must be positive"),
    ],
)
def test_config_validates_early(fields, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        ActionWarpConfig(**fields)


def test_builds_and_outputs_only_what_is_configured():
    acts, frames = _actions(), _frames()
    nothing = ActionWarpConfig(ego_motion_from=())
    assert not nothing.builds_anything
    out = _build().eval()(acts, None, 2, T, frames)
    assert out.ego_motion.shape == (2, F, 2, 3) and out.anchor.shape == (2, F, 3, 32, 32)
    assert out.spatial is None and out.hand_occupancy is None and out.hand_flow is None
    # a model without body pose gets no head rather than an error (e.g. the "only EMG" ablation)
    emg_only = ActionWarpConfig(modalities=("emg",), ego_motion_from=("body_pose",))
    assert emg_only.ego_motion_modalities == () and not emg_only.builds_anything
    with_map = _build(hand_map_channels=2, hand_map_grid=8).train()
    out = with_map(acts, None, 2, T, frames)
    assert out.spatial.shape == (2, F, 4, 8, 8) and with_map.cfg.spatial_channels == 4
    assert out.hand_occupancy.shape == (2, F + 1, 2, 8, 8)
    # only context frames: nothing to predict
    assert with_map(acts, None, 2, H, frames).ego_motion is None


def test_anchor_is_the_last_context_frame_moved_by_the_ego_motion():
    aw = _build().eval()
    with torch.no_grad():
        aw.ego_motion.net[-1].bias.normal_()  # a head that moves the camera
    acts, frames = _actions(), _frames()
    out = aw(acts, None, 2, T, frames)
    assert not torch.allclose(out.ego_motion, IDENTITY.expand(2, F, 2, 3))
    torch.testing.assert_close(out.anchor, warp(frames[:, -1], out.ego_motion))
    torch.testing.assert_close(ActionWarp.anchor(frames, out.ego_motion, None), out.anchor)
    # without the frames the warp is still predicted, but there is nothing to move
    alone = aw(acts, None, 2, T)
    assert alone.anchor is None
    torch.testing.assert_close(alone.ego_motion, out.ego_motion)
    # a sample whose body pose is absent is not moved
    masked = aw(acts, {"body_pose": torch.tensor([True, False])}, 2, T, frames)
    torch.testing.assert_close(masked.anchor[1], frames[1, -1:].expand(F, -1, -1, -1))
    torch.testing.assert_close(masked.anchor[0], out.anchor[0])


def test_simulator_config_sets_the_warp_geometry_and_rejects_a_warp_no_target_uses():
    cfg = get_preset("mmsim-tiny", context_frames=2, future_frames=4, sample_size=32,
                     action_encoder={"modalities": ("emg", "body_pose")})
    assert cfg.action_warp.modalities == ("emg", "body_pose")
    assert cfg.action_warp.context_steps == 2 and cfg.action_warp.sample_size == 32
    assert cfg.denoiser.target == "warped_residual"
    msg = "needs denoiser.target='warped_residual'"
    with pytest.raises(ValueError, match=msg):
        get_preset("mmsim-tiny", denoiser={"target": "frames"})
    with pytest.raises(ValueError, match=msg):
        get_preset("mmsim-tiny", denoiser={"target": "frames"}, action_warp={"ego_motion_from": (), "context_motion": True})
    # a warp that builds nothing is no component, whatever the target
    plain = get_preset("mmsim-tiny", denoiser={"target": "frames"}, action_warp={"ego_motion_from": ()})
    assert not plain.action_warp.has_ego_motion and build_components(plain)["action_warp"] is None
    assert build_components(get_preset("mmsim-tiny", action_warp=None))["action_warp"] is None
