"""The ego-motion head, its warp and photometric loss, and the warped-residual denoiser target."""

import numpy as np
import pytest
import torch

from mmsim_core.models.action_encoder import ActionEncoderConfig, MultisensoryActionEncoder
from mmsim_core.models.denoiser import DenoiserConfig, VideoDenoiser
from mmsim_core.models.ego_motion import EgoMotionHead, photometric_loss, warp
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


def test_preset_rejects_a_head_whose_warp_no_target_uses():
    from mmsim_core.presets import get_preset

    assert get_preset("mmsim-tiny").denoiser.target == "warped_residual"
    with pytest.raises(ValueError, match="ego_motion_from needs denoiser.target='warped_residual'"):
        get_preset("mmsim-tiny", denoiser={"target": "residual"})
    plain = get_preset("mmsim-tiny", denoiser={"target": "residual"}, action_encoder={"ego_motion_from": ()})
    assert plain.action_encoder.ego_motion_modalities == ()


def test_action_encoder_outputs_ego_motion_only_when_configured():
    common = dict(feature_dim=32, expert_hidden=16, projection_dims=(32,), anchor_group_size=32, expert_dropout=0.0)
    ctx = torch.randn(2, 4, 32)
    acts = {k: v[:2] for k, v in _actions().items()}
    plain = MultisensoryActionEncoder.from_config_dataclass(ActionEncoderConfig(**common))
    assert plain.ego_motion is None and plain(acts, ctx).ego_motion is None
    enc = MultisensoryActionEncoder.from_config_dataclass(ActionEncoderConfig(ego_motion_from=("body_pose",), **common))
    assert enc(acts, ctx).ego_motion.shape == (2, 8, 2, 3)
    # a model without body pose gets no head rather than an error (e.g. the "only EMG" ablation)
    emg_only = ActionEncoderConfig(modalities=("emg",), ego_motion_from=("body_pose",), **common)
    assert emg_only.ego_motion_modalities == ()
    with pytest.raises(ValueError, match="ego_motion_from: modality must be one of"):
        ActionEncoderConfig(ego_motion_from=("gaze",), **common)


def test_warped_residual_round_trip_and_anchor_input():
    cfg = dict(context_frames=4, num_frames=8, sample_size=32, patch_size=4, block_channels=(16,),
               attention_levels=(False,), norm_groups=8, cross_attention_dim=16, cond_tokens=1)  # fmt: skip
    den = VideoDenoiser(target="warped_residual", **cfg).eval()
    context = textured(b=8, size=32).view(2, 4, 3, 32, 32)
    future = textured(b=16, size=32, seed=1).view(2, 8, 3, 32, 32)
    shift = IDENTITY.clone()
    shift[0, 2] = 0.1
    anchor = den.anchor(context, shift.expand(2, 8, 2, 3))
    torch.testing.assert_close(anchor, warp(context[:, -1], shift.expand(2, 8, 2, 3)))
    x0 = den.frames_to_sample(future, context, anchor)
    torch.testing.assert_close(den.sample_to_frames(x0, context, anchor), future.clamp(-1, 1), atol=1e-5, rtol=0)
    # without ego-motion the anchor is the last frame itself: a plain residual
    torch.testing.assert_close(den.anchor(context), context[:, -1:].expand(-1, 8, -1, -1, -1))
    # the anchor is an input: a different warp changes the prediction
    with torch.no_grad():
        den.conv_out.weight.normal_(std=0.05)
        y = torch.randn(2, 12, 16)
        a = den(torch.zeros_like(future), 500, context, y, anchor=anchor).sample
        b = den(torch.zeros_like(future), 500, context, y, anchor=den.anchor(context)).sample
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="target must be one of"):
        DenoiserConfig(target="flow")
