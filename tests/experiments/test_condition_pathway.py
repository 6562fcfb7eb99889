"""The condition-pathway experiment: the path switch really separates the warp from y° and the hand map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.models import randomize_zero_init

from mmsim_core import MultisensoryVideoPipeline
from mmsim_core.data import ClipDataset
from mmsim_core.presets import get_preset
from mmsim_core.training_step import MultisensorySimulator
from mmsim.training.experiments import condition_pathway as pathway


def test_paths_separate_warp_and_conditioning(tiny_setup):
    pipe = MultisensoryVideoPipeline.from_pretrained(tiny_setup["ckpt"])
    pipe.set_progress_bar_config(disable=True)
    randomize_zero_init(pipe.denoiser, pipe.action_encoder, pipe.action_warp)  # else every path would be the identity
    ds = ClipDataset(tiny_setup["data"], split="test")
    items = [ds[i] for i in range(min(4, len(ds)))]
    assert len(items) >= 2
    context = np.stack([it["context"] for it in items])
    actions = {m: np.stack([it["actions"][m] for it in items]) for m in items[0]["actions"]}
    assert {"hand_pose", "body_pose"} <= set(actions)
    flipped = {**actions, "hand_pose": actions["hand_pose"][::-1].copy()}  # hand pose reaches only y°

    both = pathway.generate(pipe, context, actions)
    assert not {"encode_actions", "warp_actions"} & set(vars(pipe))  # the seams are restored after each call
    warp = pathway.generate(pipe, context, actions, "warp")
    ycond = pathway.generate(pipe, context, actions, "y")
    assert both.shape == (len(items), 8, 3, 64, 64)
    assert (both - warp).abs().max() > 1e-4 and (both - ycond).abs().max() > 1e-4
    # without y° the hand pose has no way in; with it, it does
    torch.testing.assert_close(pathway.generate(pipe, context, flipped, "warp"), warp, atol=0, rtol=0)
    assert (pathway.generate(pipe, context, flipped) - both).abs().max() > 1e-4

    r = pathway.measure(pipe, items, noise_draws=1)
    assert set(r["paths"]) == {"both", "warp", "y"} and r["clips"] == len(items)
    ref = r["references"]
    assert ref["mean_of_noise_draws"] == r["paths"]["both"]  # one draw: the output itself
    assert all(np.isfinite(ref[k]) for k in ("copy_last", "warped_last_frame", "constant_velocity"))
    assert pathway.measure(pipe, items[:2], noise_draws=2)["references"]["noise_draws"] == 2
    with pytest.raises(ValueError, match="noise_draws must be >= 1"):
        pathway.measure(pipe, items, noise_draws=0)
    assert set(r["per_modality"]) == set(actions)
    for row in r["per_modality"].values():
        assert all(np.isfinite(v) for v in row.values()) and row["dropped_rms"] > 0


def test_map_path_separates_the_hand_map(tiny_setup, tmp_path):
    """With a hand placement map, hand pose reaches the output through y° and the map; "map" keeps only
    the map, "warp" neither."""
    torch.manual_seed(0)
    sim = MultisensorySimulator.from_config(get_preset("mmsim-tiny", action_warp={"hand_map_channels": 2}))
    randomize_zero_init(sim.denoiser, sim.action_encoder, sim.action_warp)
    ds = ClipDataset(tiny_setup["data"], split="test")
    pipe = sim.eval().to_pipeline(normalization_stats=ds.stats)
    pipe.set_progress_bar_config(disable=True)
    items = [ds[i] for i in range(min(4, len(ds)))]
    context = np.stack([it["context"] for it in items])
    actions = {m: np.stack([it["actions"][m] for it in items]) for m in items[0]["actions"]}
    flipped = {**actions, "hand_pose": actions["hand_pose"][::-1].copy()}

    warp = pathway.generate(pipe, context, actions, "warp")
    hand_map = pathway.generate(pipe, context, actions, "map")
    assert (hand_map - warp).abs().max() > 1e-4
    torch.testing.assert_close(pathway.generate(pipe, context, flipped, "warp"), warp, atol=0, rtol=0)
    assert (pathway.generate(pipe, context, flipped, "map") - hand_map).abs().max() > 1e-4
    with pytest.raises(ValueError, match="path must be one of"):
        pathway.generate(pipe, context, actions, "both-and-more")
    assert set(pathway.measure(pipe, items[:2])["paths"]) == {"both", "warp", "y", "map"}


def test_references_without_a_denoiser(tiny_setup):
    """The warp alone is the anchor the denoiser starts from; constant velocity on a still context is the
    last frame; both follow a context that moves."""
    pipe = MultisensoryVideoPipeline.from_pretrained(tiny_setup["ckpt"])
    pipe.set_progress_bar_config(disable=True)
    randomize_zero_init(pipe.action_encoder, pipe.action_warp)
    ds = ClipDataset(tiny_setup["data"], split="test")
    items = [ds[i] for i in range(2)]
    context = np.stack([it["context"] for it in items])
    actions = {m: np.stack([it["actions"][m] for it in items]) for m in items[0]["actions"]}

    def held(frames: np.ndarray) -> torch.Tensor:  # (N, h, H, W, 3) uint8 -> its last frame for all 8 steps
        return (torch.from_numpy(frames[:, -1]).permute(0, 3, 1, 2).float() / 255)[:, None].expand(-1, 8, -1, -1, -1)

    last = held(context)
    # no body pose and no context motion: nothing moves the frame
    torch.testing.assert_close(pathway.warped_last_frame(pipe, context, {}), last, atol=1e-6, rtol=0)
    frames, _ = pipe.encode_context(context)
    anchor = pipe.warp_actions(actions, frames).anchor
    torch.testing.assert_close(pathway.warped_last_frame(pipe, context, actions), (anchor.clamp(-1, 1) + 1) / 2)
    assert (pathway.warped_last_frame(pipe, context, actions) - last).abs().max() > 1e-3
    still = np.repeat(context[:, :1], 4, axis=1)
    torch.testing.assert_close(pathway.constant_velocity(still, 8), held(still), atol=1e-4, rtol=0)
    # a textured context panning 2 px per frame keeps panning: the next frame is shifted 2 px further
    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(64, 64), mode="bilinear")
    texture = (texture[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)  # (64, 64, 3)
    pan = np.stack([np.roll(texture, 2 * k, axis=1) for k in range(4)])[None]  # (1, 4, 64, 64, 3)
    moved = pathway.constant_velocity(pan, 8)[:, 0, :, :, 16:-16]  # first future step, away from the wrap
    truth = held(np.roll(texture, 8, axis=1)[None, None])[:, 0, :, :, 16:-16]
    assert (moved - truth).abs().mean() < 0.5 * (held(pan)[:, 0, :, :, 16:-16] - truth).abs().mean()


def test_by_subject_scores_every_subject_of_the_split(tiny_setup, capsys):
    pipe = MultisensoryVideoPipeline.from_pretrained(tiny_setup["ckpt"])
    pipe.set_progress_bar_config(disable=True)
    ds = ClipDataset(tiny_setup["data"], split="train")
    r = pathway.by_subject(pipe, ds, clips=2)
    assert set(r) == {ds.clip_meta(i)["subject"] for i in range(len(ds))}
    for row in r.values():
        assert 1 <= row["clips"] <= 2
        # untrained: the denoiser's residual is zero, so the model is its warp up to uint8 rounding
        assert row["model"] == pytest.approx(row["warp"], abs=0.5)
    assert pathway.main([str(tiny_setup["ckpt"]), str(tiny_setup["data"]), "--split", "train", "--clips", "2",
                       "--by-subject"]) == 0
    out = capsys.readouterr().out
    assert all(s in out for s in r) and "model - warp" in out
