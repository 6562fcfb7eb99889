"""The action warp's ego-motion head, its warp and photometric loss, and the warped-residual denoiser target."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from mmsim_core.models.action_warp import ActionWarp, ActionWarpConfig
from mmsim_core.models.action_warp.ego_motion import (
    EgoMotionHead, context_motion_features, estimate_context_motion, photometric_loss, warp,
)
from mmsim_core.models.denoiser import VideoDenoiser
from mmsim_core.schema import MODALITIES

IDENTITY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def textured(b=2, size=32, seed=0) -> torch.Tensor:
    """A smooth-ish random texture (B, 3, H, W) in [-1, 1], so sub-pixel warps are well defined."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, size // 4, size // 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def test_warp_identity_is_exact_and_shift_moves_pixels():
    frame = textured()
    out = warp(frame, IDENTITY.expand(2, 3, 2, 3))
    assert out.shape == (2, 3, 3, 32, 32)
    torch.testing.assert_close(out, frame[:, None].expand_as(out), atol=1e-5, rtol=0)
    # tx = 2 px in normalised units: output pixel x samples input pixel x + 2
    shift = IDENTITY.clone()
    shift[0, 2] = 2 * 2 / 32
    out = warp(frame, shift.expand(2, 1, 2, 3))[:, 0]
    torch.testing.assert_close(out[..., :-2], frame[..., 2:], atol=1e-5, rtol=0)


def test_photometric_loss_recovers_a_translation():
    """The pyramid loss pulls a free affine to the true 3-px motion from the identity."""
    frame = textured(b=1, size=64, seed=3)
    truth = IDENTITY.clone()
    truth[0, 2] = 3 * 2 / 64
    target = warp(frame, truth.view(1, 1, 2, 3))
    delta = torch.zeros(1, 1, 2, 3, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=3e-3)
    start = float(photometric_loss(warp(frame, IDENTITY + delta.detach()), target))
    for _ in range(150):
        loss = photometric_loss(warp(frame, IDENTITY + delta), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * start
    assert float(delta[0, 0, 0, 2]) == pytest.approx(truth[0, 2].item(), abs=0.02)
    assert float(photometric_loss(target, target)) == 0.0


def _actions(b=3, t=12, seed=0):
    rng = np.random.default_rng(seed)
    return {k: torch.from_numpy(rng.random((b, t, *s.shape), dtype=np.float32)) for k, s in MODALITIES.items()}


def test_head_starts_at_identity_and_knows_nothing_without_its_modality():
    head = EgoMotionHead(("body_pose",), context_steps=4, hidden=16).train()
    acts = _actions()
    present = {"body_pose": torch.tensor([True, False, True])}
    out = head(acts, present, 3, 12)
    assert out.shape == (3, 8, 2, 3)
    torch.testing.assert_close(out, IDENTITY.expand(3, 8, 2, 3))
    with torch.no_grad():
        head.net[-1].bias.normal_()
    out = head(acts, present, 3, 12)
    assert not torch.allclose(out[0], IDENTITY.expand(8, 2, 3))
    torch.testing.assert_close(out[1], IDENTITY.expand(8, 2, 3))  # body pose absent: identity
    head.eval()  # running statistics, batch of one
    one = head({k: v[:1] for k, v in acts.items()}, {"body_pose": torch.tensor([True])}, 1, 12)
    assert torch.isfinite(one).all()


def test_head_statistics_come_from_samples_that_carry_the_modality():
    head = EgoMotionHead(("body_pose",), context_steps=4, hidden=16).train()
    head.norm.momentum = 1.0  # running stats = this batch's stats
    acts = _actions(b=4)
    present = {"body_pose": torch.tensor([True, False, True, False])}
    head(acts, present, 4, 12)
    a = acts["body_pose"].reshape(4, 12, -1)[[0, 2]]
    rows = torch.cat([a[:, 4:] - a[:, 3:4], a[:, 3:4].expand(-1, 8, -1)], dim=-1).reshape(16, -1)
    torch.testing.assert_close(head.norm.running_mean, rows.mean(0))
    torch.testing.assert_close(head.norm.running_var, rows.var(0))


def test_warped_residual_round_trip_and_anchor_input():
    cfg = dict(context_frames=4, num_frames=8, sample_size=32, patch_size=4, block_channels=(16,),
               attention_levels=(False,), norm_groups=8, cross_attention_dim=16, cond_tokens=1)  # fmt: skip
    den = VideoDenoiser(target="warped_residual", **cfg).eval()
    context = textured(b=8, size=32).view(2, 4, 3, 32, 32)
    future = textured(b=16, size=32, seed=1).view(2, 8, 3, 32, 32)
    shift = IDENTITY.clone()
    shift[0, 2] = 0.1
    anchor = ActionWarp.anchor(context, shift.expand(2, 8, 2, 3), None)
    torch.testing.assert_close(anchor, warp(context[:, -1], shift.expand(2, 8, 2, 3)))
    x0 = den.frames_to_sample(future, context, anchor)
    torch.testing.assert_close(den.sample_to_frames(x0, context, anchor), future.clamp(-1, 1), atol=1e-5, rtol=0)
    # the anchor is an input: a different warp changes the prediction
    with torch.no_grad():
        den.conv_out.weight.normal_(std=0.05)
        y = torch.randn(2, 12, 16)
        a = den(torch.zeros_like(future), 500, context, y, anchor=anchor).sample
        b = den(torch.zeros_like(future), 500, context, y, anchor=den.anchor(context)).sample
    assert not torch.allclose(a, b)


# ---------------------------------------------------------------------------------------- context motion
def affine(tx=0.0, ty=0.0, zoom=0.0, rot=0.0) -> torch.Tensor:
    """A (2, 3) affine in normalised coordinates (tx, ty in units of [-1, 1])."""
    c, s = (1 + zoom) * np.cos(rot), (1 + zoom) * np.sin(rot)
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float32)


