"""The bundled demo action proposer loads and proposes valid trajectories for a bundled demo clip."""

from pathlib import Path

import numpy as np
import torch

from mmsim_core.data import ClipDataset
from mmsim_core.policies.proposer import ActionProposalPipeline
from mmsim_core.schema import MODALITIES

ROOT = Path(__file__).resolve().parents[1]


def test_demo_proposer_proposes_valid_trajectories():
    pipe = ActionProposalPipeline.from_pretrained(ROOT / "examples" / "demo_proposer")
    item = ClipDataset(ROOT / "examples" / "demo_data", split="test")[0]
    h = pipe.history_steps
    context = item["context"][None]  # (1, 4, H, W, 3) uint8
    history = {k: v[None, :h] for k, v in item["actions"].items()}
    out = pipe(context, history, text=["pick up the cup"], num_samples=3, generator=torch.Generator().manual_seed(0))
    assert set(out.actions) == set(MODALITIES)
    for name, x in out.actions.items():
        x = np.asarray(x)
        assert x.shape[:2] == (1, 3) and x.shape[3:] == MODALITIES[name].shape and np.isfinite(x).all()
    # The proposal starts from the clip's own context steps.
    for name, x in history.items():
        np.testing.assert_allclose(np.asarray(out.actions[name])[0, :, :h], np.repeat(x, 3, axis=0), atol=1e-4)
    assert (ROOT / "examples" / "demo_proposer" / "README.md").is_file()
