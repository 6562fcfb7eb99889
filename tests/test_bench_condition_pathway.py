"""benchmarks/bench_condition_pathway.py: the path switch really separates the warp from y°."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_condition_pathway as bench  # noqa: E402

from fixtures.models import randomize_zero_init  # noqa: E402
from mmsim_core import MultisensoryVideoPipeline  # noqa: E402
from mmsim_core.data import ClipDataset  # noqa: E402
from mmsim_core.presets import get_preset  # noqa: E402
from mmsim_core.training_step import MultisensorySimulator  # noqa: E402


def test_paths_separate_warp_and_conditioning(tiny_setup):
    pipe = MultisensoryVideoPipeline.from_pretrained(tiny_setup["ckpt"])
    pipe.set_progress_bar_config(disable=True)
    randomize_zero_init(pipe.denoiser, pipe.action_encoder)  # else every path would be the identity
    ds = ClipDataset(tiny_setup["data"], split="test")
    items = [ds[i] for i in range(min(4, len(ds)))]
    assert len(items) >= 2
    context = np.stack([it["context"] for it in items])
    actions = {m: np.stack([it["actions"][m] for it in items]) for m in items[0]["actions"]}
    assert {"hand_pose", "body_pose"} <= set(actions)
    flipped = {**actions, "hand_pose": actions["hand_pose"][::-1].copy()}  # hand pose reaches only y°

    both = bench.generate(pipe, context, actions)
    assert "encode_conditions" not in vars(pipe)  # the seam is restored after each call
    warp = bench.generate(pipe, context, actions, "warp")
    ycond = bench.generate(pipe, context, actions, "y")
    assert both.shape == (len(items), 8, 3, 64, 64)
    assert (both - warp).abs().max() > 1e-4 and (both - ycond).abs().max() > 1e-4
    # without y° the hand pose has no way in; with it, it does
    torch.testing.assert_close(bench.generate(pipe, context, flipped, "warp"), warp, atol=0, rtol=0)
    assert (bench.generate(pipe, context, flipped) - both).abs().max() > 1e-4

    r = bench.measure(pipe, items)
    assert set(r["paths"]) == {"both", "warp", "y"} and r["clips"] == len(items)
    assert set(r["per_modality"]) == set(actions)
    for row in r["per_modality"].values():
        assert all(np.isfinite(v) for v in row.values()) and row["dropped_rms"] > 0


def test_map_path_separates_the_hand_map(tiny_setup, tmp_path):
    """With a hand placement map, hand pose reaches the output through y° and the map; "map" keeps only
    the map, "warp" neither."""
    torch.manual_seed(0)
    sim = MultisensorySimulator.from_config(get_preset("mmsim-tiny", action_encoder={"hand_map_channels": 2}))
    randomize_zero_init(sim.denoiser, sim.action_encoder)
    ds = ClipDataset(tiny_setup["data"], split="test")
    pipe = sim.eval().to_pipeline(normalization_stats=ds.stats)
    pipe.set_progress_bar_config(disable=True)
    items = [ds[i] for i in range(min(4, len(ds)))]
    context = np.stack([it["context"] for it in items])
    actions = {m: np.stack([it["actions"][m] for it in items]) for m in items[0]["actions"]}
    flipped = {**actions, "hand_pose": actions["hand_pose"][::-1].copy()}

    warp = bench.generate(pipe, context, actions, "warp")
    hand_map = bench.generate(pipe, context, actions, "map")
    assert (hand_map - warp).abs().max() > 1e-4
    torch.testing.assert_close(bench.generate(pipe, context, flipped, "warp"), warp, atol=0, rtol=0)
    assert (bench.generate(pipe, context, flipped, "map") - hand_map).abs().max() > 1e-4
    with pytest.raises(ValueError, match="path must be one of"):
        bench.generate(pipe, context, actions, "both-and-more")
    assert set(bench.measure(pipe, items[:2])["paths"]) == {"both", "warp", "y", "map"}
