"""Every kind of simulator survives save_pretrained -> from_pretrained: same config, same frames, bit for bit."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.models import randomize_zero_init
from mmsim_core import MultisensoryVideoPipeline
from mmsim_core.data import ClipDataset
from mmsim_core.pipelines.multisensory import SIMULATOR_CONFIG_FILE
from mmsim_core.schema import MODALITIES

DEMO_DATA = Path(__file__).resolve().parent.parent / "examples" / "demo_data"
SMALL = {"denoiser": {"block_channels": (16, 32), "attention_head_dim": 16, "norm_groups": 8}}
CONFIGS = {
    "tiny": {},
    "learned hand map": {"action_warp": {"hand_map_channels": 4, "hand_map_grid": 8, "hand_map_hidden": 16}},
    "projected warp + context motion": {
        "action_warp": {"hand_map_channels": 4, "hand_placement": "projected_warp", "context_motion": True},
        "denoiser": {"spatial_cells": 4},
    },
    "paper target, no warp": {"action_warp": None, "denoiser": {"target": "frames"}},
    "bag-of-words text": {"text_encoder": "bow", "text_kind": "phrase", "action_encoder": {"text_dim": 16}},
    "mutex": {"feature_extractor": "mutex"},
    "imagebind": {"feature_extractor": "imagebind"},
    "languagebind": {"feature_extractor": "languagebind", "text_encoder": "bow", "text_kind": "sentence",
                     "action_encoder": {"text_dim": 16}},
    "signal_agnostic": {"feature_extractor": "signal_agnostic"},
}


def _overrides(name: str) -> dict:
    over = {k: dict(v) if isinstance(v, dict) else v for k, v in CONFIGS[name].items()}
    over["denoiser"] = {**SMALL["denoiser"], **over.get("denoiser", {})}
    return over


def _inputs(batch: int = 2):
    rng = np.random.default_rng(0)
    context = rng.integers(0, 256, size=(batch, 4, 64, 64, 3), dtype=np.uint8)
    actions = {n: rng.uniform(0, 1, size=(batch, 12, *MODALITIES[n].shape)).astype(np.float32) for n in MODALITIES}
    return context, actions


@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_load_round_trip(name, tmp_path):
    torch.manual_seed(0)
    pipe = MultisensoryVideoPipeline.from_preset("mmsim-tiny", **_overrides(name))
    # Zero-initialised output layers would hide a weight that fails to load.
    randomize_zero_init(*[m for m in pipe.components.values() if isinstance(m, torch.nn.Module)])
    if pipe.action_warp is not None:  # a projected map's pose frame (buffers) must travel too
        pipe.action_warp.set_pose_frame(ClipDataset(DEMO_DATA, split="test").stats)
    context, actions = _inputs()
    text = ["cut the cucumber", "open the jar"] if pipe.text_encoder is not None else None
    before = pipe(context=context, actions=actions, text=text, generator=torch.Generator().manual_seed(1),
                  output_type="pt").frames

    pipe.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / SIMULATOR_CONFIG_FILE).read_text())
    loaded = MultisensoryVideoPipeline.from_pretrained(tmp_path / "ckpt")
    after = loaded(context=context, actions=actions, text=text, generator=torch.Generator().manual_seed(1),
                   output_type="pt").frames

    assert loaded.simulator_config == pipe.simulator_config  # everything evaluate and the studio read
    assert saved["simulator"]["text_kind"] == pipe.simulator_config.text_kind
    assert (loaded.action_warp is None) == (pipe.action_warp is None)
    assert type(loaded.action_encoder) is type(pipe.action_encoder)
    assert loaded.action_encoder.cfg == pipe.action_encoder.cfg and loaded.denoiser.cfg == pipe.denoiser.cfg
    if pipe.action_warp is not None:
        assert loaded.action_warp.cfg == pipe.action_warp.cfg
        for key, value in pipe.action_warp.state_dict().items():
            assert torch.equal(loaded.action_warp.state_dict()[key], value), key
    assert torch.equal(before, after)
