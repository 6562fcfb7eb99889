"""The action warp's hand placement map (where each hand is, what it does, as an image) and the denoiser's
spatial input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.models import randomize_zero_init
from mmsim_core.models.denoiser import DenoiserConfig, VideoDenoiser
from mmsim_core.models.action_warp.hand_map import HandPlacementMap
from mmsim_core.presets import get_preset
from mmsim_core.schema import MODALITIES, MODALITY_NAMES
from mmsim_core.training_step import MultisensorySimulator

H, F, T, C, G = 4, 8, 12, 3, 8


def actions(b=3, seed=0, names=MODALITY_NAMES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(b, T, *MODALITIES[n].shape, generator=g) for n in names}


def present(b=3, **absent) -> dict[str, torch.Tensor]:
    """All present, except ``name=[rows]`` absent."""
    out = {n: torch.ones(b, dtype=torch.bool) for n in MODALITY_NAMES}
    for n, rows in absent.items():
        out[n][rows] = False
    return out


def trained_like(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised layers values (the occupancy logits start at exactly 0 = uniform)."""
    randomize_zero_init(module, seed=seed, std=0.5)
    return module


def hand_map(modalities=MODALITY_NAMES) -> HandPlacementMap:
    torch.manual_seed(0)
    return trained_like(HandPlacementMap(modalities, H, channels=C, grid=G, hidden=32))


def spatial_spread(m: torch.Tensor) -> torch.Tensor:
    """Per (sample, frame, channel): max - min over the grid."""
    return m.flatten(-2).amax(-1) - m.flatten(-2).amin(-1)


def test_shape_and_all_absent_sample_is_zero():
    hm = hand_map().train()
    out, occ, _ = hm(actions(), present(**{n: [2] for n in MODALITY_NAMES}), 3, T)
    assert occ.shape == (3, F + 1, 2, G, G)
    assert out.shape == (3, F, 2 * C, G, G) and hm.out_channels == 2 * C
    assert torch.isfinite(out).all()
    assert out[:2].abs().sum() > 0 and torch.equal(out[2], torch.zeros_like(out[2]))
    # the "then" channels (last context step) are the same for every future frame
    torch.testing.assert_close(out[:, :, C:], out[:, :1, C:].expand_as(out[:, :, C:]))


def test_location_comes_from_body_pose_only():
    hm = hand_map().eval()
    acts = actions()
    with_body = hm(acts, present(), 3, T)[0]
    assert (spatial_spread(with_body) > 1e-4).all()  # the hands are somewhere
    without_body = hm(acts, present(body_pose=[0, 1, 2]), 3, T)[0]
    assert spatial_spread(without_body).max() < 1e-6  # uniform: no location it cannot know
    # moving the body moves the hands; the fingers, force and EMG change what is there, never where
    acts2 = {**acts, "hand_pose": acts["hand_pose"].flip(0), "emg": acts["emg"].flip(0)}
    torch.testing.assert_close(hm.occupancy(acts2, present(), 3, T), hm.occupancy(acts, present(), 3, T))
    assert (hm(acts2, present(), 3, T)[0] - with_body).abs().max() > 1e-4
    moved = {**acts, "body_pose": acts["body_pose"].flip(0)}
    assert (hm.occupancy(moved, present(), 3, T) - hm.occupancy(acts, present(), 3, T)).abs().max() > 1e-3


def test_body_pose_alone_still_places_the_hands():
    hm = hand_map(("body_pose",)).eval()
    assert hm.what_from == ()
    out = hm(actions(names=("body_pose",)), present(), 3, T)[0]
    assert (spatial_spread(out) > 1e-4).all()


def test_hand_pose_alone_is_global():
    hm = hand_map(("hand_pose",)).eval()
    out, occupancy, _ = hm(actions(names=("hand_pose",)), present(), 3, T)
    assert spatial_spread(out).max() < 1e-6 and out.abs().max() > 0
    assert occupancy is None  # nothing to place, nothing for the placement loss to train


def test_absent_modality_of_one_sample_does_not_touch_the_others():
    hm = hand_map().eval()
    acts = actions()
    a = hm(acts, present(hand_force=[1], emg=[1]), 3, T)[0]
    b = hm({**acts, "hand_force": torch.rand_like(acts["hand_force"])}, present(hand_force=[0, 1, 2], emg=[1]), 3, T)[0]
    torch.testing.assert_close(a[0], hm(acts, present(), 3, T)[0][0])
    # sample 1 has no force in either call, so its force values cannot matter
    c = hm({**acts, "hand_force": torch.rand_like(acts["hand_force"])}, present(hand_force=[1], emg=[1]), 3, T)[0]
    torch.testing.assert_close(a[1], c[1])
    assert (a[0] - b[0]).abs().max() > 0


def test_training_statistics_ignore_absent_rows():
    hm = hand_map().train()
    acts = actions(b=4)
    junk = {**acts, "emg": acts["emg"].clone()}
    junk["emg"][3] = 1e6  # absent: must not leak into the batch statistics
    a = hm(acts, present(b=4, emg=[3]), 4, T)[0]
    b = hm(junk, present(b=4, emg=[3]), 4, T)[0]
    torch.testing.assert_close(a, b)


def test_needs_something_it_can_read():
    with pytest.raises(ValueError, match="needs body_pose or a hand modality"):
        HandPlacementMap((), H)


