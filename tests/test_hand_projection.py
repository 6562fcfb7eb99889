"""Projected hand keypoints: the head camera, the keypoint heat maps, and the projected hand placement map."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from fixtures.models import randomize_zero_init
from mmsim_core.models.action_warp import ActionWarp
from mmsim_core.models.action_warp.hand_map import HandPlacementMap
from mmsim_core.models.action_warp.hand_projection import GROUPS, ProjectedHandKeypoints, ProjectionConfig
from mmsim_core.presets import get_preset
from mmsim_core.schema import MODALITIES, MODALITY_NAMES, NormalizationStats
from mmsim_core.synth import kinematics as kin
from mmsim_core.synth import world
from mmsim_core.training_step import MultisensorySimulator
from test_hand_map import actions as _actions
from test_hand_map import present as _present

H, F, T = 4, 8, 12
CROP_LEFT, CROP_SIDE = 70.0, 180.0  # the 320x180 world frame's centre crop


def standing_body(rng: np.random.Generator) -> np.ndarray:
    """A plausible raw body pose (28, 3) in cm: head above the neck, shoulders level, hands ahead and below."""
    bp = rng.normal(0.0, 1.0, (28, 3))
    bi = kin.BODY_INDEX
    bp[bi["Neck"]] = [0.0, 2.0, 45.0]
    bp[bi["Head"]] = [rng.normal(0, 1.5), 4.0 + rng.normal(0, 2), 60.0]
    bp[bi["Left Upper Arm"]], bp[bi["Right Upper Arm"]] = [-18.0, 0.0, 38.0], [18.0, 0.0, 38.0]
    bp[bi["Left Forearm"]], bp[bi["Right Forearm"]] = [-20.0, 15.0, 12.0], [20.0, 15.0, 12.0]
    bp[bi["Left Hand"]] = [-12.0 + rng.normal(0, 3), 40.0 + rng.normal(0, 3), 5.0]
    bp[bi["Right Hand"]] = [12.0 + rng.normal(0, 3), 40.0 + rng.normal(0, 3), 5.0]
    return bp


def world_pixels(bp: np.ndarray, points: np.ndarray, pitch0: float) -> np.ndarray:
    """The synthetic world's projection of ``points`` (N, 3), in the model's frame-side units."""
    scene = types.SimpleNamespace(pitch0=pitch0, image_size=world.IMAGE_SIZE, focal=world.FOCAL_PX)
    px, _ = world.camera_from_body(bp, scene).project(points)
    return np.stack([(px[:, 0] - CROP_LEFT) / CROP_SIDE, px[:, 1] / CROP_SIDE], axis=-1)


def test_camera_matches_the_world_rig():
    rng = np.random.default_rng(0)
    pitch0 = np.deg2rad(34.0)
    proj = ProjectedHandKeypoints(64, True, ProjectionConfig(pitch0_deg=34.0))  # identity pose frame: cm in
    for _ in range(5):
        bp = standing_body(rng)
        points = bp[[kin.BODY_INDEX["Left Hand"], kin.BODY_INDEX["Right Hand"], kin.BODY_INDEX["Right Forearm"]]]
        body = torch.as_tensor(bp, dtype=torch.float32)
        with torch.no_grad():
            centre, rot = proj.camera.pose(body)
            uv, z = proj.camera.project(torch.as_tensor(points, dtype=torch.float32), centre, rot)
        assert (z > 0).all()
        np.testing.assert_allclose(uv.numpy(), world_pixels(bp, points, pitch0), atol=1e-4)


def test_heat_maps_peak_at_the_projected_hands_and_are_differentiable():
    rng = np.random.default_rng(1)
    bp = standing_body(rng)
    hand = rng.normal(0.0, 3.0, (2, 24, 3)).astype(np.float32)
    proj = ProjectedHandKeypoints(64, True, ProjectionConfig(pitch0_deg=36.0))
    body_t = torch.as_tensor(bp, dtype=torch.float32)[None, None]
    maps = proj(body_t, torch.as_tensor(hand)[None, None])  # (1, 1, 14, 64, 64)
    assert maps.shape == (1, 1, 2 * len(GROUPS), 64, 64)
    assert float(maps.detach().min()) >= 0.0 and float(maps.detach().max()) <= 1.0
    # the right palm channel peaks at the right carpus' pixel (the carpus is one of its points)
    u, v = world_pixels(bp, bp[[kin.BODY_INDEX["Right Hand"]]], np.deg2rad(36.0))[0]
    palm = maps[0, 0, len(GROUPS) + GROUPS.index("palm")]
    assert float(palm.detach()[int(v * 64), int(u * 64)]) > 0.5
    # the camera's numbers learn through the maps
    maps.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in proj.camera.parameters())


def test_without_hand_pose_only_forearm_and_carpus_are_drawn():
    bp = torch.as_tensor(standing_body(np.random.default_rng(2)), dtype=torch.float32)[None, None]
    proj = ProjectedHandKeypoints(32, False)
    maps = proj(bp, None)[0, 0]  # (14, 32, 32)
    # a sample marked without hand pose draws exactly what no hand pose draws, whatever its hand values
    junk = torch.randn(1, 1, 2, 24, 3) * 5
    torch.testing.assert_close(proj(bp, junk, hand_rows=torch.tensor([False]))[0, 0], maps, atol=0, rtol=0)
    assert not torch.equal(proj(bp, junk, hand_rows=torch.tensor([True]))[0, 0], maps)
    k = len(GROUPS)
    for side in (0, 1):
        assert maps[side * k + GROUPS.index("forearm")].max() > 0.5
        assert maps[side * k + GROUPS.index("palm")].max() > 0.5  # the carpus alone
        assert torch.equal(maps[side * k + 2: (side + 1) * k], torch.zeros_like(maps[side * k + 2: (side + 1) * k]))


def test_points_behind_the_camera_draw_nothing():
    bp = standing_body(np.random.default_rng(3))
    bp[kin.BODY_INDEX["Right Hand"]] = bp[kin.BODY_INDEX["Head"]] + [0.0, -30.0, 0.0]  # behind the head
    bp[kin.BODY_INDEX["Right Forearm"]] = bp[kin.BODY_INDEX["Head"]] + [0.0, -40.0, 0.0]
    bp[kin.BODY_INDEX["Left Hand"]] = [-4.0, 45.0, 30.0]  # in the middle of the picture
    u, v = world_pixels(bp, bp[[kin.BODY_INDEX["Left Hand"]]], np.deg2rad(36.0))[0]
    assert 0.1 < u < 0.9 and 0.1 < v < 0.9
    maps = ProjectedHandKeypoints(64, False)(torch.as_tensor(bp, dtype=torch.float32)[None, None], None)[0, 0]
    k = len(GROUPS)
    assert maps[k: k + 2].max() == 0  # right forearm and palm
    assert maps[:2].max() > 0.5  # the left hand is still in front


def test_pose_frame_takes_normalised_signals_back_to_cm():
    rng = np.random.default_rng(4)
    bp = standing_body(rng).astype(np.float32)
    hand = rng.normal(0.0, 3.0, (2, 24, 3)).astype(np.float32)
    stats = NormalizationStats(minimum={"body_pose": np.array([[-50.0, -10.0, -100.0]], np.float32),
                                        "hand_pose": np.array([[[-15.0, -5.0, -20.0]]], np.float32)},
                               maximum={"body_pose": np.array([[50.0, 70.0, 80.0]], np.float32),
                                        "hand_pose": np.array([[[15.0, 20.0, 5.0]]], np.float32)})
    from mmsim_core.schema import normalize

    raw = ProjectedHandKeypoints(32, True)
    frame = ProjectedHandKeypoints(32, True)
    assert not bool(frame.pose_frame_set)
    frame.set_pose_frame(stats)
    assert bool(frame.pose_frame_set)
    a = raw(torch.as_tensor(bp)[None, None], torch.as_tensor(hand)[None, None])
    b = frame(torch.as_tensor(normalize("body_pose", bp, stats))[None, None],
              torch.as_tensor(normalize("hand_pose", hand, stats))[None, None])
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    with pytest.raises(KeyError, match="body_pose"):
        frame.set_pose_frame(NormalizationStats())


def pose_stats(body_cm: float, hand_cm: float = 15.0) -> NormalizationStats:
    """Min-max statistics of +-body_cm for body pose and +-hand_cm for hand pose, per axis."""
    return NormalizationStats(minimum={"body_pose": np.full((1, 3), -body_cm, np.float32),
                                       "hand_pose": np.full((1, 1, 3), -hand_cm, np.float32)},
                              maximum={"body_pose": np.full((1, 3), body_cm, np.float32),
                                       "hand_pose": np.full((1, 1, 3), hand_cm, np.float32)})


def test_projected_map_channels_and_missing_modalities():
    torch.manual_seed(0)
    c, g, k = 3, 16, 2 * len(GROUPS)
    hm = HandPlacementMap(MODALITY_NAMES, H, channels=c, grid=g, hidden=32, placement="projected")
    randomize_zero_init(hm, seed=0, std=0.5)
    assert hm.out_channels == 2 * c + 2 * k == HandPlacementMap.count_channels(MODALITY_NAMES, c, "projected")
    acts = _actions()
    out, occ, flow = hm(acts, _present(body_pose=[1], hand_pose=[2]), 3, T)
    assert flow is None  # only projected_warp moves pixels
    assert occ is None  # nothing to learn by the placement loss
    assert out.shape == (3, F, 2 * c + 2 * k, g, g) and torch.isfinite(out).all()
    keypoints = out[:, :, 2 * c:]
    assert keypoints[0].abs().sum() > 0
    assert torch.equal(keypoints[1], torch.zeros_like(keypoints[1]))  # no body pose: nothing placed
    # no hand pose: the same forearm as with it, no fingers
    fingers = [s * len(GROUPS) + i for s in (0, 1) for i in range(2, len(GROUPS))]
    assert keypoints[2][:, fingers].abs().sum() == 0 and keypoints[0][:, fingers].abs().sum() > 0
    alone = hm(acts, _present(hand_pose=[0, 1, 2]), 3, T)
    torch.testing.assert_close(alone.map[2, :, 2 * c:], keypoints[2])
    # the "then" keypoints (last context step) are the same for every future frame
    then = out[:, :, 2 * c + k:]
    torch.testing.assert_close(then, then[:, :1].expand_as(then))
    # a projected map needs body pose; without it the map falls back to the learned/uniform one
    no_body = tuple(m for m in MODALITY_NAMES if m != "body_pose")
    assert HandPlacementMap(no_body, H, channels=c, grid=g, placement="projected").out_channels == 2 * c
    assert HandPlacementMap.count_channels(no_body, c, "projected") == 2 * c


def test_preset_gives_the_denoiser_the_keypoint_channels():
    cfg = get_preset("mmsim-tiny", action_warp={"hand_map_channels": 2, "hand_placement": "projected"},
                     denoiser={"spatial_cells": 4})
    assert cfg.denoiser.spatial_channels == 2 * 2 + 2 * 2 * len(GROUPS)


def test_projected_map_trains_and_keeps_its_pose_frame():
    torch.manual_seed(0)
    cfg = get_preset("mmsim-tiny", condition_drop_prob=0.0,
                     action_warp={"hand_map_channels": 2, "hand_placement": "projected", "hand_map_grid": 16,
                                  "camera": {"pitch0_deg": 30.0}},
                     denoiser={"spatial_cells": 4})
    sim = MultisensorySimulator.from_config(cfg).train()
    stats = pose_stats(body_cm=60.0)
    sim.action_warp.set_pose_frame(stats)
    proj = sim.action_warp.hand_map.projection
    assert np.isclose(float(proj.camera.pitch0.detach()), np.deg2rad(30.0))
    assert bool(proj.pose_frame_set) and torch.allclose(proj.body_scale, torch.full((3,), 120.0))
    # the pose frame is part of the weights, so a saved pipeline keeps it
    state = sim.action_warp.state_dict()
    assert {"hand_map.projection.pose_frame_set", "hand_map.projection.body_scale"} <= set(state)
    randomize_zero_init(sim.denoiser.spatial_in, seed=0, std=0.5)
    rng = np.random.default_rng(0)
    batch = {"context": rng.integers(0, 256, (4, H, 64, 64, 3), dtype=np.uint8),
             "future": rng.integers(0, 256, (4, F, 64, 64, 3), dtype=np.uint8),
             "actions": {n: rng.random((4, T, *MODALITIES[n].shape), dtype=np.float32) for n in MODALITY_NAMES}}
    losses = sim(batch, generator=torch.Generator().manual_seed(0))
    assert float(losses.placement) == 0.0
    losses.total.backward()
    assert proj.camera.log_focal.grad is not None

    pipe = sim.eval().to_pipeline(normalization_stats=stats)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(context=batch["context"][:2], actions={n: v[:2] for n, v in batch["actions"].items()},
              num_inference_steps=1)
    assert pipe(**kw, generator=torch.Generator().manual_seed(0)).frames.shape == (2, F, 64, 64, 3)


def test_keypoint_flow_moves_pixels_with_their_keypoints():
    from mmsim_core.models.action_warp.hand_projection import keypoint_flow

    # one visible keypoint moving from (0.25, 0.5) to (0.5, 0.5); one behind the camera at the second step
    uv = torch.tensor([[[[0.25, 0.5], [0.8, 0.8]], [[0.5, 0.5], [0.8, 0.2]]]])  # (B=1, n=2, P=2, 2)
    z = torch.tensor([[[50.0, 50.0], [50.0, -5.0]]])
    flow = keypoint_flow([(uv, z)], 32, radius=2.0 / 32)  # (1, 1, 4, 32, 32)
    assert flow.shape == (1, 1, 4, 32, 32)
    offset, alpha, hide = flow[0, 0, :2], flow[0, 0, 2], flow[0, 0, 3]
    assert float(alpha[16, 16]) > 0.8 and float(alpha[2, 2]) < 1e-3
    assert float(hide[16, 8]) > 0.8 and float(hide[16, 16]) < 1e-3  # where the keypoint was, not where it is
    assert float(hide[25, 25]) > 0.8  # the second keypoint was visible at the first step
    assert float(alpha[6, 25]) < 1e-3  # the keypoint behind the camera moves nothing
    # around its new place, pixels come from a quarter frame to the left: -0.25 frame sides = -0.5 grid units
    torch.testing.assert_close(offset[:, 15:17, 15:17], torch.tensor([-0.5, 0.0])[:, None, None].expand(2, 2, 2))


def test_anchor_moves_the_hand_pixels_with_the_flow():
    from mmsim_core.models.action_warp.ego_motion import warp

    frame = -torch.ones(1, 3, 32, 32)
    frame[:, :, 14:18, 6:10] = 1.0  # a bright patch centred at x = 0.25 on a dark background
    uv = torch.tensor([[[[0.25, 0.5]], [[0.5, 0.5]]]])
    from mmsim_core.models.action_warp.hand_projection import keypoint_flow

    flow = keypoint_flow([(uv, torch.full((1, 2, 1), 50.0))], 32, radius=3.0 / 32)
    identity = torch.eye(2, 3).expand(1, 1, 2, 3)
    moved = warp(frame, identity, flow)[0, 0]  # (3, 32, 32)
    assert float(moved[0, 16, 16]) > 0.8  # the patch is now at x = 0.5
    assert float(moved[0, 16, 8]) < -0.8  # and gone from where it was: filled from the background around it
    torch.testing.assert_close(warp(frame, identity, flow[:, :, :3])[0, 0, :, 16, 16], moved[:, 16, 16])
    assert float(warp(frame, identity, flow[:, :, :3])[0, 0, 0, 16, 8]) > 0.5  # without hide, a ghost stays
    torch.testing.assert_close(warp(frame, identity)[0, 0], frame[0])  # no flow: the affine alone


def test_projected_warp_map_hands_the_flow_to_the_anchor():
    torch.manual_seed(0)
    warp_cfg = {"hand_map_channels": 2, "hand_placement": "projected_warp", "hand_map_grid": 16}
    cfg = get_preset("mmsim-tiny", condition_drop_prob=0.0, action_warp=warp_cfg, denoiser={"spatial_cells": 4})
    sim = MultisensorySimulator.from_config(cfg).train()
    stats = pose_stats(body_cm=100.0)
    sim.action_warp.set_pose_frame(stats)
    from mmsim_core.schema import normalize

    acts = _actions(b=2)  # a standing body; the hands' fingers move at random around the carpus
    body = normalize("body_pose", standing_body(np.random.default_rng(5)).astype(np.float32), stats)
    acts["body_pose"] = torch.as_tensor(body)[None, None].expand(2, T, -1, -1).contiguous()
    out = sim.action_warp.hand_map(acts, _present(b=2, body_pose=[1]), 2, T)
    assert out.flow.shape == (2, F, 4, 64, 64)
    assert out.flow[1].abs().sum() == 0  # no body pose: nothing moves
    assert float(out.flow[0, :, 2].detach().max()) > 0.5
    # the component's anchor is the last context frame moved by that flow (the untrained head: no ego-motion)
    context = torch.rand(2, H, 3, 64, 64) * 2 - 1
    moved = sim.action_warp.eval()(acts, {"body_pose": torch.tensor([True, False])}, 2, T, context)
    assert moved.hand_flow.shape == (2, F, 4, 64, 64)
    torch.testing.assert_close(moved.anchor, ActionWarp.anchor(context, moved.ego_motion, moved.hand_flow))
    torch.testing.assert_close(moved.anchor[1], context[1, -1:].expand(F, -1, -1, -1))  # no body pose: no move
    assert not torch.allclose(moved.anchor[0], context[0, -1:].expand(F, -1, -1, -1))
    sim.train()

    rng = np.random.default_rng(0)
    batch = {"context": rng.integers(0, 256, (4, H, 64, 64, 3), dtype=np.uint8),
             "future": rng.integers(0, 256, (4, F, 64, 64, 3), dtype=np.uint8),
             "actions": {n: rng.random((4, T, *MODALITIES[n].shape), dtype=np.float32) for n in MODALITY_NAMES}}
    batch["actions"]["body_pose"] = np.broadcast_to(body, (4, T) + body.shape).copy()
    losses = sim(batch, generator=torch.Generator().manual_seed(0))
    losses.motion.backward()  # the photometric loss of the moved anchor reaches the camera
    assert sim.action_warp.hand_map.projection.camera.pitch0.grad is not None
    pipe = sim.eval().to_pipeline()
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(context=batch["context"][:2], actions={n: v[:2] for n, v in batch["actions"].items()},
                  num_inference_steps=1, generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (2, F, 64, 64, 3)
    # a warp that moves the hands is only built with a target that uses the anchor
    with pytest.raises(ValueError, match="needs denoiser.target='warped_residual'"):
        get_preset("mmsim-tiny", action_warp={**warp_cfg, "ego_motion_from": ()}, denoiser={"target": "frames"})


def test_calibrate_pitch_finds_the_rig_the_context_frames_show():
    from mmsim_core.models.action_warp.hand_projection import calibrate_pitch

    rng = np.random.default_rng(6)
    b0 = standing_body(rng)
    b1 = b0.copy()
    for side in ("Left Hand", "Right Hand"):  # the hands move 4 cm right and 3 cm forward between the steps
        b1[kin.BODY_INDEX[side]] += [4.0, 3.0, 0.0]
    body = torch.as_tensor(np.stack([b0, b1]), dtype=torch.float32)[None]  # (1, 2, 28, 3)
    hand = torch.as_tensor(rng.normal(0.0, 3.0, (1, 1, 2, 24, 3)), dtype=torch.float32).expand(1, 2, 2, 24, 3)
    true = ProjectedHandKeypoints(64, True, ProjectionConfig(pitch0_deg=39.0, sigma=2.0 / 64))
    background = torch.as_tensor(rng.uniform(-1, 1, (1, 3, 64, 64)), dtype=torch.float32)
    with torch.no_grad():
        heat = true(body, hand).amax(dim=2)[0]  # (2, 64, 64): where the hands are at each step
    first, last = (background * (1 - h) + h for h in heat[:, None, None])  # skin-white hands on a texture
    guess = ProjectedHandKeypoints(64, True, ProjectionConfig(pitch0_deg=36.0))
    offset = calibrate_pitch(guess, body, hand, first, last)
    assert offset.shape == (1,) and abs(np.degrees(float(offset[0])) - 3.0) <= 1.0 + 1e-6  # 1-degree candidates
    none = ProjectedHandKeypoints(64, True, ProjectionConfig(calibration_deg=()))
    assert float(calibrate_pitch(none, body, hand, first, last)[0]) == 0.0