def moving(motions: torch.Tensor, steps: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Frames (B, steps, 3, H, W) of a texture moved by the same motion (B, 2, 3) at every step."""
    b = motions.shape[0]
    frame = textured(b=b, size=size, seed=seed)
    step = torch.cat([motions, torch.tensor([[[0.0, 0.0, 1.0]]]).expand(b, 1, 3)], dim=1)
    cur, out = torch.eye(3).expand(b, 3, 3), []
    for _ in range(steps):
        out.append(warp(frame, cur[:, None, :2])[:, 0])
        cur = cur @ step
    return torch.stack(out, dim=1)


def test_context_motion_recovers_known_motions_and_static_is_identity():
    truth = torch.stack([affine(tx=0.06), affine(ty=-0.05, zoom=0.02), affine(tx=0.03, rot=0.03), affine()])
    frames = moving(truth, steps=4)
    est = estimate_context_motion(frames)
    assert est.shape == (4, 3, 2, 3)
    # the border repeats where the texture leaves the frame, so a pixel-level (1/32 of a unit) tolerance
    torch.testing.assert_close(est, truth[:, None].expand(-1, 3, -1, -1), atol=4e-3, rtol=0)
    still = estimate_context_motion(frames[3:, :1].expand(-1, 4, -1, -1, -1))
    torch.testing.assert_close(still, IDENTITY.expand(1, 3, 2, 3), atol=1e-5, rtol=0)


def test_context_motion_ignores_a_small_object_moving_on_its_own():
    """The robust weights keep a patch moving against the background (a hand) from pulling the fit."""
    truth = affine(tx=0.05)[None]
    frames = moving(truth, steps=2).clone()
    frames[0, 1, :, 8:20, 8:20] = frames[0, 0, :, 20:32, 20:32]  # a patch that moved the other way
    est = estimate_context_motion(frames)[0, 0]
    torch.testing.assert_close(est, truth[0], atol=1e-3, rtol=0)  # plain least squares: 2.4e-3 off


def test_context_motion_features_extrapolate_at_constant_velocity():
    motion = torch.stack([affine(tx=0.01), affine(tx=0.02), affine(tx=0.03, zoom=0.01)])[None]  # (1, 3, 2, 3)
    feats = context_motion_features(motion, future_steps=5)
    assert feats.shape == (1, 5, 24)
    seen = (motion - IDENTITY).reshape(-1)
    torch.testing.assert_close(feats[0, :, :18], seen.expand(5, 18))
    last = torch.cat([motion[0, -1], torch.tensor([[0.0, 0.0, 1.0]])])
    for k in range(5):
        torch.testing.assert_close(feats[0, k, 18:], (torch.linalg.matrix_power(last, k + 1)[:2] - IDENTITY).reshape(-1))


def test_head_from_context_warps_samples_without_body_pose_and_ignores_their_zeros():
    head = EgoMotionHead(("body_pose",), context_steps=4, hidden=16, from_context=True).train()
    acts = _actions(b=3)
    frames = moving(torch.stack([affine(tx=0.05), affine(ty=0.04), affine()]), steps=4, size=32)
    present = {"body_pose": torch.tensor([True, False, False])}
    torch.testing.assert_close(head(acts, present, 3, 12, frames), IDENTITY.expand(3, 8, 2, 3))  # zero-init
    with torch.no_grad():
        head.net[-1].weight.normal_(std=0.1)
    for mode in (head.train, head.eval):
        mode()
        out = head(acts, present, 3, 12, frames)
        # body pose absent: the warp comes from the context's motion, which differs between rows 1 and 2
        assert not torch.allclose(out[1], IDENTITY.expand(8, 2, 3)) and not torch.allclose(out[1], out[2])
        # ... and the absent rows' (zeroed) body pose values cannot reach it, in eval as in training
        other = {**acts, "body_pose": acts["body_pose"].clone()}
        other["body_pose"][1:] = torch.rand_like(other["body_pose"][1:])
        torch.testing.assert_close(head(other, present, 3, 12, frames)[1:], out[1:])
    with pytest.raises(ValueError, match="pass context_frames"):
        head(acts, present, 3, 12)
    with pytest.raises(ValueError, match=r"context_frames must have shape \(3, 4, C, H, W\)"):
        head(acts, present, 3, 12, frames[:, :3])
    with pytest.raises(ValueError, match="from_context needs context_steps >= 2"):
        EgoMotionHead((), context_steps=1, from_context=True)
    with pytest.raises(ValueError, match="needs a modality to read or from_context=True"):
        EgoMotionHead((), context_steps=4)


def test_head_from_context_learns_to_extrapolate_the_camera_motion():
    """No action at all: trained on textures moving at random constant velocities, the head continues the
    motion the context shows, far better than holding the last frame."""
    g = torch.Generator().manual_seed(0)
    head = EgoMotionHead((), context_steps=4, hidden=32, from_context=True).train()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)

    def batch(seed):
        v = (torch.rand(8, 2, generator=g) * 2 - 1) * 0.04
        motions = torch.stack([affine(tx=float(x), ty=float(y)) for x, y in v])
        clip = moving(motions, steps=8, size=32, seed=seed)  # (8, 8, 3, 32, 32)
        return clip[:, :4], clip[:, 4:]

    for step in range(120):
        context, future = batch(step)
        loss = photometric_loss(warp(context[:, -1], head({}, {}, 8, 8, context)), future)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    context, future = batch(1000)
    with torch.no_grad():
        learned = float(photometric_loss(warp(context[:, -1], head({}, {}, 8, 8, context)), future))
    held = float(photometric_loss(context[:, -1:].expand_as(future), future))
    assert learned < 0.5 * held


def test_context_motion_reaches_text_only_models_and_the_pipeline():
    from mmsim_core.presets import get_preset
    from mmsim_core.training_step import MultisensorySimulator

    text_only = ActionWarpConfig(modalities=(), ego_motion_from=("body_pose",), ego_motion_hidden=16, sample_size=32)
    assert not text_only.has_ego_motion
    aw = ActionWarp.from_config_object(replace(text_only, context_motion=True))
    frames = moving(torch.stack([affine(tx=0.05), affine()]), steps=4, size=32)
    out = aw({}, None, 2, 12, frames)
    assert out.ego_motion.shape == (2, 8, 2, 3) and out.anchor.shape == (2, 8, 3, 32, 32)
    # without the frames the head is skipped (it has nothing to read), not run on nothing
    assert aw({}, None, 2, 12).ego_motion is None

    cfg = get_preset("mmsim-tiny", condition_drop_prob=0.0, text_encoder="bow", text_kind="verb",
                     action_encoder={"modalities": (), "text_dim": 16}, action_warp={"context_motion": True})
    sim = MultisensorySimulator.from_config(cfg).train()
    clip = (moving(torch.stack([affine(tx=0.04), affine(ty=0.03)]), steps=12) * 127.5 + 127.5).clamp(0, 255)
    clip = clip.permute(0, 1, 3, 4, 2).to(torch.uint8).numpy()  # (2, 12, 64, 64, 3)
    batch = {"context": clip[:, :4], "future": clip[:, 4:], "actions": {},
             "text": {k: ["cut"] * 2 for k in ("verb", "phrase", "sentence")}}  # fmt: skip
    with torch.no_grad():
        sim.action_warp.ego_motion.net[-1].weight.normal_(std=0.1)
    losses = sim(batch, generator=torch.Generator().manual_seed(0))
    assert float(losses.motion) > 0
    losses.total.backward()
    assert sim.action_warp.ego_motion.net[0].weight.grad.abs().sum() > 0
    pipe = sim.eval().to_pipeline()
    pipe.set_progress_bar_config(disable=True)
    # the pipeline hands the context frames on: with no action at all the warp follows the context
    frames, _ = pipe.encode_context(clip[:, :4])
    moved = pipe.warp_actions({}, frames)
    assert moved.ego_motion is not None and not torch.allclose(moved.ego_motion, IDENTITY.expand(2, 8, 2, 3))
    out = pipe(context=clip[:, :4], text=["cut", "cut"], num_inference_steps=1,
               generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (2, 8, 64, 64, 3)


def test_box_mean_equals_the_border_cut_average_pool():
    import torch.nn.functional as F

    from mmsim_core.models.action_warp.ego_motion import _box_mean

    x = torch.rand(3, 2, 20, 17, generator=torch.Generator().manual_seed(0))
    for k in (3, 9, 25):
        ref = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
        assert torch.allclose(_box_mean(x, k), ref, atol=1e-6), k