def test_simulator_config_links_the_action_warp_and_the_denoiser():
    cfg = get_preset("mmsim-tiny", action_warp={"hand_map_channels": 4})
    assert cfg.denoiser.spatial_channels == cfg.action_warp.spatial_channels == 8
    assert get_preset("mmsim-tiny").denoiser.spatial_channels == 0
    text_only = get_preset("mmsim-tiny", text_encoder="bow", text_kind="verb",
                           action_encoder={"modalities": (), "text_dim": 16}, action_warp={"hand_map_channels": 4})
    assert not text_only.action_warp.has_hand_map and text_only.denoiser.spatial_channels == 0


def test_denoiser_spatial_input_starts_as_identity_then_conditions():
    cfg = DenoiserConfig(patch_size=4, block_channels=(32, 64), attention_levels=(False, True), attention_head_dim=16,
                         cross_attention_dim=32, norm_groups=8, target="warped_residual", spatial_channels=2 * C)
    torch.manual_seed(0)
    den = VideoDenoiser.from_config_object(cfg).eval()
    trained_like(den.conv_out, 1)
    sample, ctx = torch.randn(2, F, 3, 64, 64), torch.rand(2, H, 3, 64, 64) * 2 - 1
    y = torch.randn(2, H + F, 32)
    spatial = torch.randn(2, F, 2 * C, G, G)
    with torch.no_grad():
        none = den(sample, 10, ctx, y).sample
        torch.testing.assert_close(den(sample, 10, ctx, y, spatial=spatial).sample, none)  # zero conv
        trained_like(den.spatial_in, 2)
        with_map = den(sample, 10, ctx, y, spatial=spatial).sample
        zeros = den(sample, 10, ctx, y, spatial=torch.zeros_like(spatial)).sample
    assert (with_map - none).abs().max() > 1e-4
    torch.testing.assert_close(zeros, none, atol=0, rtol=0)  # no bias: None means all zeros
    with pytest.raises(ValueError, match="spatial must be"):
        den(sample, 10, ctx, y, spatial=spatial[:, :, :2])


def _batch(b=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "context": rng.integers(0, 256, (b, H, 64, 64, 3), dtype=np.uint8),
        "future": rng.integers(0, 256, (b, F, 64, 64, 3), dtype=np.uint8),
        "actions": {n: rng.random((b, T, *MODALITIES[n].shape), dtype=np.float32) for n in MODALITY_NAMES},
    }


def test_training_step_trains_the_map_and_the_pipeline_uses_it():
    torch.manual_seed(0)
    cfg = get_preset("mmsim-tiny", condition_drop_prob=0.0, action_warp={"hand_map_channels": 2})
    sim = MultisensorySimulator.from_config(cfg).train()
    assert sim.action_warp.hand_map is not None and sim.denoiser.spatial_in is not None
    trained_like(sim.denoiser.spatial_in)
    trained_like(sim.denoiser.conv_out, 1)
    losses = sim(_batch(), generator=torch.Generator().manual_seed(0))
    losses.total.backward()
    grads = [p.grad for p in sim.action_warp.hand_map.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)

    pipe = sim.eval().to_pipeline()
    pipe.set_progress_bar_config(disable=True)
    batch = _batch(2, seed=1)
    kw = dict(context=batch["context"], num_inference_steps=1)
    a = pipe(**kw, actions=batch["actions"], generator=torch.Generator().manual_seed(0)).frames
    # the hand map is a way in for hand pose: swapping it between the clips changes the prediction
    swapped = {**batch["actions"], "hand_pose": batch["actions"]["hand_pose"][::-1].copy()}
    c = pipe(**kw, actions=swapped, generator=torch.Generator().manual_seed(0)).frames
    assert not np.array_equal(a, c)
    # classifier-free guidance: the unconditional half gets no map
    g = pipe(**kw, actions=batch["actions"], guidance_scale=2.0, generator=torch.Generator().manual_seed(0)).frames
    assert g.shape == a.shape


def test_placement_loss_pulls_occupancy_to_the_unexplained_change():
    from mmsim_core.models.action_warp.hand_map import placement_loss

    b = 2
    anchor = torch.zeros(b, F, 3, 32, 32)
    future = anchor.clone()
    future[:, :, :, 8:16, 20:28] = 1.0  # something moved here that the warp did not explain
    logits = torch.zeros(b, F + 1, 2, G, G, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.3)
    mask = torch.tensor([True, False])
    for _ in range(60):
        opt.zero_grad()
        loss = placement_loss(torch.sigmoid(logits), future, anchor, mask)
        loss.backward()
        opt.step()
    occ = torch.sigmoid(logits.detach())
    either = 1 - (1 - occ[0, 1:, 0]) * (1 - occ[0, 1:, 1])  # (F, G, G)
    assert either[:, 2:4, 5:7].min() > 0.9 and either[:, :2].max() < 0.1
    assert logits.grad is not None and torch.equal(logits.detach()[1], torch.zeros_like(logits[1]))  # masked out
    assert float(placement_loss(occ, future, anchor, torch.tensor([False, False]))) == 0.0


def test_training_step_reports_placement_only_when_body_pose_places():
    torch.manual_seed(0)
    with_map = MultisensorySimulator.from_config(
        get_preset("mmsim-tiny", condition_drop_prob=0.0, action_warp={"hand_map_channels": 2})).train()
    assert float(with_map(_batch(), generator=torch.Generator().manual_seed(0)).placement) > 0
    no_body = MultisensorySimulator.from_config(get_preset(
        "mmsim-tiny", condition_drop_prob=0.0, action_encoder={"modalities": ("hand_pose",)},
        action_warp={"hand_map_channels": 2})).train()
    assert no_body.action_warp.hand_map is not None and no_body.action_warp.ego_motion is None
    assert float(no_body(_batch(), generator=torch.Generator().manual_seed(0)).placement) == 0.0
