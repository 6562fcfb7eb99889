"""Pipeline folders saved before the action warp was its own component still load, with identical outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsim_core import MultisensoryVideoPipeline
from mmsim_core.conversion import convert_legacy_pipeline, is_legacy
from mmsim_core.errors import MMSimError
from mmsim_core.schema import MODALITIES

LEGACY = Path(__file__).parent / "fixtures" / "legacy_checkpoints"
FOLDERS = sorted(p.name for p in LEGACY.glob("tiny_*"))


def _inputs():
    data = np.load(LEGACY / "inputs.npz")
    return data["context"], {n: data[n] for n in MODALITIES}


@pytest.mark.parametrize("name", FOLDERS)
def test_legacy_folder_loads_with_the_frames_it_gave_when_saved(name):
    # The fixtures were written by tests/fixtures/legacy_checkpoints/make_legacy_checkpoints.py before the
    # split, with the frames that version generated.
    assert is_legacy(LEGACY / name)
    pipe = MultisensoryVideoPipeline.from_pretrained(LEGACY / name)
    context, actions = _inputs()
    frames = pipe(context=context, actions=actions, generator=torch.Generator().manual_seed(0)).frames
    expected = np.load(LEGACY / name / "expected_frames.npz")["frames"]
    assert np.abs(frames.astype(int) - expected).max() <= 1  # bit-exact here; a last-bit rounding flip elsewhere
    assert pipe.action_warp is not None and pipe.simulator_config.action_warp.hand_map_channels == 4


def test_convert_command_writes_a_current_folder(tmp_path):
    src = LEGACY / "tiny_projected_warp"
    result = subprocess.run([sys.executable, "-m", "mmsim_cli", "convert", str(src), str(tmp_path / "new")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    new = tmp_path / "new"
    assert not is_legacy(new)
    encoder = json.loads((new / "action_encoder" / "config.json").read_text())
    warp = json.loads((new / "action_warp" / "config.json").read_text())
    assert "hand_map_channels" not in encoder and "ego_motion_from" not in encoder
    assert warp["hand_placement"] == "projected_warp" and warp["context_motion"] is True
    assert json.loads((new / "simulator_config.json").read_text())["simulator"]["action_warp"]["hand_map_grid"] == 16

    old = MultisensoryVideoPipeline.from_pretrained(src)
    converted = MultisensoryVideoPipeline.from_pretrained(new)
    context, actions = _inputs()
    a = old(context=context, actions=actions, generator=torch.Generator().manual_seed(0), output_type="pt").frames
    b = converted(context=context, actions=actions, generator=torch.Generator().manual_seed(0), output_type="pt").frames
    assert torch.equal(a, b)

    again = subprocess.run([sys.executable, "-m", "mmsim_cli", "convert", str(new), str(tmp_path / "again")],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "not a legacy pipeline folder" in again.stderr


def test_deleted_options_are_refused_by_name(tmp_path):
    src = tmp_path / "old"
    import shutil

    shutil.copytree(LEGACY / "tiny_learned_map", src)
    config = json.loads((src / "denoiser" / "config.json").read_text())
    (src / "denoiser" / "config.json").write_text(json.dumps({**config, "condition_norm": "batch"}))
    with pytest.raises(MMSimError, match="condition_norm='batch' is no longer supported"):
        convert_legacy_pipeline(src, tmp_path / "new")
